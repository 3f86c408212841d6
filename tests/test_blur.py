"""Gaussian blur against SciPy, and blur + noise in the evaluation sweep."""

from __future__ import annotations

import pytest
import torch

from filterscope.blur import gaussian_blur, gaussian_kernel1d
from filterscope.evaluation import evaluate, noise_seed
from filterscope.noise import add_noise

ndimage = pytest.importorskip("scipy.ndimage")

# SciPy's gaussian_filter in float64 sums the same products in another order.
TOLERANCE = 1e-12


def reference_blur(x: torch.Tensor, width: float) -> torch.Tensor:
    """SciPy: blur the two spatial axes only; 'mirror' is torch's 'reflect' padding."""
    out = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, width, width), mode="mirror")
    return torch.from_numpy(out)


@pytest.fixture
def images() -> torch.Tensor:
    # odd, unequal sides; larger than the widest kernel radius used (int(4 * 2.3 + 0.5) = 9)
    return torch.rand(3, 2, 23, 19, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("width", [0.4, 1.0, 2.3])
def test_matches_scipy_gaussian_filter(images, width):
    blurred = gaussian_blur(images, width)
    assert blurred.shape == images.shape and blurred.dtype == torch.float64
    assert torch.allclose(blurred, reference_blur(images, width), rtol=0, atol=TOLERANCE)


def test_per_image_widths_match_scipy_image_by_image(images):
    widths = torch.tensor([0.0, 0.7, 2.0])
    blurred = gaussian_blur(images, widths)
    assert torch.equal(blurred[0], images[0])  # zero width leaves the image alone
    for i, width in enumerate(widths.tolist()[1:], start=1):
        expected = reference_blur(images[i : i + 1], width)
        assert torch.allclose(blurred[i : i + 1], expected, rtol=0, atol=TOLERANCE)


def test_width_tensor_of_wrong_length_is_refused(images):
    with pytest.raises(ValueError, match="blur widths"):
        gaussian_blur(images, torch.tensor([1.0, 2.0]))


def test_kernel_is_normalised_and_blur_keeps_constants():
    kernel = gaussian_kernel1d(1.7)
    assert kernel.numel() == 2 * int(4 * 1.7 + 0.5) + 1
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-15)
    constant = torch.full((1, 1, 9, 7), 0.3, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(constant, 1.7), constant, atol=1e-15)


def test_negative_width_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        gaussian_kernel1d(-1.0)


# ----------------------------------------------------------------- blur in the evaluation sweep


class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, y, sigma=None):
        self.seen.append(y.clone())
        return y


@pytest.fixture
def sweep_images():
    g = torch.Generator().manual_seed(1)
    return [
        ("a", torch.rand(1, 1, 21, 17, generator=g)),
        ("b", torch.rand(1, 1, 21, 17, generator=g)),
    ]


def test_sweep_blurs_the_clean_image_then_adds_the_same_noise(sweep_images):
    plain, blurred = Recorder(), Recorder()
    base = evaluate({"m": plain}, sweep_images, [20 / 255], progress=False, batch_size=2)
    result = evaluate(
        {"m": blurred}, sweep_images, [20 / 255], blur=1.5, progress=False, batch_size=2
    )
    x = torch.cat([image for _, image in sweep_images])
    noise = torch.cat(
        [
            add_noise(torch.zeros_like(image), 20 / 255, generator=noise_seed(0, i, 20 / 255))
            for i, (_, image) in enumerate(sweep_images)
        ]
    )
    assert torch.equal(plain.seen[0], x + noise)  # blur 0: exactly the old noisy images
    assert torch.allclose(blurred.seen[0], gaussian_blur(x, 1.5) + noise, atol=1e-6)
    entry = result["results"][0]
    assert entry["blur"] == 1.5 and result["protocol"]["blur"] == 1.5
    assert base["results"][0]["blur"] == 0.0 and base["protocol"]["blur"] == 0.0
    # the reference stays the sharp image: blur lowers the input quality
    assert entry["psnr_in"] < base["results"][0]["psnr_in"]


def test_sweep_refuses_negative_blur(sweep_images):
    with pytest.raises(ValueError, match="blur"):
        evaluate({"id": lambda y, sigma: y}, sweep_images, [20 / 255], blur=-1, progress=False)
