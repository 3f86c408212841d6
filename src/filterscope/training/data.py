"""Streaming patch sampler: random crops of down-scaled, flipped and rotated images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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

    Every image of ``folder`` is loaded once at each scale in ``scales`` (a few MB for
    BSD400); patches are cut on the fly, so memory does not grow with the number of
    patches drawn. Each patch gets one of the 8 flips/rotations at random.

    Parameters
    ----------
    folder : str or Path
        Training images. Unreadable files are reported on stderr and skipped.
    patch_size : int
        Side of the square patches.
    channels : int
        1 (gray; RGB files are converted by luminance) or 3 (gray files are refused).
    scales : sequence of float
        Down-scaling factors.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        patch_size: int,
        channels: int,
        scales: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7),
    ):
        self.patch_size = patch_size
        self.images: list[torch.Tensor] = []
        files = list_images(folder)
        if not files:
            raise InputError(f"{folder}: no images found")
        for path in files:
            try:
                image, _ = read_image(path)
            except InputError as exc:
                print(f"filterscope: skipping {exc}", file=sys.stderr)
                continue
            image = _match_channels(image, channels, path)
            for scale in scales:
                scaled = _rescale(image, scale)
                if min(scaled.shape[:2]) >= patch_size:
                    self.images.append(to_tensor(scaled)[0])
        if not self.images:
            raise InputError(f"patch_size: {patch_size} is larger than every image in {folder}")
        sizes = torch.tensor(
            [img.shape[1] * img.shape[2] for img in self.images], dtype=torch.float
        )
        # Pick images in proportion to their area, like cutting patches on a grid.
        self._weights = sizes / sizes.sum()

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A ``(batch_size, C, patch_size, patch_size)`` float32 batch in [0, 1]."""
        p = self.patch_size
        indices = torch.multinomial(
            self._weights, batch_size, replacement=True, generator=generator
        )
        patches = []
        for index in indices.tolist():
            image = self.images[index]
            top = int(torch.randint(0, image.shape[1] - p + 1, (1,), generator=generator))
            left = int(torch.randint(0, image.shape[2] - p + 1, (1,), generator=generator))
            patch = image[:, top : top + p, left : left + p]
            mode = int(torch.randint(0, 8, (1,), generator=generator))
            patch = torch.rot90(patch, mode % 4, dims=(1, 2))
            if mode >= 4:
                patch = patch.flip(2)
            patches.append(patch)
        return torch.stack(patches).contiguous()


def _match_channels(image: np.ndarray, channels: int, path: Path) -> np.ndarray:
    if image.shape[2] == channels:
        return image
    if channels == 1:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (image @ weights)[:, :, None]
    raise InputError(f"{path}: gray image in a color training set")


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
