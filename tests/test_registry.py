"""The registry of denoisers (``filterscope.hub``) and the contract every entry keeps.

The contract test runs every registered model, as deepinv's ``test_models.py`` does: on
a 37x31 gray and RGB batch where it applies, the output keeps the input's shape and
dtype, a float σ and a per-image σ tensor are both accepted (and agree), and models
registered as bias-free are positively homogeneous.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import pytest
import torch

import filterscope as fs
from filterscope import hub
from filterscope.cli.main import main
from filterscope.errors import (
    ChannelError,
    CheckpointError,
    FilterscopeError,
    ModelImportError,
    UnknownModelError,
)
from filterscope.models.base import Denoiser

HEIGHT, WIDTH = 37, 31
SIGMA = 25 / 255

#: Options that keep a registered method fast on a 37x31 image (defaults otherwise).
FAST_OPTIONS = {
    "dip": {"iters": 3, "width": 4},
}
HAS_BM3D = importlib.util.find_spec("bm3d") is not None


def cases():
    """(name, channels) for every registered model and channel count it takes."""
    for name in hub.list_models():
        for channels in hub.model_info(name).channels:
            marks = []
            if name == "bm3d":
                # about 5 s per call on a busy core; the sweep tests run it too
                marks.append(pytest.mark.slow)
                if not HAS_BM3D:
                    marks.append(pytest.mark.skip(reason="bm3d package not installed"))
            yield pytest.param(name, channels, id=f"{name}-{channels}", marks=marks)


def load(name: str, channels: int) -> Denoiser:
    info = hub.model_info(name)
    options = dict(FAST_OPTIONS.get(name, {}))
    if info.channels_option is not None:
        options[info.channels_option] = channels
    torch.manual_seed(0)
    return hub.load_model(name, **options)


def noisy_batch(channels: int, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    rows = torch.linspace(0, 1, HEIGHT)[:, None]
    cols = torch.linspace(0, 1, WIDTH)[None, :]
    clean = (0.3 + 0.4 * rows * cols).expand(batch, channels, HEIGHT, WIDTH)
    return clean + SIGMA * torch.randn(batch, channels, HEIGHT, WIDTH, generator=generator)


@pytest.mark.parametrize("name, channels", list(cases()))
def test_every_registered_model_keeps_the_contract(name, channels):
    model = load(name, channels)
    assert isinstance(model, Denoiser)
    y = noisy_batch(channels)
    with torch.no_grad():
        with_float = model(y, SIGMA)
        with_tensor = model(y, torch.full((2,), SIGMA, dtype=torch.float64))
        with_extra = model(y, SIGMA, unused_keyword=1)  # plug-and-play code passes extras
    for out in (with_float, with_tensor, with_extra):
        assert out.shape == y.shape and out.dtype == y.dtype
        assert torch.isfinite(out).all()
    assert torch.allclose(with_float, with_tensor, atol=1e-5)
    if hub.model_info(name).bias_free:
        report = fs.check_homogeneous(model, y[:1].double(), sigma=SIGMA)
        assert report.passed, report


@pytest.mark.parametrize("name", [n for n in hub.list_models() if hub.model_info(n).blind])
def test_blind_models_need_no_sigma(name):
    channels = hub.model_info(name).channels[0]
    model = load(name, channels)
    with torch.no_grad():
        out = model(noisy_batch(channels, batch=1))
    assert out.shape == (1, channels, HEIGHT, WIDTH)


def test_non_blind_models_refuse_a_missing_sigma():
    y = noisy_batch(1, batch=1)
    for name in ("nlm", "ntk", "nlm-twicing"):
        assert hub.model_info(name).blind is False
        with pytest.raises(FilterscopeError, match="needs the noise level"):
            hub.load_model(name)(y)


def test_list_models_by_kind():
    names = fs.list_models()
    assert {"bm3d", "nlm", "ntk", "nlm-twicing", "dip", "dncnn", "unet"} <= set(names)
    assert fs.list_models(kind="classical") == ["bm3d", "nlm"]
    assert set(fs.list_models(kind="architecture")) == set(fs.models.list_models())
    assert set(fs.list_models(kind="shipped")) == set(fs.models.zoo.list_shipped())
    with pytest.raises(UnknownModelError, match="kind must be one of"):
        fs.list_models(kind="networks")


def test_shipped_models_carry_their_card_as_metadata():
    for name, card in fs.models.zoo.list_shipped().items():
        info = fs.model_info(name)
        assert info.kind == "shipped" and info.card == card
        assert info.training_sigma_range_255 == tuple(card["training"]["sigma_range_255"])
        assert info.bias_free is (not card["bias"])
        assert info.channels == (card["in_channels"],)
        json.dumps(info.to_json())


def test_a_new_weights_pair_is_registered_without_code(tmp_path, monkeypatch, tiny_model_path):
    from filterscope.models import shipped

    weights = tmp_path / "weights"
    weights.mkdir()
    for suffix in (".safetensors", ".json"):
        (weights / f"my-net{suffix}").write_bytes(tiny_model_path.with_suffix(suffix).read_bytes())
    (weights / "card-only.json").write_text("{}")  # no weights beside it: not a model
    monkeypatch.setattr(shipped, "weights_dir", lambda: weights)
    assert fs.list_models(kind="shipped") == ["my-net"]
    assert fs.model_info("my-net").training_sigma_range_255 == (0.0, 55.0)
    assert fs.load_model("my-net").arch == "dncnn"


def test_variants_and_their_sigma_source():
    assert fs.model_info("bm3d:estimate").sigma_source == "estimated"
    assert fs.model_info("bm3d:estimate").blind is True
    assert fs.load_model("NLM:estimate").sigma_source == "estimated"
    assert fs.load_model("nlm:true").sigma_source == "true"
    with pytest.raises(UnknownModelError, match="nlm:estimate"):
        fs.load_model("nlm:guess")


def test_architecture_options_reach_the_constructor():
    model = fs.load_model("dncnn", bias=True, in_channels=3, num_layers=5, hidden=8)
    assert model.bias is True and model.in_channels == 3 and model.config["num_layers"] == 5
    loaded = hub.resolve("dncnn", bias=True)
    assert loaded.info.bias_free is False
    with pytest.raises(ModelImportError, match="takes no options"):
        fs.load_model(fs.list_models(kind="shipped")[0], bias=True)


def test_a_checkpoint_path_loads_with_its_card(tiny_model_path):
    loaded = hub.resolve(tiny_model_path)
    assert loaded.info.kind == "checkpoint"
    assert loaded.info.training_sigma_range_255 == (0.0, 55.0)
    with pytest.raises(CheckpointError):
        fs.load_model(tiny_model_path.with_name("missing.safetensors").parent / "x.pt")


def test_unknown_names_list_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean .*bf-dncnn-gray"):
        fs.load_model("bf-dncnn-grey")
    with pytest.raises(UnknownModelError, match="unknown model 'zzz'"):
        fs.load_model("zzz")
    with pytest.raises(UnknownModelError):
        fs.load_model("  ")


USER_MODULE = '''
import torch
from torch import nn

import filterscope


class Smoother(nn.Module):
    """A user's blind denoiser: a fixed 3x3 box filter per channel (bias-free, linear)."""

    def __init__(self, channels=1):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 9)

    def forward(self, x):
        return self.conv(x)


class DeepinvStyle(nn.Module):
    """deepinv's denoiser signature: forward(x, sigma, **kwargs)."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)

    def forward(self, x, sigma, **kwargs):
        self.seen.append(sigma)
        return self.conv(x)


@filterscope.register_architecture("test-smoother")
def make_smoother(channels=1):
    return Smoother(channels)


@filterscope.register_architecture("test-not-a-module")
def not_a_module():
    return 42


def unregistered_factory(channels=1):
    return Smoother(channels)


VALUE = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, fresh_architectures):
    (tmp_path / "my_denoisers.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    # Imported afresh by each test, registering into a registry restored afterwards.
    monkeypatch.delitem(sys.modules, "my_denoisers", raising=False)
    yield "my_denoisers"


def test_a_users_module_loads_by_object_path(user_module):
    y = noisy_batch(3)
    by_class = fs.load_model(f"{user_module}:Smoother", channels=3)
    by_factory = fs.load_model(f"{user_module}:make_smoother", channels=3)
    assert isinstance(by_class, Denoiser) and by_class.blind and by_class.in_channels == 3
    assert torch.equal(by_class(y, SIGMA), by_factory(y))
    assert fs.check_homogeneous(by_class, y[:1].double()).passed
    info = hub.resolve(f"{user_module}:Smoother").info
    assert info.kind == "python" and info.channels == (1,)
    with pytest.raises(ChannelError, match="Smoother"):
        by_class(noisy_batch(1))


def test_a_deepinv_style_module_gets_sigma_and_keywords(user_module):
    model = fs.load_model(f"{user_module}:DeepinvStyle")
    assert model.blind is False
    y = noisy_batch(1)
    assert torch.equal(model(y, SIGMA, physics=None), y)
    assert model.module.seen == [SIGMA]


@pytest.mark.parametrize(
    "path, message",
    [
        ("no_such_package.sub:Net", "cannot import no_such_package"),
        ("my_denoisers:Missing", "has no attribute 'Missing'"),
        ("my_denoisers:VALUE", "not a torch.nn.Module class or factory"),
        ("my_denoisers:not_a_module", "returned a int, not a torch.nn.Module"),
        ("my_denoisers:unregistered_factory", "not a network factory.*register_architecture"),
    ],
)
def test_bad_object_paths(user_module, path, message):
    with pytest.raises(ModelImportError, match=message):
        fs.load_model(path)
    with pytest.raises(ModelImportError, match="cannot build"):
        fs.load_model(f"{user_module}:Smoother", no_such_option=1)


def test_command_line_errors_are_one_line_and_exit_2(user_module, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (WIDTH, HEIGHT), 128).save(folder / "a.png")
    for model, message in [
        ("bf-dncnn-grey", "did you mean"),
        ("no_such_package:Net", "cannot import"),
        ("my_denoisers:VALUE", "not a torch.nn.Module"),
    ]:
        code = main(["evaluate", "--model", model, "--data", str(folder), "--sigmas", "25"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and message in err
        assert err.startswith("filterscope: error:")


def test_evaluate_runs_a_users_module_and_a_filter_in_one_table(user_module, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rows = torch.linspace(60, 200, HEIGHT)[:, None].expand(HEIGHT, WIDTH)
    Image.fromarray(rows.to(torch.uint8).numpy()).save(folder / "ramp.png")
    out = tmp_path / "r.json"
    args = ["evaluate", "--data", str(folder), "--sigmas", "25", "--json", str(out)]
    models = [f"{user_module}:Smoother", "nlm", "ntk", "dncnn"]
    for model in models:
        args += ["--model", model]
    assert main([*args, "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["results"]] == models
    assert len({r["psnr_in"] for r in result["results"]}) == 1  # the same noisy image
    assert result["models"]["ntk"]["kind"] == "nonlocal"
    assert result["models"]["dncnn"]["kind"] == "architecture"
    ntk_item = result["results"][2]["per_image"][0]
    assert ntk_item["stop"] == "sure" and ntk_item["t"] >= 1  # what the filter chose
    assert "ntk" in capsys.readouterr().out


def test_register_denoiser_adds_a_method_once(monkeypatch):
    monkeypatch.setattr(hub, "_REGISTRY", dict(hub._REGISTRY))  # leave the real one as it was
    info = hub.ModelInfo(
        name="identity", kind="classical", description="returns y", blind=True, sigma_source="blind"
    )
    hub.register_denoiser(info, lambda: torch.nn.Identity())
    assert "identity" in fs.list_models(kind="classical")
    y = noisy_batch(1)
    assert torch.equal(fs.load_model("identity")(y, SIGMA), y)
    with pytest.raises(ValueError, match="registered twice"):
        hub.register_denoiser(info, lambda: torch.nn.Identity())
    with pytest.raises(ValueError, match="kind must be one of"):
        hub.register_denoiser(hub.ModelInfo("x", "magic", "", True, "blind"), torch.nn.Identity)


def test_a_noise_level_network_has_a_blind_variant_that_never_passes_sigma():
    noise_level_models = [
        name
        for name in fs.list_models(kind="shipped")
        if (fs.model_info(name).card or {}).get("config", {}).get("noise_map")
    ]
    if not noise_level_models:
        pytest.skip("no shipped network with a noise-level input")
    name = noise_level_models[0]
    assert fs.model_info(name).sigma_source == "true"
    assert fs.model_info(f"{name}:blind").sigma_source == "blind"
    told, blind = fs.load_model(name), fs.load_model(f"{name}:blind")
    y = noisy_batch(told.in_channels)
    with torch.no_grad():
        assert torch.equal(blind(y, SIGMA), told(y, None))
        assert not torch.allclose(told(y, SIGMA), told(y, None), atol=1e-4)  # σ is used


def test_drunet_says_where_its_noise_level_comes_from():
    with_map = fs.create_model("drunet", widths=[4, 8], blocks=1)
    without = fs.create_model("drunet", widths=[4, 8], blocks=1, noise_map=False)
    assert with_map.sigma_source == "true" and without.sigma_source == "blind"
