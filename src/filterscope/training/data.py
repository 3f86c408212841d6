"""Streaming patch sampler: random crops of down-scaled, flipped and rotated images, and
optional colour changes of the patches (:func:`augment_color`)."""

from __future__ import annotations

import itertools
import math
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..blur import gaussian_blur
from ..camera_noise import LUMA_WEIGHTS
from ..errors import InputError
from ..io import list_images, read_image, to_tensor


def _rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Bicubic down-scaling of an (H, W, C) float image."""
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    channels = [
        np.asarray(Image.fromarray(image[:, :, c]).resize(size, Image.BICUBIC))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0)


class PatchSampler:
    """Draws batches of clean training patches, reproducibly from a generator.

    Every image is decoded once when the sampler is built (so an unreadable file is
    reported and skipped at the start, not an hour into training) and down-scaled by
    each factor of ``scales``. The scaled images are kept in memory up to ``cache_mb``
    megabytes; beyond that they are read again from disk when drawn (least recently
    used first out), so memory stays bounded however large the data folder is.
    Patches are cut on the fly: nothing grows with the number of patches drawn. Each
    patch gets one of the 8 flips/rotations at random.

    Parameters
    ----------
    folder : str or Path, or a sequence of them
        Training images (of all the folders, in order). Unreadable files are reported
        on stderr and skipped.
    patch_size : int, keyword-only
        Side of the square patches.
    channels : int, keyword-only
        1 (gray; RGB files are converted by luminance) or 3 (gray files are refused).
    scales : sequence of float, keyword-only
        Down-scaling factors.
    cache_mb : float, keyword-only
        Memory budget (MB) of the decoded, scaled images kept in memory.
    shard : (int, int), keyword-only
        ``(rank, world_size)``: use only the images ``rank, rank + world_size, ...``
        (sorted by name), so each training process reads its own share.

    Notes
    -----
    Images are drawn in proportion to their area (like cutting patches on a grid), then
    a crop position uniformly, then the flip/rotation.
    """

    def __init__(
        self,
        folder: str | Path | Sequence[str | Path],
        *,
        patch_size: int,
        channels: int,
        scales: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7),
        cache_mb: float = 1024.0,
        shard: tuple[int, int] = (0, 1),
    ):
        self.patch_size = patch_size
        self.channels = channels
        self.scales = tuple(scales)
        self.cache_bytes = int(cache_mb * 2**20)
        rank, world_size = shard
        folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
        folder = ", ".join(str(one) for one in folders)  # how messages name them
        files = [path for one in folders for path in list_images(one)]
        if not files:
            raise InputError(f"{folder}: no images found")
        files = files[rank::world_size]
        if not files:
            raise InputError(f"{folder}: fewer images than training processes ({world_size})")
        self.files: list[Path] = []
        # One entry per (file, scale) large enough for a patch: (file index, scale, C, h, w)
        self.entries: list[tuple[int, float, int, int, int]] = []
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cached_bytes = 0
        self.skipped: list[str] = []
        reasons: list[str] = []
        for path in files:
            try:
                image = self._decode(path)
            except InputError as exc:
                self.skipped.append(str(path))
                reasons.append(str(exc))
                continue
            file_index = len(self.files)
            self.files.append(path)
            for scale in self.scales:
                scaled = _rescale(image, scale)
                if min(scaled.shape[:2]) >= patch_size:
                    tensor = to_tensor(scaled)[0]
                    self.entries.append((file_index, scale, *tensor.shape))
                    self._remember(len(self.entries) - 1, tensor)
        if not self.files:
            raise InputError(f"{folder}: no image could be read ({len(files)} files tried)")
        for reason in reasons:  # some were readable: training goes on without these
            print(f"filterscope: skipping {reason}", file=sys.stderr)
        if not self.entries:
            raise InputError(f"patch_size: {patch_size} is larger than every image in {folder}")
        sizes = torch.tensor([h * w for *_, h, w in self.entries], dtype=torch.float)
        self._weights = sizes / sizes.sum()

    def _decode(self, path: Path) -> np.ndarray:
        image, _ = read_image(path)
        return _match_channels(image, self.channels, path)

    def _remember(self, entry: int, image: torch.Tensor) -> None:
        size = image.numel() * image.element_size()
        if size > self.cache_bytes:
            return
        while self._cached_bytes + size > self.cache_bytes and self._cache:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.numel() * evicted.element_size()
        self._cache[entry] = image
        self._cached_bytes += size

    def _image(self, entry: int) -> torch.Tensor:
        cached = self._cache.get(entry)
        if cached is not None:
            self._cache.move_to_end(entry)
            return cached
        file_index, scale, *_ = self.entries[entry]
        image = to_tensor(_rescale(self._decode(self.files[file_index]), scale))[0]
        self._remember(entry, image)
        return image

    def image(self, entry: int) -> torch.Tensor:
        """The decoded, down-scaled ``(C, h, w)`` image of ``entries[entry]``."""
        return self._image(entry)

    @property
    def cached_megabytes(self) -> float:
        """Memory held by decoded images now (MB)."""
        return self._cached_bytes / 2**20

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A ``(batch_size, C, patch_size, patch_size)`` float32 batch in [0, 1]."""
        return self.cut(self.draw(batch_size, generator))

    def draw(self, batch_size: int, generator: torch.Generator) -> list[tuple[int, ...]]:
        """Where the patches of a batch come from: ``(entry, top, left, mode)`` each,
        ``mode`` one of the 8 flips/rotations."""
        p = self.patch_size
        indices = torch.multinomial(
            self._weights, batch_size, replacement=True, generator=generator
        )
        draws = []
        for index in indices.tolist():
            _, _, _, height, width = self.entries[index]
            top = int(torch.randint(0, height - p + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - p + 1, (1,), generator=generator))
            mode = int(torch.randint(0, 8, (1,), generator=generator))
            draws.append((index, top, left, mode))
        return draws

    def cut(self, draws: list[tuple[int, ...]]) -> torch.Tensor:
        """The patches of :meth:`draw`'s positions, stacked."""
        p = self.patch_size
        patches = []
        for index, top, left, mode in draws:
            patch = self._image(index)[:, top : top + p, left : left + p]
            patch = torch.rot90(patch, mode % 4, dims=(1, 2))
            if mode >= 4:
                patch = patch.flip(2)
            patches.append(patch)
        return torch.stack(patches).contiguous()


class PairedPatchSampler:
    """Draws aligned patches of real noisy / clean image pairs, reproducibly.

    Each folder holds ``noisy/`` and ``clean/`` with the same file names (the layout of
    ``scripts/prepare_training_data.py --pairs``); each pair must have one size. The
    images are used at full size (down-scaling would change the real noise), and both
    patches of a pair get the same crop and flip/rotation.

    Parameters
    ----------
    folder : str or Path, or a sequence of them
        The pairs' folders (their pairs are drawn as one set, in proportion to area).
    patch_size, channels, cache_mb
        As for :class:`PatchSampler` (each half gets half of ``cache_mb``).
    """

    def __init__(
        self,
        folder: str | Path | Sequence[str | Path],
        *,
        patch_size: int,
        channels: int,
        cache_mb: float,
    ):
        folders = [Path(folder)] if isinstance(folder, (str, Path)) else list(map(Path, folder))
        halves = {}
        for half in ("noisy", "clean"):
            for one in folders:
                if not (one / half).is_dir():
                    raise InputError(f"pairs_dir: {one} has no {half}/ folder")
            halves[half] = PatchSampler(
                [one / half for one in folders],
                patch_size=patch_size,
                channels=channels,
                scales=(1.0,),
                cache_mb=cache_mb / 2,
            )
        self.noisy, self.clean = halves["noisy"], halves["clean"]
        where = ", ".join(str(one) for one in folders)
        noisy_names = [path.name for path in self.noisy.files]
        if noisy_names != [path.name for path in self.clean.files]:
            raise InputError(f"pairs_dir: noisy/ and clean/ of {where} hold different file names")
        if self.noisy.entries != self.clean.entries:
            raise InputError(
                f"pairs_dir: a noisy image of {where} and its clean one differ in size"
            )

    def __len__(self) -> int:
        return len(self.noisy.files)

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noisy, clean)``, each ``(batch_size, C, patch_size, patch_size)`` in [0, 1]."""
        draws = self.clean.draw(batch_size, generator)
        return self.noisy.cut(draws), self.clean.cut(draws)


def _log_uniform(
    count: int, bounds: tuple[float, float], generator: torch.Generator, device
) -> torch.Tensor:
    """``count`` factors drawn log-uniformly from ``bounds = (lo, hi)``, ``0 < lo <= hi``."""
    lo, hi = bounds
    u = torch.rand(count, generator=generator, device=device)
    return (math.log(lo) + (math.log(hi) - math.log(lo)) * u).exp()


def augment_pairs(
    noisy: torch.Tensor,
    clean: torch.Tensor,
    *,
    zoom_range: tuple[float, float],
    gain_range: tuple[float, float],
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Widen real noise pairs: coarser grain (zoom) and other levels (gain), per patch.

    Real pairs come from a few cameras, each with its own grain size and noise level;
    a network that learns only those reads another camera's coarser or weaker noise
    wrongly. Both changes keep a true clean target: the zoom up-scales the noisy and
    clean patches alike (the noise grain grows with it), the gain scales the real
    noise ``noisy - clean`` about the clean patch.

    Parameters
    ----------
    noisy, clean : torch.Tensor
        ``(B, C, p, p)`` aligned patches in [0, 1].
    zoom_range : (float, float), keyword-only
        Each pair's top-left ``p / z`` square (rounded, at least 2 px) is up-scaled
        bilinearly back to ``p``, with ``z`` drawn log-uniformly from this range
        (``1 <= lo <= hi``). ``(1, 1)`` draws nothing.
    gain_range : (float, float), keyword-only
        The noise is multiplied by ``g`` drawn log-uniformly from this range
        (``0 < lo <= hi``), then the noisy patch is clipped to [0, 1] as a stored image
        is. ``(1, 1)`` draws nothing.
    generator : torch.Generator, keyword-only
        Draws the zooms first, then the gains.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``(noisy, clean)`` of the input shapes; the inputs themselves when nothing is asked.
    """
    batch, size = noisy.shape[0], noisy.shape[-1]
    if tuple(zoom_range) != (1.0, 1.0):
        zooms = _log_uniform(batch, zoom_range, generator, noisy.device).tolist()
        crops = [max(2, round(size / zoom)) for zoom in zooms]

        def zoom(patches: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [
                    F.interpolate(patch[None, :, :crop, :crop], size=(size, size), mode="bilinear")
                    for patch, crop in zip(patches, crops, strict=True)
                ]
            )

        noisy, clean = zoom(noisy), zoom(clean)
    if tuple(gain_range) != (1.0, 1.0):
        gains = _log_uniform(batch, gain_range, generator, noisy.device).view(-1, 1, 1, 1)
        noisy = (clean + gains * (noisy - clean)).clamp(0.0, 1.0)
    return noisy, clean


def measured_noise_std(
    noisy: torch.Tensor, clean: torch.Tensor, window: float, *, block: int = 1
) -> torch.Tensor:
    """The local noise std of aligned real pairs, measured from their difference.

    Parameters
    ----------
    noisy, clean : torch.Tensor
        ``(B, C, H, W)`` aligned images, same scale.
    window : float
        Standard deviation (pixels, > 0) of the Gaussian window the squared difference
        is averaged over, per channel (:func:`filterscope.blur.gaussian_blur`).
    block : int, keyword-only
        With ``block`` = s > 1, the white-noise level of the difference's coarse part:
        ``s`` times the std of its s×s block means (nearest-upsampled back), the largest
        over s = 1, 2, 4, ... up to ``block``. White noise reads the same at every
        scale; noise whose grain was coarsened (demosaicking, in-camera noise reduction,
        JPEG) reads higher at the coarse scales, which is what a denoiser has to remove.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``: ``sqrt(G_window * (noisy - clean)^2)`` for ``block`` = 1 (the
        largest such level over the block sizes otherwise), positively homogeneous of
        degree 1 in the pair. A narrow window follows the signal-dependent level
        but reads few pixels (a window of 4 px averages about 200 per channel, so
        the measured std itself varies by about 5%).
    """
    if window <= 0:
        raise ValueError(f"window: must be positive, got {window}")
    if block < 1 or block & (block - 1):
        raise ValueError(f"block: must be a power of 2, got {block}")
    residual = noisy - clean
    power = gaussian_blur(residual.square(), window)
    scale = 2
    while scale <= block:
        means = F.avg_pool2d(residual, scale, ceil_mode=True)
        coarse = F.interpolate(means.square(), scale_factor=scale, mode="nearest")
        coarse = coarse[..., : residual.shape[-2], : residual.shape[-1]]
        power = torch.maximum(power, scale**2 * gaussian_blur(coarse, window))
        scale *= 2
    return power.clamp_min(0.0).sqrt()


def augment_color(
    patches: torch.Tensor,
    *,
    saturation_range: tuple[float, float],
    channel_shuffle: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random colour changes of clean RGB patches, each patch its own.

    The CBSD432 photographs have muted colours whose channels move almost together; a
    colour model trained on them alone learns that correlation and loses it on
    saturated images (McMaster). Changing the colours of the clean patches widens what
    the model sees without changing what it must do.

    Parameters
    ----------
    patches : torch.Tensor
        ``(B, 3, h, w)`` clean patches in [0, 1], on any device.
    saturation_range : (float, float), keyword-only
        Each patch's distance from its gray (the mean of its channels, per pixel) is
        multiplied by ``s`` drawn log-uniformly from this range, then the result is
        clipped to [0, 1]. ``(1, 1)`` leaves the saturation alone and draws nothing.
    channel_shuffle : bool, keyword-only
        Put each patch's channels in one of the 6 orders, drawn uniformly.
    generator : torch.Generator, keyword-only
        Draws the factors and orders; on the patches' device.

    Returns
    -------
    torch.Tensor
        ``(B, 3, h, w)`` in [0, 1]; ``patches`` itself when nothing is asked.
    """
    batch, device = patches.shape[0], patches.device
    if tuple(saturation_range) != (1.0, 1.0):
        factor = _log_uniform(batch, saturation_range, generator, device).view(-1, 1, 1, 1)
        gray = patches.mean(dim=1, keepdim=True)
        patches = (gray + factor * (patches - gray)).clamp(0.0, 1.0)
    if channel_shuffle:
        orders = torch.tensor(list(itertools.permutations(range(3))), device=device)
        choice = torch.randint(0, len(orders), (batch,), generator=generator, device=device)
        index = orders[choice].view(batch, 3, 1, 1).expand_as(patches)
        patches = patches.gather(1, index)
    return patches


def _match_channels(image: np.ndarray, channels: int, path: Path) -> np.ndarray:
    if image.shape[2] == channels:
        return image
    if channels == 1:
        weights = np.array(LUMA_WEIGHTS, dtype=np.float32)
        return (image @ weights)[:, :, None]
    raise InputError(f"{path}: gray image in a color training set")


def check_validation_folder(val_dir: str) -> None:
    """Refuse a validation folder that is named but missing: training would otherwise run
    without validation and write a model card without scores, unnoticed."""
    if val_dir and not Path(val_dir).is_dir():
        raise InputError(
            f'val_dir: {val_dir} is not a folder (val_dir = "" trains without validation)'
        )


def load_validation_images(folder: str | Path, *, channels: int, limit: int = 0) -> list:
    """``[(name, (1, C, H, W) tensor), ...]`` of the first ``limit`` images (0 = all)."""
    files = list_images(folder)
    if limit:
        files = files[:limit]
    images = []
    for path in files:
        image, _ = read_image(path)
        images.append((path.name, to_tensor(_match_channels(image, channels, path))))
    return images
