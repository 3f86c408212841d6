"""What the explorer computes, without any web code: filters, outputs, decompositions,
patch spectra and eigenimages of one image, each computed once and cached.

Every method checks its arguments first (cheap, raising :class:`InputError` naming the
parameter) and then either computes or, with ``compute=False``, returns only what is
already cached (None otherwise). The server uses that to answer cached requests at once
and to send everything else to its single worker thread.
"""

from __future__ import annotations

import copy
import io
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.base import module_device
from ..models.noise_map import noise_map_summary, root_mean_square
from .models import ExploreModel

#: Side (pixels) of the patch whose Jacobian spectrum is computed, and its limits:
#: the dense Jacobian costs about N² work for N = side², 20 px is ~1 s on two cores.
DEFAULT_PATCH = 20
PATCH_RANGE = (8, 40)
#: Largest half-width (pixels) of the window of a non-local filter row sent as JSON.
MAX_NONLOCAL_RADIUS = 48
#: Singular vectors / eigenimages returned.
VECTORS = 6
EIGENIMAGES = 8
#: Images up to this many pixels get the exact NTK/NLM filter matrix; larger ones the
#: Nyström approximation (its eigendecomposition costs seconds from about 40×40 on).
FULL_MATRIX_PIXELS = 40 * 40
#: Largest noise level (0–255 scale) the σ slider may ask for.
MAX_SIGMA_255 = 255.0

#: Filters kept, in bytes of their weights (a DRUNet filter's crop is ~0.2 MB in float32).
FILTER_BUDGET_BYTES = 256 << 20
#: Share of a filter's absolute weight the window it is first shown on holds.
WINDOW_SHARE = 0.99
#: Smallest half-width (pixels) of that window.
MIN_WINDOW_RADIUS = 3
#: Precisions a filter can be asked in: ``fast`` (float32, what the page shows first)
#: and ``exact`` (float64, the reference the tests hold to autograd; 5-9x slower on CPU).
FILTER_PRECISIONS = {"fast": torch.float32, "exact": torch.float64}

#: Cache sizes per kind of result (entries; the filters by bytes, see above).
CACHE_SIZES = {
    "rows": 4,
    "noisy": 8,
    "output": 16,
    "basis": 2,
    "decomposition": 4,
    "spectrum": 128,
}


class LRUCache:
    """A thread-safe dict with at most ``size`` entries (least recently used go first)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class ByteLRUCache(LRUCache):
    """An :class:`LRUCache` holding at most ``budget`` bytes, as :func:`stored_nbytes`
    measures its values (least recently used go first; a value larger than the whole
    budget is not kept)."""

    def __init__(self, budget: int):
        super().__init__(size=0)
        self.budget = budget
        self.nbytes = 0
        self._sizes: dict = {}

    def put(self, key, value) -> None:
        size = stored_nbytes(value)
        with self._lock:
            if key in self._items:
                del self._items[key]
                self.nbytes -= self._sizes.pop(key)
            if size > self.budget:
                return
            self._items[key] = value
            self._sizes[key] = size
            self.nbytes += size
            while self.nbytes > self.budget:
                dropped, _ = self._items.popitem(last=False)
                self.nbytes -= self._sizes.pop(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._sizes.clear()
            self.nbytes = 0


#: Plain values a cached result may hold besides numpy arrays and containers.
_PLAIN = (str, bytes, int, float, bool, type(None), np.generic)


def stored_nbytes(value: object) -> int:
    """Bytes of memory a cached value holds: its numpy arrays (buffer and header) and
    the Python objects around them (dicts, lists, tuples, strings, numbers), each object
    counted once (``sys.getsizeof``; shared small ints and strings are counted too, so
    this errs high by a few bytes per item).

    Raises
    ------
    TypeError
        For anything else, a tensor in particular (its storage, possibly far larger
        than its view, and autograd graph are invisible here), and for an array that
        views another's buffer (it keeps all of that buffer alive): cached results
        hold compact copies.
    """
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)  # an array's own buffer included
        if isinstance(item, np.ndarray):
            if not item.flags.owndata:
                raise TypeError(
                    f"a cached array must own its buffer (store a copy), got a view of "
                    f"a {type(item.base).__name__}"
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not isinstance(item, _PLAIN):
            raise TypeError(
                f"a cached value holds numpy arrays and plain Python values, not "
                f"{type(item).__name__}"
            )
    return total


def png_bytes(image: torch.Tensor | np.ndarray) -> bytes:
    """Encode an image in [0, 1] (clipped), shape ``(C, H, W)`` or ``(H, W)``, as 8-bit PNG."""
    from PIL import Image

    array = torch.as_tensor(image).detach().to("cpu", torch.float64)
    if array.dim() == 3:
        array = array[0] if array.shape[0] == 1 else array.permute(1, 2, 0)
    data = np.round(array.clamp(0.0, 1.0).numpy() * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG")
    return buffer.getvalue()


def signed_to_unit(values: torch.Tensor, span: float) -> torch.Tensor:
    """Map signed values to [0, 1] for display: 0 -> 0.5, ±span -> 0 / 1."""
    return 0.5 + 0.5 * values / (span if span > 0 else 1.0)


class Explorer:
    """One image (noisy, or clean plus seeded noise at any σ) and the models to look at.

    Parameters
    ----------
    image : Tensor, shape (1, C, H, W)
        The noisy image as given, or — with ``sigma`` — the clean image.
    models : sequence of ExploreModel
        In the order shown; names must differ.
    sigma : float or None, keyword-only
        Image-scale noise level. None: ``image`` is a noisy photo analysed as it is.
        A number: ``image`` is clean and the noisy image at any σ is
        ``add_noise(image, σ, generator=seed)`` (the noise ``analyze filters`` adds),
        ``sigma`` being the default σ.
    seed : int, keyword-only
        Seed of the noise.
    device : str, torch.device or None, keyword-only
        Where the networks run: ``"cpu"``, ``"cuda"``, ``"auto"`` (a GPU when there is
        one); each is copied there (the caller's stays where it is). None: where their
        weights are. Images, noise and the NTK/NLM filters stay on the CPU.
    """

    def __init__(
        self,
        image: torch.Tensor,
        models: Sequence[ExploreModel],
        *,
        sigma: float | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
    ):
        if not models:
            raise InputError("models: give at least one model")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise InputError(f"models: each model may be named once, got {names}")
        if sigma is not None and not (0 <= sigma <= MAX_SIGMA_255 / 255.0):
            raise InputError(f"sigma must be in [0, {MAX_SIGMA_255:g}/255], got {sigma}")
        if device is not None:
            from ..devices import resolve_device

            target = resolve_device(device)
            models = [
                replace(m, denoiser=copy.deepcopy(m.denoiser).to(target))
                if m.kind == "jacobian" and module_device(m.denoiser) != target
                else m
                for m in models
            ]
        self.models = {m.name: m for m in models}
        self.seed = int(seed)
        self.caches = {kind: LRUCache(size) for kind, size in CACHE_SIZES.items()}
        self.caches["filter"] = ByteLRUCache(FILTER_BUDGET_BYTES)
        self._lock = threading.Lock()
        self.version = 0
        self._set_image(image, sigma)

    # ------------------------------------------------------------------ image state

    def _set_image(self, image: torch.Tensor, sigma: float | None) -> None:
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[0] != 1:
            raise InputError("image must be a (1, C, H, W) tensor")
        if image.shape[1] not in (1, 3):
            raise InputError(f"image must have 1 or 3 channels, got {image.shape[1]}")
        if not torch.isfinite(image).all():
            raise InputError("image contains NaN or Inf values")
        for model in self.models.values():
            expected = getattr(model.denoiser, "in_channels", None)
            if model.kind == "jacobian" and expected not in (None, image.shape[1]):
                raise InputError(
                    f"the image has {image.shape[1]} channel(s) but model {model.name} "
                    f"takes {expected}"
                )
        # float64, as `analyze filters` reads images, so the seeded noise is the same.
        image = image.detach().to("cpu", torch.float64)
        with self._lock:
            self.clean = image if sigma is not None else None
            self.given = None if sigma is not None else image
            self.sigma = sigma
            self.version += 1
            self._noise_estimate: float | None = None
            for cache in self.caches.values():
                cache.clear()

    def replace_image(self, image: torch.Tensor) -> None:
        """Explore another noisy image (an upload); every cached result is dropped."""
        self._set_image(image, None)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the image."""
        image = self.clean if self.clean is not None else self.given
        return tuple(image.shape[1:])

    @property
    def sigma_adjustable(self) -> bool:
        """True when noise is added by the explorer, so σ can change."""
        return self.clean is not None

    def state(self) -> dict:
        """What the page needs to know about the image (σ on the 0–255 scale)."""
        channels, height, width = self.shape
        return {
            "width": width,
            "height": height,
            "channels": channels,
            "version": self.version,
            "sigma": None if self.sigma is None else self.sigma * 255.0,
            "sigma_adjustable": self.sigma_adjustable,
            "sigma_max": MAX_SIGMA_255,
            "has_clean": self.clean is not None,
            "seed": self.seed,
            "patch": DEFAULT_PATCH,
            "patch_range": list(PATCH_RANGE),
        }

    # ------------------------------------------------------------------ arguments

    def model(self, name: object) -> ExploreModel:
        """The model called ``name``, or an InputError listing the names."""
        if not isinstance(name, str) or name not in self.models:
            raise InputError(
                f"model must be one of {', '.join(self.models)}; got {str(name)[:80]!r}"
            )
        return self.models[name]

    def check_sigma(self, sigma_255: float | None) -> float | None:
        """Image-scale σ for a request's σ (0–255 scale or None: the default)."""
        if sigma_255 is None:
            return self.sigma
        if not isinstance(sigma_255, (int, float)) or not math.isfinite(sigma_255):
            raise InputError(f"sigma must be a number, got {sigma_255!r}")
        if not self.sigma_adjustable:
            raise InputError(
                "sigma: this image is a noisy photo analysed as given; its noise level "
                "cannot be changed (a session made from a clean image and a sigma can)"
            )
        if not 0 <= sigma_255 <= MAX_SIGMA_255:
            raise InputError(f"sigma must be in [0, {MAX_SIGMA_255:g}], got {sigma_255:g}")
        # One decimal on the 0–255 scale: finer steps would only fill the caches.
        return round(float(sigma_255), 1) / 255.0

    def check_pixel(self, x: int, y: int) -> tuple[int, int]:
        """``(x, y)`` = (column, row) inside the image."""
        _, height, width = self.shape
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(
                f"pixel ({x}, {y}) is outside the {width}x{height} image "
                f"(x in 0..{width - 1}, y in 0..{height - 1})"
            )
        return int(x), int(y)

    def check_channel(self, channel: int) -> int:
        channels = self.shape[0]
        if not 0 <= channel < channels:
            raise InputError(f"channel must be in 0..{channels - 1}, got {channel}")
        return int(channel)

    # ------------------------------------------------------------------ cache

    def _cached(self, kind: str, key: tuple, compute: Callable[[], Any] | None):
        """The cached value of ``(kind, key)``, else ``compute()`` stored (None: don't)."""
        key = (self.version, *key)
        value = self.caches[kind].get(key)
        if value is None and compute is not None:
            value = compute()
            self.caches[kind].put(key, value)
        return value

    # ------------------------------------------------------------------ images

    def noisy(self, sigma: float | None) -> torch.Tensor:
        """The noisy image at ``sigma`` (image scale), ``(1, C, H, W)`` float64."""
        if self.clean is None:
            return self.given

        def make() -> torch.Tensor:
            from ..noise import add_noise

            return add_noise(self.clean, float(sigma), generator=self.seed)

        return self._cached("noisy", (sigma,), make)

    def noise_level(self, sigma: float | None) -> float:
        """The noise level the non-blind methods are told: σ, or the wavelet estimate."""
        if sigma is not None:
            return sigma
        if self._noise_estimate is None:
            from ..evaluation.baselines import estimate_noise_sigma
            from ..io import to_numpy

            self._noise_estimate = estimate_noise_sigma(to_numpy(self.given))
        return self._noise_estimate

    # ------------------------------------------------------------------ outputs

    def _basis(self, model: ExploreModel, sigma: float | None):
        """The non-local filter of the noisy image (NTK or NLM), computed once per σ."""

        def make():
            from ..ntk.denoiser import filter_basis

            y = self.noisy(sigma)
            _, height, width = self.shape
            small = height * width <= FULL_MATRIX_PIXELS
            options = {"kernel_size": 7} if model.filter_method == "nlm" else {}
            return filter_basis(
                y[0],
                method=model.filter_method,
                sigma=self.noise_level(sigma),
                columns=None if small else 0.02,
                seed=self.seed,
                **options,
            )

        return self._cached("basis", (model.name, sigma), make)

    def output(self, name: str, sigma_255: float | None = None, *, compute: bool = True):
        """The denoised image and facts about it.

        Returns
        -------
        dict or None
            ``x_hat`` (Tensor ``(1, C, H, W)``, not clipped), ``info`` (JSON-ready:
            ``psnr`` with a clean image, ``noisy_psnr``, ``seconds``, ``sigma`` the noise
            level told to non-blind methods, ``t`` for twicing, ``noise_map_255`` the
            mean/min/max of the map a network with a noise-map estimator was fed) and
            ``noise_map`` (that map, ``(1, k, H, W)``, or None); None when not cached and
            ``compute`` is False.
        """
        model = self.model(name)
        sigma = self.check_sigma(sigma_255)

        def make() -> dict:
            start = time.perf_counter()
            y = self.noisy(sigma)
            info: dict[str, Any] = {"model": model.name}
            level = None
            if model.kind == "jacobian":
                from ..inference import denoise_tensor, estimated_noise_map

                with torch.no_grad():
                    x_hat = denoise_tensor(model.denoiser, y.float()).double()
                # What a model with a noise-map estimator fed its network, blind.
                level = estimated_noise_map(model.denoiser, y.float())
                if level is not None:
                    info["noise_map_255"] = noise_map_summary(level)
            elif model.kind == "nonlocal":
                from ..ntk.twicing import select_steps, twicing

                basis = self._basis(model, sigma)
                level = self.noise_level(sigma)
                t, _ = select_steps(basis, y[0], stop="sure-trace", sigma=level)
                x_hat = twicing(basis, y[0], t)[None]
                info["t"] = float(t)
                info["sigma_told"] = level * 255.0
            else:
                level = self.noise_level(sigma)
                with torch.no_grad():
                    x_hat = model.denoiser(y.float(), sigma=level).double()
                info["sigma_told"] = level * 255.0
            if self.clean is not None:
                from ..metrics import psnr

                info["psnr"] = float(psnr(x_hat, self.clean)[0])
                info["noisy_psnr"] = float(psnr(y, self.clean)[0])
            info["seconds"] = time.perf_counter() - start
            return {"x_hat": x_hat, "info": info, "noise_map": level}

        return self._cached("output", (model.name, sigma), make if compute else None)

    # ------------------------------------------------------------------ filters

    def exact_rows(self, name: str, sigma: float | None, precision: str = "fast"):
        """The :class:`~filterscope.analysis.jacobian.ExactRows` of a network on the noisy
        image at ``sigma``: what depends only on the image (the network in the
        precision's dtype, the noise estimate and its gradient), computed once."""
        model = self.model(name)

        def make():
            from ..analysis.jacobian import ExactRows

            noisy = self.noisy(sigma).to(module_device(model.denoiser))
            return ExactRows(model.denoiser, noisy, dtype=FILTER_PRECISIONS[precision])

        return self._cached("rows", (model.name, sigma, precision), make)

    def filter(
        self,
        name: str,
        x: int,
        y: int,
        sigma_255: float | None = None,
        *,
        channel: int = 0,
        precision: str = "exact",
        radius: int | None = None,
        compute: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict | None:
        """The filter at pixel ``(x, y)``: the row of the operator that made the image.

        For networks, the exact Jacobian row of the function ``denoise`` runs
        (:class:`filterscope.analysis.jacobian.ExactRows`: receptive-field crops on the
        stride grid, plus the blind noise estimate's term wherever it reads the image);
        for NTK/NLM filters the row of the twicing operator ``H_t = I - (I - W)^t`` at
        the step ``t`` that made the denoised image (equation 6 of Tachella et al.).

        Parameters
        ----------
        precision : {"exact", "fast"}, keyword-only
            ``exact``: float64, equal to autograd on the whole image; ``fast``: float32
            (5-9x faster on CPU; a DRUNet row is then within ~2e-4 of the exact one).
        radius : int or None, keyword-only
            Half-width (pixels) of the window the weights are returned on; None: the
            smallest holding 99% of the absolute weight (:data:`WINDOW_SHARE`).
        should_stop : callable or None, keyword-only
            Polled between layers; True ends the computation with
            :class:`~filterscope.analysis.jacobian.Cancelled` (nothing is cached).

        Returns
        -------
        dict or None
            ``filter`` (float32 array ``(h, w)``, ``(C, h, w)`` for colour) on the window
            ``box``/``origin``/``size``; ``window_radius``, ``window_99``,
            ``max_radius``, ``window_share`` (its share of ``Σ|w|``), ``far`` (weights
            outside the network's receptive field, ``[x, y, channel, w]``: the blind
            noise estimate's term), ``sum``, ``negative_fraction``, ``extent_rms``,
            ``extent_99``, ``output_value`` (= the denoised image's pixel),
            ``estimate_weight``, ``t`` (twicing step), ``pixel``, ``sigma``, ``model``.
        """
        model = self.model(name)
        if model.kind == "output":
            raise InputError(f"model {model.name} has no Jacobian: it is shown as output only")
        sigma = self.check_sigma(sigma_255)
        x, y = self.check_pixel(x, y)
        channel = self.check_channel(channel)
        if precision not in FILTER_PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(FILTER_PRECISIONS)}")
        if radius is not None and (
            isinstance(radius, bool) or not isinstance(radius, int) or radius < 0
        ):
            raise InputError(f"radius must be a number of pixels >= 0, got {radius!r}")
        if model.kind == "nonlocal":
            precision = "exact"  # the NTK/NLM filter is float64 throughout

        def make() -> dict:
            from ..analysis.jacobian import JacobianRow

            start, cpu = time.perf_counter(), time.process_time()
            extra: dict[str, Any] = {}
            if model.kind == "jacobian":
                rows = self.exact_rows(model.name, sigma, precision)
                (row,) = rows.rows([(x, y)], channel=channel, should_stop=should_stop)
                local = rows.box(x, y)
            else:
                basis = self._basis(model, sigma)
                t = self.output(model.name, sigma_255)["info"]["t"]
                weights = basis.rows([(x, y)], t=t)[0]
                _, height, width = self.shape
                noisy = self.noisy(sigma)
                row = JacobianRow(
                    pixel=(x, y),
                    channel=channel,
                    weights=weights[None],
                    box=(0, height, 0, width),
                    value=float((weights * noisy[0, channel]).sum()),
                )
                local = row.box
                extra["t"] = t
            entry = filter_entry(row, local)
            entry["stats"].update(
                extra,
                model=model.name,
                kind=model.kind,
                precision=precision,
                sigma=None if sigma is None else sigma * 255.0,
                seconds=time.perf_counter() - start,
                # CPU time of the whole process (all torch threads): the work itself,
                # whatever else the machine is doing.
                cpu_seconds=time.process_time() - cpu,
            )
            return entry

        key = (model.name, x, y, channel, sigma, precision)
        entry = self._cached("filter", key, make if compute else None)
        return None if entry is None else filter_view(entry, radius)

    def warm_up(self, should_stop: Callable[[], bool] | None = None) -> None:
        """Prepare each network's rows on the image (noise estimate and its gradient) and
        compute one fast filter at the centre, so that the first click pays neither the
        preparation nor PyTorch's one-time costs. Stops when ``should_stop`` says so."""
        from ..analysis.jacobian import Cancelled

        _, height, width = self.shape
        for model in self.models.values():
            if model.kind == "jacobian":
                self.exact_rows(model.name, self.sigma, "fast")
        for model in self.models.values():
            if model.kind == "jacobian":
                try:
                    self.filter(
                        model.name,
                        width // 2,
                        height // 2,
                        precision="fast",
                        should_stop=should_stop,
                    )
                except Cancelled:
                    return

    # ------------------------------------------------------------------ decomposition

    def decomposition(
        self, name: str, sigma_255: float | None = None, *, compute: bool = True
    ) -> dict | None:
        """``f(y) = A_y y + b_y`` on the whole noisy image (Mohan et al. 2020, §3).

        Returns
        -------
        dict or None
            ``linear`` and ``bias`` (Tensors ``(1, C, H, W)``) and ``info``: their
            norms (RMS on the 0–255 scale, as ``analyze decomposition``), ``bias_span``
            (the largest ``|b_y|``, 0–255, the ends of the bias image's gray scale).
        """
        model = self.model(name)
        if model.kind != "jacobian":
            raise InputError(f"model {model.name} is not a network: it has no decomposition")
        sigma = self.check_sigma(sigma_255)

        def make() -> dict:
            from ..analysis import first_order_decomposition
            from ..analysis.decomposition import _norm_255

            start = time.perf_counter()
            # float64 makes b_y of a bias-free network ~1e-15; float32 is enough with bias.
            dtype = torch.float32 if model.has_bias else torch.float64
            noisy = self.noisy(sigma).to(module_device(model.denoiser))
            dec = first_order_decomposition(model.denoiser, noisy, dtype=dtype)
            info = {
                "model": model.name,
                "sigma": None if sigma is None else sigma * 255.0,
                "output_norm": float(_norm_255(dec.output)[0]),
                "linear_norm": float(_norm_255(dec.linear)[0]),
                "bias_norm": float(_norm_255(dec.bias)[0]),
                "residual_norm": float(_norm_255(dec.residual)[0]),
                "bias_span": float(dec.bias.abs().max()) * 255.0,
                "seconds": time.perf_counter() - start,
            }
            linear, bias = dec.linear.double().cpu(), dec.bias.double().cpu()
            return {"linear": linear, "bias": bias, "info": info}

        return self._cached("decomposition", (model.name, sigma), make if compute else None)

    # ------------------------------------------------------------------ spectrum

    def patch_box(self, x: int, y: int, patch: int) -> tuple[int, int, int]:
        """``(left, top, side)`` of the square patch centred (as near as fits) on ``(x, y)``."""
        _, height, width = self.shape
        side = min(patch, height, width)
        left = min(max(x - side // 2, 0), width - side)
        top = min(max(y - side // 2, 0), height - side)
        return left, top, side

    def spectrum(
        self,
        name: str,
        x: int,
        y: int,
        sigma_255: float | None = None,
        *,
        patch: int = DEFAULT_PATCH,
        compute: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict | None:
        """SVD of the Jacobian block of the patch around ``(x, y)`` *inside the image*
        (Mohan et al. 2020, §6.2; :func:`filterscope.analysis.patch_spectrum_in_image`):
        singular values, effective dimension (at most the patch's dimension for a
        contraction), top singular value and whether the block is a contraction, the
        leading left singular vectors as small images (``[k][row][col]``, or
        ``[k][channel][row][col]`` for colour). ``should_stop`` is polled between layers
        (:class:`~filterscope.analysis.jacobian.Cancelled`)."""
        model = self.model(name)
        if model.kind != "jacobian":
            raise InputError(f"model {model.name} is not a network: no patch spectrum")
        sigma = self.check_sigma(sigma_255)
        x, y = self.check_pixel(x, y)
        if not PATCH_RANGE[0] <= patch <= PATCH_RANGE[1]:
            raise InputError(f"patch must be in {PATCH_RANGE[0]}..{PATCH_RANGE[1]}, got {patch}")
        left, top, side = self.patch_box(x, y, patch)

        def make() -> dict:
            from ..analysis import patch_spectrum_in_image

            start = time.perf_counter()
            crop = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
            device = module_device(model.denoiser)
            clean = None if self.clean is None else self.clean[crop].to(device)
            noisy = self.noisy(sigma).to(device)
            found = patch_spectrum_in_image(
                model.denoiser,
                noisy,
                (top, left, side, side),
                x=clean,
                sigma=sigma,
                should_stop=should_stop,
            )
            out = found.to_dict()
            count = min(VECTORS, len(found.singular_values))
            vectors = found.singular_vector_images(list(range(count)))
            out["vectors"] = [(v[0] if v.shape[0] == 1 else v).tolist() for v in vectors]
            out.update(
                model=model.name,
                origin=[left, top],
                patch=side,
                seconds=time.perf_counter() - start,
            )
            return out

        return self._cached(
            "spectrum", (model.name, left, top, side, sigma), make if compute else None
        )

    # ------------------------------------------------------------------ eigenimages

    def eigenimages(
        self, name: str, sigma_255: float | None = None, *, compute: bool = True
    ) -> dict | None:
        """Leading eigenvalues and eigenimages of a non-local filter (Tachella et al.,
        Figure 1): ``eigenvalues`` and ``images`` (Tensor ``(k, H, W)``)."""
        model = self.model(name)
        if model.kind != "nonlocal":
            raise InputError(f"model {model.name} is not an NTK/NLM filter: no eigenimages")
        sigma = self.check_sigma(sigma_255)
        if not compute and self.caches["basis"].get((self.version, model.name, sigma)) is None:
            return None
        basis = self._basis(model, sigma)
        images = basis.eigenimages(EIGENIMAGES)
        return {
            "images": images,
            "info": {
                "model": model.name,
                "sigma": None if sigma is None else sigma * 255.0,
                "eigenvalues": basis.eigvals[: len(images)].tolist(),
                "count": len(images),
            },
        }

    # ------------------------------------------------------------------ pictures

    def picture(
        self,
        kind: str,
        name: str | None,
        sigma_255: float | None = None,
        *,
        index: int = 0,
        compute: bool = True,
    ) -> bytes | None:
        """A PNG for the page: ``noisy``, ``clean``, ``denoised``, ``residual``,
        ``noise-map`` (white is twice the map's RMS), ``linear``, ``bias`` or ``eigen``
        (signed images: mid-gray is 0)."""
        if kind not in PICTURES:
            raise InputError(f"image kind must be one of {', '.join(PICTURES)}, got {kind[:40]!r}")
        sigma = self.check_sigma(sigma_255)
        if kind == "noisy":  # cheap: never worth a trip to the worker
            return png_bytes(self.noisy(sigma)[0])
        if kind == "clean":
            if self.clean is None:
                raise InputError("there is no clean image (this session began from a noisy photo)")
            return png_bytes(self.clean[0])
        if name is None:
            raise InputError(f"the {kind} image needs a model")
        if kind in ("denoised", "residual", "noise-map"):
            result = self.output(name, sigma_255, compute=compute)
            if result is None:
                return None
            if kind == "noise-map":
                level = result["noise_map"]
                if level is None:
                    raise InputError(f"{name} has no noise-map estimator: no noise map to show")
                # Twice the RMS is white, so one level per image (a pooled map) is mid-gray
                # rather than a white square, and a local map shows where it reads more.
                span = 2.0 * float(root_mean_square(level)[0])
                return png_bytes((level[0] / max(span, 1e-12)).clamp(max=1.0))
            if kind == "denoised":
                return png_bytes(result["x_hat"][0])
            residual = self.noisy(sigma) - result["x_hat"]
            # ±3 noise standard deviations span the gray scale: the level the model was
            # fed when it estimates a map (on camera noise the wavelet σ reads far less).
            level = self.noise_level(sigma)
            if result["noise_map"] is not None:
                level = float(root_mean_square(result["noise_map"])[0])
            return png_bytes(signed_to_unit(residual[0], 3.0 * level))
        if kind in ("linear", "bias"):
            result = self.decomposition(name, sigma_255, compute=compute)
            if result is None:
                return None
            if kind == "linear":
                return png_bytes(result["linear"][0])
            span = result["info"]["bias_span"] / 255.0
            return png_bytes(signed_to_unit(result["bias"][0], span))
        result = self.eigenimages(name, sigma_255, compute=compute)
        if result is None:
            return None
        if not 0 <= index < result["info"]["count"]:
            raise InputError(f"index must be in 0..{result['info']['count'] - 1}, got {index}")
        image = result["images"][index]
        return png_bytes(signed_to_unit(image, float(image.abs().max())))


#: Largest half-width (pixels) of a window sent to the page (257×257 weights).
MAX_SENT_RADIUS = 128


def filter_entry(row, local: tuple[int, int, int, int]) -> dict:
    """What the cache keeps of a row: its summary, its weights on the receptive field
    ``local`` as float32, the few weights outside it (``far``), and the radius of the
    smallest window around the pixel holding :data:`WINDOW_SHARE` of ``Σ|w|`` on the
    receptive field (the far weights are listed apart, ``far_share`` of ``Σ|w|``)."""
    from ..analysis import describe_row

    found = describe_row(row)
    stats = found.to_dict(weights=False)
    stats["estimate_weight"] = row.estimate_weight
    t, b, lft, rgt = row.box
    lt, lb, ll, lr = local
    full = row.weights.detach().to("cpu", torch.float64)
    inside = full[:, lt - t : lb - t, ll - lft : lr - lft]
    outside = full.clone()
    outside[:, lt - t : lb - t, ll - lft : lr - lft] = 0
    far = [
        [lft + int(c), t + int(r), int(k), float(outside[k, r, c])]
        for k, r, c in outside.nonzero().tolist()
    ]
    px, py = row.pixel
    total = float(full.abs().sum())
    # Σ|w| within each Chebyshev radius of the pixel, the far weights included.
    rows_ = torch.arange(lt, lb, dtype=torch.float64)[:, None] - py
    cols = torch.arange(ll, lr, dtype=torch.float64)[None, :] - px
    cheb = torch.maximum(rows_.abs(), cols.abs()).long()
    max_radius = int(cheb.max())
    per_radius = torch.zeros(max_radius + 1, dtype=torch.float64)
    per_radius.index_add_(0, cheb.flatten(), inside.abs().sum(0).flatten())
    cumulative = per_radius.cumsum(0)
    local_total = float(cumulative[-1])
    if local_total > 0:
        # 99% of the weight on the receptive field: the far weights (the blind noise
        # estimate's, up to half of Σ|w| for the shipped DRUNet) are listed apart.
        reached = (cumulative < WINDOW_SHARE * local_total - 1e-12).sum()
        window_99 = min(int(reached), max_radius)
    else:
        window_99 = 0
    stats["far_share"] = sum(abs(w) for *_, w in far) / total if total > 0 else 0.0
    # A float32 copy owning its buffer (a view would keep the float64 row alive).
    weights = np.array(inside.numpy(), dtype=np.float32)
    return {
        "stats": stats,
        "weights": weights,
        "local": local,
        "far": far,
        "window_99": max(window_99, MIN_WINDOW_RADIUS),
        "max_radius": max_radius,
        "total_abs": total,
    }


def filter_view(entry: dict, radius: int | None) -> dict:
    """The JSON-ready answer of :meth:`Explorer.filter` for a cached ``entry`` on the
    window of half-width ``radius`` (None: the 99% window), at most
    :data:`MAX_SENT_RADIUS`."""
    out = dict(entry["stats"])
    px, py = out["pixel"]
    lt, lb, ll, lr = entry["local"]
    r = entry["window_99"] if radius is None else radius
    r = min(r, entry["max_radius"], MAX_SENT_RADIUS)
    top, bottom = max(py - r, lt), min(py + r + 1, lb)
    left, right = max(px - r, ll), min(px + r + 1, lr)
    weights = entry["weights"][:, top - lt : bottom - lt, left - ll : right - ll]
    total = entry["total_abs"]
    out.update(
        filter=weights[0] if weights.shape[0] == 1 else weights,
        box={"top": top, "bottom": bottom, "left": left, "right": right},
        origin=[left, top],
        size=[right - left, bottom - top],
        window_radius=r,
        window_99=entry["window_99"],
        max_radius=min(entry["max_radius"], MAX_SENT_RADIUS),
        window_share=float(np.abs(weights, dtype=np.float64).sum()) / total if total else 1.0,
        window_sum=float(weights.sum(dtype=np.float64)),
        far=entry["far"],
    )
    return out


def encode_filter(view: dict) -> dict:
    """``view`` with its ``filter`` array as base64 little-endian float32 (``filter``,
    ``filter_shape``): a third the size of JSON numbers, and exact."""
    import base64

    weights = np.ascontiguousarray(view["filter"], dtype="<f4")
    out = dict(view)
    out["filter"] = base64.b64encode(weights.tobytes()).decode("ascii")
    out["filter_shape"] = list(weights.shape)
    return out


def decode_filter(answer: dict) -> np.ndarray:
    """The weights of an ``/api/filter`` answer (:func:`encode_filter`) as an array."""
    import base64

    data = base64.b64decode(answer["filter"])
    return np.frombuffer(data, dtype="<f4").reshape(answer["filter_shape"])


PICTURES = ("noisy", "clean", "denoised", "residual", "noise-map", "linear", "bias", "eigen")
