"""The core of benchmarks/real_noise.py on two tiny synthetic pairs (no ../shared)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
real_noise = pytest.importorskip("real_noise")

from filterscope.errors import FilterscopeError  # noqa: E402


def _pairs() -> list:
    generator = torch.Generator().manual_seed(3)
    pairs = []
    for index in range(2):
        ramp = torch.linspace(0.2, 0.8, 37).reshape(1, 1, 1, 37).expand(1, 3, 31, 37)
        clean = (ramp + 0.05 * index).contiguous()
        noisy = clean + 12 / 255 * torch.randn(clean.shape, generator=generator)
        pairs.append(real_noise.Pair(f"pair{index}", noisy, clean))
    return pairs


def test_table_has_every_method_on_the_right_crops():
    config = real_noise.Config(
        models=["default"],
        grid=[4.0, 12.0],
        search_images=1,
        methods=("noisy", "blind", "ensemble", "oracle", "nlm"),
    )
    cache = real_noise.Cache(None)
    result = real_noise.benchmark(_pairs(), config, cache)
    methods = [row["method"] for row in result["rows"]]
    assert methods[:3] == ["noisy", "default (blind)", "default (blind, self-ensemble)"]
    blind, ensemble = result["rows"][1:3]
    # The ensemble averages 8 different runs: close to the single run, not the same.
    assert ensemble["psnr"] != blind["psnr"] and abs(ensemble["psnr"] - blind["psnr"]) < 1.0
    oracle = [m for m in methods if "oracle" in m]
    assert len(oracle) == 1 and ("σ=4 " in oracle[0] or "σ=12 " in oracle[0])
    assert any(m.startswith("nlm") for m in methods)
    assert not any(m.startswith("cbm3d") for m in methods)  # not asked for, not computed
    for row in result["rows"]:
        assert row["crops"] == 2, row
        assert 10 < row["psnr"] < 60 and 0 < row["ssim"] <= 1
    noisy = result["rows"][0]
    assert noisy["gain"] == 0
    # The oracle is the best of the grid on the search crop: its gain is at least the
    # other grid value's there, and denoising at σ=12 of σ=12 noise gains several dB.
    search = result["oracle_search"]["model"]
    assert search["crops"] == 1 and set(search["psnr"]) == {"4", "12"}
    assert max(search["psnr"].values()) > noisy["psnr"]
    # Paired table: same methods, on the 2 crops they all have.
    assert result["paired"]["crops"] == 2
    assert [r["method"] for r in result["paired"]["rows"]] == methods
    # Cached: a second run computes nothing and gives the same table.
    again = real_noise.benchmark(_pairs(), config, cache)
    assert again["rows"] == result["rows"]


def test_gray_photos_run_the_gray_models_and_bm3d():
    pairs = [
        real_noise.Pair(f"{p.name}@gray", *real_noise.gray_photo(p.noisy, p.clean))
        for p in _pairs()
    ]
    noisy, clean = pairs[0].noisy, pairs[0].clean
    assert noisy.shape == (1, 1, 31, 37) and clean.shape == (1, 1, 31, 37)
    assert torch.equal(noisy, torch.round(noisy * 255) / 255)  # stored at 8 bits
    # The luminance of the clean ramp: the weights sum to 1, so a gray ramp stays itself.
    torch.testing.assert_close(clean[0, 0], _pairs()[0].clean[0, 0], atol=1e-6, rtol=0)
    config = real_noise.Config(
        models=["default"],
        cbm3d_grid=[12.0],
        cbm3d_images=1,
        cbm3d_search_images=1,
        methods=("noisy", "blind", "cbm3d"),
        gray=True,
    )
    result = real_noise.benchmark(pairs, config, real_noise.Cache(None))
    methods = [row["method"] for row in result["rows"]]
    assert methods[:2] == ["noisy", "default (blind)"]
    assert "bm3d (oracle σ=12 for the set)" in methods and not any("cbm3d" in m for m in methods)
    gray_default = real_noise.Methods(["default"], 1).models["default"]
    assert gray_default.in_channels == 1
    assert result["weights"]["default"] == real_noise.weights_tag(gray_default)
    blind = result["rows"][1]
    assert blind["gain"] > 3  # 12/255 white noise on a ramp: the gray default removes most


def test_an_unknown_model_is_refused():
    config = real_noise.Config(models=["no-such-model"], methods=("noisy",))
    with pytest.raises(FilterscopeError):
        real_noise.benchmark(_pairs(), config, real_noise.Cache(None))


def test_spread_picks_evenly_and_all_when_asked_for_more():
    items = list(range(55))
    assert real_noise.spread(items, 5) == [0, 11, 22, 33, 44]
    assert real_noise.spread(items, 60) == items


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", ""])
def test_a_results_name_must_stay_in_the_results_folder(name):
    import argparse

    import _common

    assert _common.results_name("real_noise_gap") == "real_noise_gap"
    with pytest.raises(argparse.ArgumentTypeError, match="not a plain file name"):
        _common.results_name(name)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_fresh_process_peak_is_its_own_not_its_parents():
    # The parent holds >= 300 MiB while the child runs: ru_maxrss would report at least
    # that for the child (it inherits the parent's resident size); VmHWM does not.
    import subprocess

    import _common

    ballast = b"\x01" * (300 * 2**20)  # written, so resident
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import _common as c; print(c.peak_rss_gib())"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    child = float(done.stdout)
    assert _common.peak_rss_gib() > 0.29  # the parent held the ballast
    assert child < 0.25, child  # the child never held it
    del ballast


def test_finetune_probes_score_every_crop_and_the_oracle_map_helps():
    finetune = pytest.importorskip("real_noise_finetune")
    probe = finetune.Probe(
        map_scales=(2.0,), told=(12.0,), measured_window=4.0, ensemble=True, pooled_scales=(1.0,)
    )
    scores = finetune.run_model("bf-drunet-color-real", _pairs(), [], probe, _pairs()[:1])
    assert len(scores["polyu_pooled"]["1"]) == 2 and len(scores["held_out_pooled"]["1"]) == 1
    for key in ("polyu", "polyu_measured_map", "polyu_ensemble", "map_mean_255"):
        assert len(scores[key]) == 2, key
    assert len(scores["polyu_map_scaled"]["2"]) == 2 and len(scores["polyu_told"]["12"]) == 2
    noisy = [real_noise.score(pair.noisy, pair.clean)[0] for pair in _pairs()]
    # Told the std measured from its own noise (12/255 white), the model denoises.
    assert min(m - n for m, n in zip(scores["polyu_measured_map"], noisy, strict=True)) > 3
    assert min(scores["map_mean_255"]) > 0
    nothing = finetune.run_model("bf-drunet-color", _pairs(), [], finetune.Probe())
    assert nothing["polyu_measured_map"] == [] and nothing["polyu_ensemble"] == []
    assert nothing["polyu_pooled"] == {}
