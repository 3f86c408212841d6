"""Real camera noise: the blind default against CBM3D and NLM on PolyU-Canon.

Run from the repository root (needs ../shared/data/PolyU-Canon, evaluation only)::

    nice -n 10 python benchmarks/real_noise.py                  # all 55 crops
    nice -n 10 python benchmarks/real_noise.py --images 4       # a quick look
    nice -n 10 python benchmarks/real_noise.py --models bf-drunet-color,path/to/new.safetensors
    nice -n 10 python benchmarks/real_noise.py --gray --name real_noise_gray    # gray photos

Side by side on the same full 512x512 crops (PSNR on the 0-255 scale over all three
channels, SSIM, means over the crops):

- ``noisy``: the camera's JPEG as it is;
- ``MODEL (blind)``: each ``--models`` spec with no σ, as ``filterscope denoise --model
  MODEL`` runs it (the first spec is the one also given an oracle σ); the spec ``auto`` is
  plain ``filterscope denoise``, which chooses the default or the real-noise model per image;
- ``MODEL (oracle σ=S)``: the first model told the single σ that is best for the set
  (an oracle no blind user has), searched over ``--grid`` on ``--search-images`` crops,
  then scored on every crop;
- ``MODEL (blind, self-ensemble)``: each spec blind with its 8 flips and rotations
  averaged, as ``filterscope denoise --ensemble`` runs it (8 times the time);
- ``cbm3d (σ estimated)``: CBM3D with each crop's wavelet σ estimate (``bm3d:estimate``);
- ``cbm3d (oracle σ=S)``: CBM3D with the single σ of ``--cbm3d-grid`` that is best on
  ``--cbm3d-search-images`` crops (an oracle, as the model's), then scored on every crop
  CBM3D runs on;
- ``nlm (σ estimated)``: scikit-image non-local means (``nlm:estimate``).

CBM3D costs about a minute per RGB crop on this machine's shared cores, so it runs on
``--cbm3d-images`` crops (spread over the set); the table says how many crops each row
has, and a second table compares every method on the crops they all have.

``--gray`` makes gray photos of the same crops: each crop's luminance
(``filterscope.camera_noise.luminance``, as gray recipes convert RGB images), the noisy
one stored at 8 bits as a gray photo is; the models are then the gray ones (``default`` and
``auto`` for one channel) and CBM3D is BM3D. PSNR is then over the one channel.

Every (method, crop, σ) score is cached in ``benchmarks/results/real_noise.partial.json``
(keyed by the model's weights), so a rerun only computes what is new; ``--methods``
restricts a run to some method families (two processes may fill the cache at once).
Results: ``benchmarks/results/NAME.json`` (``--name``, default ``real_noise``); ``--figure``
draws crops of noisy | ours | CBM3D | clean and the blind model's noise map to
``benchmarks/results/NAME.png``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from _common import RESULTS_DIR, SHARED, print_table, results_name, write_results

DATA = SHARED / "data" / "PolyU-Canon"
CACHE = RESULTS_DIR / "real_noise.partial.json"
FAMILIES = ("noisy", "blind", "ensemble", "oracle", "cbm3d", "nlm")
AUTO = "auto"


@dataclass
class Config:
    """What one run computes (σ on the 0-255 scale)."""

    models: list[str] = field(default_factory=lambda: ["default"])
    grid: list[float] = field(default_factory=lambda: [3.0, 5.0, 7.0, 10.0, 13.0, 16.0])
    search_images: int = 11
    cbm3d_grid: list[float] = field(default_factory=lambda: [5.0, 10.0, 15.0])
    cbm3d_images: int = 55
    cbm3d_search_images: int = 5
    methods: tuple[str, ...] = FAMILIES
    gray: bool = False

    @property
    def channels(self) -> int:
        return 1 if self.gray else 3


@dataclass
class Pair:
    name: str
    noisy: torch.Tensor  # (1, 3, H, W) in [0, 1]
    clean: torch.Tensor


def spread(items: Sequence, count: int) -> list:
    """``count`` of ``items`` evenly spread over them (all when ``count`` >= their number)."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def resolve(spec: str, channels: int = 3) -> str:
    from filterscope.models.zoo import default_model_name

    return default_model_name(channels) if spec == "default" else spec


def weights_tag(model: torch.nn.Module) -> str:
    """Short digest of a network's weights and of its constructor options when they hold
    more than the original ones (a retrained default, or the same weights with a new
    blind path such as ``pooled_noise_map``, gets new cache entries)."""
    digest = hashlib.sha256()
    config = getattr(model, "config", {})
    if config.get("pooled_noise_map"):  # older tags were weights only: keep them valid
        digest.update(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


class Methods:
    """The denoisers of a run, each ``fn(y, sigma_255 | None) -> (x_hat, sigma_hat_255)``.

    The model spec ``auto`` is what ``filterscope denoise`` runs when no model is named:
    the shipped default or the shipped real-noise model, chosen per image
    (:func:`filterscope.inference.choose_shipped_model`)."""

    def __init__(self, models: list[str], channels: int = 3):
        from filterscope.hub import load_model

        self._load = load_model
        self._loaded: dict[str, torch.nn.Module] = {}
        self.channels = channels
        self.models = {spec: self.load(resolve(spec, channels)) for spec in models if spec != AUTO}
        self.tags = {spec: weights_tag(m) for spec, m in self.models.items()}
        if AUTO in models:
            self.tags[AUTO] = self._auto_tag()

    def load(self, name: str) -> torch.nn.Module:
        if name not in self._loaded:
            self._loaded[name] = self._load(name).eval()
        return self._loaded[name]

    def _auto_tag(self) -> str:
        """Digest of both shipped models' weights and the choice's threshold."""
        from filterscope.inference import real_noise_threshold
        from filterscope.models.zoo import default_model_name, real_noise_model_name

        real = real_noise_model_name(self.channels)
        parts = [weights_tag(self.load(n)) for n in (default_model_name(self.channels), real) if n]
        if real:
            parts.append(f"{real_noise_threshold(self.load(real)):g}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]

    def network(self, spec: str, y: torch.Tensor, sigma: float | None, *, ensemble: bool = False):
        from filterscope.inference import choose_shipped_model, denoise_tensor

        level = None if sigma is None else sigma / 255.0
        with torch.inference_mode():
            if spec == AUTO:
                name, _ = choose_shipped_model(y, sigma=level, load=self.load)
                model = self.load(name)
            else:
                model = self.models[spec]
            return denoise_tensor(model, y, sigma=level, ensemble=ensemble), None

    def baseline(self, name: str, y: torch.Tensor, sigma: float | None):
        denoiser = self.load(name)
        level = None if sigma is None else sigma / 255.0
        result = denoiser.denoise_with_info(y, level)
        estimate = result.per_image[0].get("sigma") if result.per_image else None
        return result.x_hat, None if estimate is None else 255.0 * float(estimate)


def score(x_hat: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB, 0-255 scale over all channels) and SSIM of the clipped estimate."""
    from filterscope.metrics import psnr, ssim

    return float(psnr(x_hat.float(), clean)[0]), float(ssim(x_hat.float(), clean)[0])


class Cache:
    """Per (method, crop, σ) scores, merged with the file on every save (under a lock)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, list] = {}
        if path is not None and path.exists():
            self.data = json.loads(path.read_text())

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                on_disk = json.loads(self.path.read_text())
                self.data = {**on_disk, **self.data}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=0) + "\n")
            os.replace(tmp, self.path)


def _key(label: str, name: str, sigma: float | None) -> str:
    return f"{label}|{name}|{'-' if sigma is None else f'{sigma:g}'}"


def fill(
    cache: Cache,
    label: str,
    pairs: list[Pair],
    sigma: float | None,
    run: Callable[[torch.Tensor, float | None], tuple[torch.Tensor, float | None]],
) -> None:
    """Score ``run`` on every pair not yet in the cache (saving after each)."""
    for pair in pairs:
        key = _key(label, pair.name, sigma)
        if key in cache.data:
            continue
        start = time.perf_counter()
        x_hat, sigma_hat = run(pair.noisy, sigma)
        value, similarity = score(x_hat, pair.clean)
        cache.data[key] = [value, similarity, sigma_hat]
        cache.save()
        seconds = time.perf_counter() - start
        print(f"  {label} {pair.name} σ={sigma}: {value:.3f} dB ({seconds:.0f} s)", flush=True)


def _mean(cache: Cache, label: str, names: list[str], sigma: float | None, index: int = 0):
    values = [cache.data.get(_key(label, n, sigma)) for n in names]
    if not names or any(v is None for v in values):
        return None
    return statistics.fmean(v[index] for v in values)


def best_sigma(cache: Cache, label: str, names: list[str], grid: list[float]) -> float | None:
    """The σ of ``grid`` with the highest mean PSNR on ``names`` (None until all are scored)."""
    means = {s: _mean(cache, label, names, s) for s in grid}
    if any(m is None for m in means.values()):
        return None
    return max(grid, key=lambda s: means[s])


def cbm3d_search_names(pairs: list[Pair], config: Config) -> list[str]:
    """The crops CBM3D's oracle σ is searched on (spread over the crops it runs on)."""
    return [p.name for p in spread(spread(pairs, config.cbm3d_images), config.cbm3d_search_images)]


def compute(pairs: list[Pair], config: Config, methods: Methods, cache: Cache) -> None:
    """Fill the cache with everything ``config`` asks for, cheapest rows first."""
    cbm3d_pairs = spread(pairs, config.cbm3d_images)
    search = spread(pairs, config.search_images)
    first = config.models[0]
    if "noisy" in config.methods:
        fill(cache, "noisy", pairs, None, lambda y, s: (y, None))
    if "blind" in config.methods:
        for spec in config.models:
            label = f"{spec}#{methods.tags[spec]}"
            fill(cache, label, pairs, None, lambda y, s, spec=spec: methods.network(spec, y, s))
    if "ensemble" in config.methods:
        for spec in config.models:
            run = lambda y, s, spec=spec: methods.network(spec, y, s, ensemble=True)  # noqa: E731
            fill(cache, f"{spec}+ensemble#{methods.tags[spec]}", pairs, None, run)
    if "nlm" in config.methods:
        fill(
            cache, "nlm:estimate", pairs, None, lambda y, s: methods.baseline("nlm:estimate", y, s)
        )
    if "oracle" in config.methods:
        label = f"{first}#{methods.tags[first]}"
        run = lambda y, s: methods.network(first, y, s)  # noqa: E731
        for sigma in config.grid:
            fill(cache, label, search, sigma, run)
        best = best_sigma(cache, label, [p.name for p in search], config.grid)
        if best is not None:
            fill(cache, label, pairs, best, run)
    if "cbm3d" in config.methods:
        # The oracle first: it is the row the targets compare against, and the cache
        # keeps it if a long run is stopped before the per-crop estimates.
        run = lambda y, s: methods.baseline("bm3d", y, s)  # noqa: E731
        cbm3d_search = spread(cbm3d_pairs, config.cbm3d_search_images)
        for sigma in config.cbm3d_grid:
            fill(cache, "bm3d", cbm3d_search, sigma, run)
        best = best_sigma(cache, "bm3d", cbm3d_search_names(pairs, config), config.cbm3d_grid)
        if best is not None:
            fill(cache, "bm3d", cbm3d_pairs, best, run)
        fill(
            cache,
            "bm3d:estimate",
            cbm3d_pairs,
            None,
            lambda y, s: methods.baseline("bm3d:estimate", y, s),
        )


def rows_for(pairs: list[Pair], config: Config, tags: dict[str, str], cache: Cache) -> list[dict]:
    """The table: one row per method, each over the crops it has been scored on."""
    names = [p.name for p in pairs]
    cbm3d_names = [p.name for p in spread(pairs, config.cbm3d_images)]
    search = [p.name for p in spread(pairs, config.search_images)]
    first = config.models[0]
    first_label = f"{first}#{tags[first]}"
    oracle = best_sigma(cache, first_label, search, config.grid)
    cbm3d_oracle = best_sigma(cache, "bm3d", cbm3d_search_names(pairs, config), config.cbm3d_grid)
    plan = [("noisy", "noisy", None, names)]
    for spec in config.models:
        plan.append((f"{spec} (blind)", f"{spec}#{tags[spec]}", None, names))
    for spec in config.models:
        label = f"{spec}+ensemble#{tags[spec]}"
        plan.append((f"{spec} (blind, self-ensemble)", label, None, names))
    if oracle is not None:
        plan.append((f"{first} (oracle σ={oracle:g} for the set)", first_label, oracle, names))
    bm3d = "cbm3d" if config.channels == 3 else "bm3d"
    plan.append((f"{bm3d} (σ estimated per crop)", "bm3d:estimate", None, cbm3d_names))
    if cbm3d_oracle is not None:
        label = f"{bm3d} (oracle σ={cbm3d_oracle:g} for the set)"
        plan.append((label, "bm3d", cbm3d_oracle, cbm3d_names))
    plan.append(("nlm (σ estimated per crop)", "nlm:estimate", None, names))
    rows = []
    for method, label, sigma, wanted in plan:
        have = [n for n in wanted if _key(label, n, sigma) in cache.data]
        if not have:
            continue
        estimates = [cache.data[_key(label, n, sigma)][2] for n in have]
        psnr_mean = _mean(cache, label, have, sigma)
        rows.append(
            {
                "method": method,
                "crops": len(have),
                "psnr": round(psnr_mean, 3),
                "gain": round(psnr_mean - _mean(cache, "noisy", have, None), 3),
                "ssim": round(_mean(cache, label, have, sigma, 1), 4),
                "mean σ̂": (
                    round(statistics.fmean(estimates), 2) if None not in estimates else None
                ),
                "_key": (label, sigma),
            }
        )
    return rows


def common_rows(rows: list[dict], cache: Cache, names: list[str]) -> tuple[list[dict], int]:
    """Every row again, on the crops that all rows have (a paired comparison)."""
    common = [
        n for n in names if all(_key(*r["_key"][:1], n, r["_key"][1]) in cache.data for r in rows)
    ]
    out = []
    for row in rows:
        label, sigma = row["_key"]
        value = _mean(cache, label, common, sigma)
        if value is None:
            continue
        out.append(
            {
                "method": row["method"],
                "psnr": round(value, 3),
                "gain": round(value - _mean(cache, "noisy", common, None), 3),
                "ssim": round(_mean(cache, label, common, sigma, 1), 4),
            }
        )
    return out, len(common)


def search_curves(pairs, config: Config, tags: dict[str, str], cache: Cache) -> dict:
    """Mean PSNR at each σ of the oracle searches (on the crops they were searched on)."""
    first = config.models[0]
    search = [p.name for p in spread(pairs, config.search_images)]
    cbm3d_names = cbm3d_search_names(pairs, config)
    curve = lambda label, names, grid: {  # noqa: E731
        f"{s:g}": (None if (m := _mean(cache, label, names, s)) is None else round(m, 3))
        for s in grid
    }
    return {
        "model": {
            "crops": len(search),
            "psnr": curve(f"{first}#{tags[first]}", search, config.grid),
        },
        "cbm3d": {"crops": len(cbm3d_names), "psnr": curve("bm3d", cbm3d_names, config.cbm3d_grid)},
    }


def load_pairs(folder: Path, images: int, *, gray: bool = False) -> list[Pair]:
    """``images`` crops spread over the folder's pairs; ``gray``: their luminance, the noisy
    one stored at 8 bits (named ``CROP@gray``, so cached scores never mix)."""
    from filterscope.io import read_image, to_tensor

    files = sorted((folder / "noisy").iterdir())
    pairs = []
    for path in spread(files, images):
        noisy = to_tensor(read_image(path)[0])
        clean = to_tensor(read_image(folder / "clean" / path.name)[0])
        if gray:
            pairs.append(Pair(f"{path.stem}@gray", *gray_photo(noisy, clean)))
        else:
            pairs.append(Pair(path.stem, noisy, clean))
    return pairs


def gray_photo(noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An RGB pair (1, 3, H, W) as a gray photo: the luminance of each, the noisy one
    rounded to 8 bits as a stored gray image is."""
    from filterscope.camera_noise import luminance, quantize

    return quantize(luminance(noisy), 8), luminance(clean)


def noise_map(model: torch.nn.Module, y: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The blind model's noise map (0-255 scale, (H, W)) and where it comes from."""
    from filterscope.noise import estimate_noise_level

    estimate = getattr(model, "estimate_noise_map", None)
    with torch.inference_mode():
        level = estimate(y) if estimate is not None else None
        if level is not None:
            level = level.expand(-1, -1, *y.shape[-2:]).mean(1)[0]
            return 255.0 * level, "the model's noise-map estimate"
        sigma = float(estimate_noise_level(y)[0])
    return torch.full(y.shape[-2:], 255.0 * sigma), "wavelet σ estimate (a constant)"


def figure(pair: Pair, config: Config, methods: Methods, cbm3d_sigma: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = config.models[0]
    ours, _ = methods.network(first, pair.noisy, None)
    cbm3d, _ = methods.baseline("bm3d", pair.noisy, cbm3d_sigma)
    level, source = noise_map(methods.models[first], pair.noisy)
    h, w = pair.noisy.shape[-2:]
    top, left = (h - 192) // 2, (w - 192) // 2
    crop = lambda t: t[0, :, top : top + 192, left : left + 192].clamp(0, 1).permute(1, 2, 0)  # noqa: E731
    bm3d = "CBM3D" if config.channels == 3 else "BM3D"
    panels = [
        (f"noisy {score(pair.noisy, pair.clean)[0]:.2f} dB", crop(pair.noisy)),
        (f"{first} blind {score(ours, pair.clean)[0]:.2f} dB", crop(ours)),
        (f"{bm3d} σ={cbm3d_sigma:g} (oracle) {score(cbm3d, pair.clean)[0]:.2f} dB", crop(cbm3d)),
        ("clean (mean of many shots)", crop(pair.clean)),
    ]
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4))
    for ax, (title, image) in zip(axes, panels, strict=False):
        ax.imshow(image.squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    shown = axes[4].imshow(level.numpy(), cmap="magma")
    axes[4].set_title(f"noise map σ (0-255): {source}", fontsize=9)
    axes[4].axis("off")
    fig.colorbar(shown, ax=axes[4], fraction=0.046)
    fig.suptitle(f"PolyU-Canon {pair.name} (centre 192x192 of the 512x512 crop)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def benchmark(pairs: list[Pair], config: Config, cache: Cache) -> dict:
    """Compute what is missing and summarise: the core of the script (tests call it)."""
    methods = Methods(config.models, config.channels)
    compute(pairs, config, methods, cache)
    rows = rows_for(pairs, config, methods.tags, cache)
    paired, crops = common_rows(rows, cache, [p.name for p in pairs])
    return {
        "rows": [{k: v for k, v in r.items() if k != "_key"} for r in rows],
        "paired": {"crops": crops, "rows": paired},
        "oracle_search": search_curves(pairs, config, methods.tags, cache),
        "weights": {spec: methods.tags[spec] for spec in config.models},
        "_methods": methods,
    }


def _numbers(parser: argparse.ArgumentParser, flag: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{flag}: expected numbers separated by commas, got {text!r}")
    if not values or min(values) <= 0:
        parser.error(f"{flag}: need positive noise levels, got {text!r}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default", help="comma-separated model specs")
    parser.add_argument("--images", type=int, default=55, help="crops (spread over the 55)")
    parser.add_argument("--grid", default="3,5,7,10,13,16", help="oracle σ grid, model")
    parser.add_argument("--search-images", type=int, default=11, help="crops of the σ search")
    parser.add_argument("--cbm3d-grid", default="5,10,15", help="oracle σ grid, CBM3D")
    parser.add_argument("--cbm3d-images", type=int, default=55, help="crops CBM3D runs on")
    parser.add_argument(
        "--cbm3d-search-images", type=int, default=5, help="crops of CBM3D's σ search"
    )
    parser.add_argument("--methods", default=",".join(FAMILIES), help="families to compute")
    parser.add_argument("--gray", action="store_true", help="gray photos of the crops")
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="another folder of noisy/ and clean/ pairs (say, held-out real pairs)",
    )
    parser.add_argument("--figure", action="store_true", help="draw NAME.png (--name)")
    parser.add_argument("--name", default="real_noise", type=results_name, help="results file name")
    args = parser.parse_args()
    counts = (args.images, args.search_images, args.cbm3d_images, args.cbm3d_search_images)
    if min(counts) < 1:
        parser.error(
            "--images, --search-images, --cbm3d-images, --cbm3d-search-images: must be at least 1"
        )
    families = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not families or set(families) - set(FAMILIES):
        parser.error(f"--methods: choose from {', '.join(FAMILIES)}, got {args.methods!r}")
    config = Config(
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        grid=_numbers(parser, "--grid", args.grid),
        search_images=args.search_images,
        cbm3d_grid=_numbers(parser, "--cbm3d-grid", args.cbm3d_grid),
        cbm3d_images=args.cbm3d_images,
        cbm3d_search_images=args.cbm3d_search_images,
        methods=families,
        gray=args.gray,
    )
    if not config.models:
        parser.error("--models: name at least one model")
    if not (args.data / "noisy").is_dir() or not (args.data / "clean").is_dir():
        print(f"filterscope: error: needs {args.data}/noisy and /clean", file=sys.stderr)
        return 2
    from filterscope.errors import FilterscopeError
    from filterscope.machine import machine_info

    pairs = load_pairs(args.data, args.images, gray=args.gray)
    try:
        result = benchmark(pairs, config, Cache(CACHE))
    except FilterscopeError as exc:
        print(f"filterscope: error: {exc}", file=sys.stderr)
        return 2
    methods = result.pop("_methods")
    print(f"{args.data.name}, full crops, PSNR (dB, 0-255) / SSIM; {len(pairs)} crops asked")
    print_table(result["rows"], ["method", "crops", "psnr", "gain", "ssim", "mean σ̂"])
    print(f"\nPaired: every method on the {result['paired']['crops']} crops they all have")
    print_table(result["paired"]["rows"], ["method", "psnr", "gain", "ssim"])
    print(f"\nOracle σ searches: {json.dumps(result['oracle_search'])}")
    cbm3d_sigma = best_sigma(
        Cache(CACHE), "bm3d", cbm3d_search_names(pairs, config), config.cbm3d_grid
    )
    if args.figure and cbm3d_sigma is not None:
        path = RESULTS_DIR / f"{args.name}.png"
        figure(spread(pairs, config.cbm3d_images)[0], config, methods, cbm3d_sigma, path)
        print(f"figure: {path}")
    write_results(
        args.name,
        {
            "command": " ".join(["python benchmarks/real_noise.py"] + sys.argv[1:]),
            "data": (
                "PolyU-Canon (55 pairs of 512x512 crops; evaluation only, see its README)"
                if args.data == DATA
                else str(args.data)
            )
            + (", as gray photos (luminance, the noisy one stored at 8 bits)" if args.gray else ""),
            "protocol": f"PSNR on the 0-255 scale over all {config.channels} channel(s) of each "
            "full crop (gray: luminance, the noisy one stored at 8 bits), "
            "estimate clipped to [0, 1]; SSIM (7x7 uniform window); means over crops",
            "config": {k: v for k, v in vars(config).items()},
            "machine": machine_info(),
            "torch": torch.__version__,
            "note": "the machine's 2 cores were shared with other jobs: no timings here",
            **result,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
