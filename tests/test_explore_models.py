"""The explorer's models come from the one registry: a name means what fs.load_model says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import filterscope as fs
from filterscope.errors import InputError, UnknownModelError
from filterscope.explore import Explorer, load_model
from filterscope.noise import add_noise
from filterscope.ntk.denoiser import filter_basis

HEIGHT, WIDTH = 23, 19  # odd sides, not square
SIGMA = 25.0
SEED = 5


def clean_image(channels: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return 0.2 + 0.6 * torch.rand(1, channels, HEIGHT, WIDTH, generator=generator)


@pytest.mark.parametrize(
    ("name", "kind", "method"),
    [
        ("ntk", "nonlocal", "ntk"),
        ("nlm-twicing", "nonlocal", "nlm"),
        ("nlm", "output", None),  # the classical method, as in evaluate and denoise
        ("bf-dncnn-gray", "jacobian", None),
        ("dncnn", "jacobian", None),  # an architecture with random weights
    ],
)
def test_registry_kind_decides_what_the_explorer_shows(name, kind, method):
    model = load_model(name, 1)
    assert (model.kind, model.method) == (kind, method)
    assert model.description == fs.model_info(name).description


def test_a_shipped_network_is_the_registry_one():
    model = load_model("dncnn-gray", 1)
    reference = fs.load_model("dncnn-gray")
    assert model.has_bias and not load_model("bf-dncnn-gray", 1).has_bias
    for key, value in reference.state_dict().items():
        assert torch.equal(model.denoiser.state_dict()[key], value)


def test_nlm_twicing_filter_is_a_row_of_the_nlm_filter():
    clean = clean_image()
    explorer = Explorer(clean, [load_model("nlm-twicing", 1)], sigma=SIGMA / 255.0, seed=SEED)
    x, y = 7, 15
    answer = explorer.filter("nlm-twicing", x, y)
    noisy = add_noise(clean.double(), SIGMA / 255.0, generator=SEED)
    basis = filter_basis(
        noisy[0], method="nlm", sigma=SIGMA / 255.0, columns=None, seed=SEED, kernel_size=7
    )
    # The row of the twicing operator H_t = I - (I - W)^t at the step that made the image.
    output = explorer.output("nlm-twicing")
    t = output["info"]["t"]
    assert answer["t"] == pytest.approx(t)
    row = basis.rows([(x, y)], t=t)[0]
    x0, y0 = answer["origin"]
    w, h = answer["size"]
    np.testing.assert_allclose(np.array(answer["filter"]), row[y0 : y0 + h, x0 : x0 + w], atol=1e-5)
    assert answer["sum"] == pytest.approx(float(row.sum()), abs=1e-5)
    # The card's output is the denoised image's pixel; the plain W row would not give it.
    assert answer["output_value"] == pytest.approx(float(output["x_hat"][0, 0, y, x]), abs=1e-9)
    plain = basis.rows([(x, y)])[0]
    assert abs(float((plain * noisy[0, 0]).sum()) - answer["output_value"]) > 1e-6


def test_a_users_module_by_object_path(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(
        "import torch\n\n"
        "class TwoConv(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)\n"
        "        self.b = torch.nn.Conv2d(4, 1, 3, padding=1, bias=False)\n\n"
        "    def forward(self, y):\n"
        "        return y - self.b(torch.relu(self.a(y)))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model("my_nets:TwoConv", 1)
    assert model.kind == "jacobian"
    explorer = Explorer(clean_image(), [model], sigma=SIGMA / 255.0, seed=SEED)
    x, y = 3, 4
    answer = explorer.filter("my_nets:TwoConv", x, y)
    weights = np.array(answer["filter"])
    x0, y0 = answer["origin"]
    rows, cols = np.nonzero(weights)
    # Two 3x3 convolutions: the filter reaches 2 pixels around the pixel, no further.
    assert weights[y - y0, x - x0] != 0
    assert np.abs(cols + x0 - x).max() <= 2 and np.abs(rows + y0 - y).max() <= 2


def test_wrong_channels_and_unknown_names_are_refused():
    with pytest.raises(InputError, match="takes 1-channel images but the image has 3"):
        load_model("bf-dncnn-gray", 3)
    with pytest.raises(UnknownModelError, match="did you mean.*bf-dncnn-gray"):
        load_model("bf-dncnn-grey", 1)
