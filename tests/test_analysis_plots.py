"""Every figure function of ``filterscope.plotting.analysis`` writes a PNG (tiny inputs, Agg)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")

from filterscope.analysis import Decomposition, JacobianRow, describe_row  # noqa: E402
from filterscope.plotting import analysis as plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 100 and path.read_bytes()[:8] == PNG_MAGIC


def _decomposition(seed: int) -> Decomposition:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(1, 1, 9, 11, generator=g, dtype=torch.float64)
    out = 0.5 * y
    return Decomposition(y=y, output=out, linear=0.4 * y, bias=0.1 * y)


def _spectrum_results() -> list[dict]:
    return [
        {
            "sigma": sigma,
            "singular_values": [1.0, 0.9, 0.5 / k, 0.01, 0.0],
            "effective_dim": 2.0 / k,
            "clean_energy_fraction": 0.99 - 0.01 * k,
            "cosines": [0.99, 0.95][:k],
        }
        for k, sigma in ((1, 10.0), (2, 50.0))
    ]


def test_plot_decomposition(tmp_path):
    results = [
        {"sigma": s, "noise_norm": s, "residual_norm": 0.9 * s, "bias_norm": 0.01 * s}
        for s in (10.0, 30.0, 50.0)
    ]
    path = plots.plot_decomposition(results, tmp_path / "a.png", training_range=(0, 30))
    assert _is_png(path)


def test_plot_decomposition_images_and_grid(tmp_path):
    dec = _decomposition(0)
    path = plots.plot_decomposition_images(
        dec.y, dec.output, dec.linear, dec.bias, tmp_path / "b.png"
    )
    assert _is_png(path)
    path = plots.plot_decomposition_grid(
        [_decomposition(1), _decomposition(2)], [10.0, 70.0], tmp_path / "c.png"
    )
    assert _is_png(path)
    with pytest.raises(ValueError):  # one σ label per example
        plots.plot_decomposition_grid([_decomposition(1)], [10.0, 70.0], tmp_path / "d.png")


def test_plot_filters_and_sums(tmp_path):
    y = torch.rand(1, 1, 11, 9, dtype=torch.float64)
    weights = torch.randn(1, 5, 5, dtype=torch.float64)  # some weights negative
    rows = [
        JacobianRow(
            pixel=(0, 0), channel=0, weights=weights[:, 2:, 2:], box=(0, 3, 0, 3), value=0.5
        ),
        JacobianRow(pixel=(4, 5), channel=0, weights=weights, box=(3, 8, 2, 7), value=0.5),
    ]
    filters = [describe_row(row) for row in rows]
    assert _is_png(plots.plot_filters(y, filters, tmp_path / "e.png", title="σ = 50"))
    sums = {10.0: [1.0, 0.98, 1.2], 100.0: [0.7, 1.01, 1.0]}
    path = plots.plot_filter_sums(
        sums, tmp_path / "f.png", highlight=[True, False, False], highlight_label="dark"
    )
    assert _is_png(path)


def test_plot_spectrum_figures(tmp_path):
    results = _spectrum_results()
    fit = {"slope": -1.0, "alpha": 20.0}
    assert _is_png(plots.plot_spectrum(results, tmp_path / "g.png", fit=fit))
    assert _is_png(plots.plot_spectrum_panels(results, tmp_path / "h.png", fit=fit))


def test_plot_subspaces_and_vectors(tmp_path):
    results = _spectrum_results()
    nesting = [{"sigma": 50.0, "reference_sigma": 10.0, "fraction": 0.97}]
    assert _is_png(plots.plot_subspaces(results, nesting, tmp_path / "i.png"))
    vectors = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    path = plots.plot_singular_vectors(
        vectors, tmp_path / "j.png", labels=["1", "2", "3"], clean=torch.rand(1, 5, 5)
    )
    assert _is_png(path)


def test_plot_dimension(tmp_path):
    result = {"samples": [10.0, 12.0, 11.0], "interval": [9.5, 12.5], "confidence": 0.95}
    assert _is_png(plots.plot_dimension(result, tmp_path / "k.png"))
