"""The analyses as library calls (filterscope.analysis.reports), the command line's core."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny_dncnn
from filterscope.analysis import adaptive_filters
from filterscope.analysis.reports import (
    analyze_decomposition,
    analyze_dimension,
    analyze_filters,
    analyze_spectrum,
    figure_paths,
)
from filterscope.errors import InputError
from filterscope.noise import add_noise


@pytest.fixture
def net():
    return make_tiny_dncnn(1)


@pytest.fixture
def clean():
    yy, xx = torch.meshgrid(torch.arange(31.0), torch.arange(37.0), indexing="ij")
    return (0.3 + 0.4 * (xx > 18) + 0.01 * yy).to(torch.float64)[None, None]


def test_filters_report_is_the_filter_of_the_seeded_noisy_image(net, clean):
    report = analyze_filters(net, clean, [(3, 4), (20, 10)], sigma=30 / 255, seed=5)
    direct = adaptive_filters(net, add_noise(clean, 30 / 255, generator=5), [(3, 4), (20, 10)])
    for got, want in zip(report.filters, direct, strict=True):
        assert torch.equal(got.row.weights, want.row.weights)
    payload = json.loads(json.dumps(report.to_json()))
    assert payload["sigma"] == pytest.approx(30.0) and len(payload["filters"]) == 2
    assert len(report.summary()) == 2


def test_decomposition_report_patches_and_whole_images(net, clean):
    report = analyze_decomposition(net, [clean[0]], [10 / 255, 50 / 255], patch=9, patches=3)
    payload = report.to_json()
    assert payload["mode"] == "patches" and payload["patch"] == 9
    assert [r["sigma"] for r in payload["results"]] == pytest.approx([10, 50])
    assert payload["results"][1]["bias_norm"] < 1e-9  # bias-free: no net bias
    whole = analyze_decomposition(net, [clean[0]], [25 / 255], patch=0)
    assert whole.to_json()["mode"] == "whole images" and whole.to_json()["patch"] is None


def test_spectrum_report_centres_the_patch(net, clean):
    report = analyze_spectrum(net, clean, [10 / 255, 40 / 255], patch=6)
    assert report.at == ((37 - 6) // 2, (31 - 6) // 2)
    payload = report.to_json()
    assert len(payload["results"]) == 2 and payload["fit"] is not None
    assert any("slope" in line for line in report.summary())


def test_dimension_report_with_top_singular_values(net, clean):
    report = analyze_dimension(net, clean, sigma=25 / 255, probes=2, batch=2, top=2)
    payload = report.to_json()
    assert payload["effective_dim"] > 0 and payload["pixels"] == 37 * 31
    assert len(payload["top_singular_values"]) == 2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda n, x: analyze_filters(n, x, [(3, 4)], sigma=-5 / 255), "sigma"),
        (lambda n, x: analyze_dimension(n, x, sigma=-5 / 255), "sigma"),
        (lambda n, x: analyze_dimension(n, x, sigma=0.1, probes=1), "probes"),
        (lambda n, x: analyze_decomposition(n, [x[0]], [0.1], patch=-1), "patch"),
        (lambda n, x: analyze_decomposition(n, [x[0]], [0.1], patch=40), "patch 40"),
        (lambda n, x: analyze_spectrum(n, x, [0.1], patch=6, at=(35, 0)), "does not fit"),
        (lambda n, x: analyze_spectrum(n, x, [0.1], patch=20, max_bytes=1000), "matrix-free"),
    ],
)
def test_bad_parameters_are_named(net, clean, call, message):
    with pytest.raises(InputError, match=message) as info:
        call(net, clean)
    assert "--" not in str(info.value)  # the library names parameters, not flags


def test_figure_paths_follow_the_given_path(tmp_path):
    names = [p.name for p in figure_paths(tmp_path / "out.png", "spectrum")]
    assert names == ["out.png", "out_subspaces.png", "out_vectors.png"]
