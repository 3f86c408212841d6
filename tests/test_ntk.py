"""Neural-tangent filters: closed form, empirical NTK, Nyström, twicing, SURE, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from filterscope.cli import main as cli_main
from filterscope.errors import InputError
from filterscope.io import write_image
from filterscope.ntk import (
    CNNKernel,
    ColumnEngine,
    FixedFilter,
    NLMAffinity,
    NonLocalFilterDenoiser,
    affinity,
    denoise,
    empirical_nngp,
    empirical_ntk,
    filter_basis,
    kernel_columns,
    kernel_matrix,
    matrix_basis,
    mse_estimate,
    nystrom_basis,
    oracle_mse,
    relative_frobenius_error,
    sample_columns,
    select_steps,
    sure,
    twicing,
    twicing_iterations,
)
from filterscope.ntk.kernels import image_patches
from filterscope.ntk.nystrom import leading_eigh


def _image(c=1, h=8, w=8, seed=0, centred=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(c, h, w, generator=g, dtype=torch.float64)
    return x - 0.5 if centred else x


ARCHS = [
    dict(depth=2, kernel_size=3, output_kernel=1),
    dict(depth=2, kernel_size=3, output_kernel=None, padding="zero"),
    dict(depth=3, kernel_size=3, output_kernel=None),
    dict(depth=3, kernel_size=3, output_kernel=1, padding="zero", kind="nngp"),
    dict(depth=2, kernel_size=3, output_kernel=None, input="noise"),
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("channels", [1, 3])
def test_kernel_symmetric_psd_and_columns_match(arch, channels):
    x = _image(channels, 8, 9)
    k = kernel_matrix(x, **arch)
    assert torch.allclose(k, k.T, atol=0)
    ev = torch.linalg.eigvalsh(k)
    assert ev.min() > -1e-10 * ev.max()
    cols = torch.tensor([0, 7, 40, 71])
    c = kernel_columns(x, cols, **arch)
    assert torch.allclose(c, k[:, cols], rtol=0, atol=1e-8 * float(k.abs().max()))


def test_equation_16_one_hidden_layer():
    x = _image(1, 12, 12)
    p = image_patches(x, 5)
    i, j = 7, 100
    a, b = p[i], p[j]
    phi = torch.arccos(a @ b / (a.norm() * b.norm()))
    k16 = a.norm() * b.norm() / math.pi * (torch.sin(phi) + (math.pi - phi) * torch.cos(phi))
    # σ_w² / (C r²) times equation 16
    assert affinity(x, i, j, kernel_size=5) == pytest.approx(float(k16) * 2 / 25, rel=1e-12)
    # pixels as (x, y) = (column, row): 7 = (7, 0) and 100 = (4, 8) in a 12-wide image
    assert affinity(x, (7, 0), (4, 8), kernel_size=5) == pytest.approx(float(k16) * 2 / 25)
    with pytest.raises(InputError, match=r"pixel \(12, 0\) is outside the 12x12 image"):
        affinity(x, (12, 0), (4, 8), kernel_size=5)


def test_noise_input_has_equation_17_structure():
    k = kernel_matrix(_image(1, 8, 8), depth=3, kernel_size=3, output_kernel=None, input="noise")
    diag = torch.diagonal(k)
    off = k[~torch.eye(64, dtype=torch.bool)]
    assert torch.allclose(diag, diag[0].expand_as(diag))
    assert torch.allclose(off, off[0].expand_as(off))
    assert 0 < off[0] < diag[0]


@pytest.mark.parametrize(
    "arch",
    [dict(depth=2, output_kernel=1), dict(depth=3, output_kernel=None, padding="zero")],
)
def test_empirical_ntk_converges_to_closed_form(arch):
    x = _image(1, 6, 6, centred=True)
    k = kernel_matrix(x, kernel_size=3, **arch)
    errors = []
    for width in (16, 256):
        runs = [empirical_ntk(x, width=width, kernel_size=3, generator=s, **arch) for s in range(2)]
        errors.append(np.mean([relative_frobenius_error(e, k) for e in runs]))
    # c^(-1/2): 16x the width -> about 4x smaller; demand at least 2x
    assert errors[1] < errors[0] / 2
    assert errors[1] < 0.2


def test_empirical_nngp_matches():
    x = _image(3, 6, 6, centred=True)
    k = kernel_matrix(x, kernel_size=3, depth=2, output_kernel=None, kind="nngp")
    e = empirical_nngp(x, width=2048, kernel_size=3, depth=2, output_kernel=None)
    assert relative_frobenius_error(e, k) < 0.1


@pytest.mark.slow
def test_empirical_ntk_4096_channels_within_5_percent():
    x = _image(1, 16, 16, centred=True)
    k = kernel_matrix(x, depth=2, kernel_size=3, output_kernel=1)
    e = empirical_ntk(x, width=4096, depth=2, kernel_size=3, output_kernel=1)
    assert relative_frobenius_error(e, k) < 0.05


def test_nystrom_with_all_columns_equals_full_matrix():
    x = _image(3, 8, 8)
    spec = CNNKernel(depth=2, kernel_size=3, output_kernel=1)
    k = kernel_matrix(x, depth=2, kernel_size=3, output_kernel=1)
    basis = nystrom_basis(ColumnEngine(x, spec), torch.arange(64), rcond=1e-13, precision="double")
    approx = basis.matrix() / basis.scale
    assert torch.allclose(approx, k, atol=1e-7 * float(k.abs().max()))
    # the float32 streamed product: equal to about 1e-6
    single = nystrom_basis(ColumnEngine(x, spec), torch.arange(64), rcond=1e-13, precision="single")
    assert relative_frobenius_error(single.matrix() / single.scale, k) < 1e-5
    full = matrix_basis(k, (8, 8))
    assert torch.allclose(full.matrix() / full.scale, k, atol=1e-10 * float(k.abs().max()))
    # a non-pairwise kernel goes through the column-streaming path
    spec3 = CNNKernel(depth=3, kernel_size=3, output_kernel=None)
    k3 = kernel_matrix(x, depth=3, kernel_size=3, output_kernel=None)
    b3 = nystrom_basis(ColumnEngine(x, spec3), torch.arange(64), rcond=1e-13, memory_budget=1)
    assert torch.allclose(b3.matrix() / b3.scale, k3, atol=1e-7 * float(k3.abs().max()))


@pytest.mark.parametrize("padding", ["circular", "zero"])
def test_float32_factor_rows_match_float64_block(padding):
    x = _image(3, 9, 10)
    engine = ColumnEngine(x, CNNKernel(depth=2, kernel_size=5, output_kernel=1, padding=padding))
    idx = torch.tensor([0, 7, 44, 89])
    assert torch.allclose(engine.patches_at(idx), engine.patches[idx], atol=0)
    cols = torch.tensor([3, 17, 50, 88, 89])
    weights = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = engine.block(torch.arange(90), cols) @ weights
    fast = engine.factor_rows(0, 90, cols, weights).double()
    assert relative_frobenius_error(fast, exact) < 1e-6
    nlm = NLMAffinity(x, 0.2, patch_size=3, padding=padding)
    exact = nlm.block(torch.arange(90), cols) @ weights
    assert relative_frobenius_error(nlm.factor_rows(0, 90, cols, weights).double(), exact) < 1e-5


@pytest.mark.parametrize("padding", ["circular", "zero"])
def test_int8_cosines_and_factor_rows(padding):
    x = _image(3, 37, 31)
    engine = ColumnEngine(x, CNNKernel(depth=2, kernel_size=5, output_kernel=1, padding=padding))
    d = 37 * 31
    cols = torch.tensor([3, 17, 50, 88, 400, 1146])
    exact_rho = engine.cosines(slice(0, d), cols, precision="single")
    rho = engine.cosines(slice(0, d), cols, precision="int8")
    assert rho.abs().max() <= 1.0
    assert (rho - exact_rho).abs().max() < 5e-3  # int8 patches: about 1e-3
    assert (rho[cols, torch.arange(6)] - 1).abs().max() < 5e-3
    # the Nyström core is rounded like the rows of C: C[J] equals W_JJ
    weights = torch.eye(6, dtype=torch.float64)
    rows = engine.factor_rows(0, d, cols, weights, precision="int8").double()
    core = engine.quantized_block(cols, cols)
    assert torch.allclose(rows[cols], core, rtol=1e-5)
    assert torch.allclose(core, core.T, rtol=1e-6, atol=0)  # float32 scale products
    exact = engine.block(torch.arange(d), cols)
    assert relative_frobenius_error(rows, exact) < 2e-3
    # an output buffer is filled in place, and results do not depend on the block size
    out = torch.empty(d, 6)
    for start in range(0, d, 100):
        stop = min(d, start + 100)
        engine.factor_rows(start, stop, cols, weights, precision="int8", out=out[start:stop])
    assert torch.allclose(out.double(), rows, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="precision"):
        engine.cosines(slice(0, 4), cols, precision="half")


def test_int8_nystrom_denoises_like_float32():
    x = _image(3, 37, 31)
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    results = {}
    for precision in ("int8", "single"):
        z, info = denoise(y, sigma=0.1, stop=3.0, columns=0.3, kernel_size=5, precision=precision)
        results[precision] = z
    error = float((results["int8"] - results["single"]).pow(2).mean().sqrt())
    assert error < 2e-3 * float(y.abs().max())
    nlm = NLMAffinity(x, 0.2, patch_size=3)
    with pytest.raises(ValueError, match="float32"):
        nlm.factor_rows(0, 4, torch.tensor([0, 1]), torch.eye(2), precision="int8")


def test_randomized_leading_eigenpairs():
    g = torch.Generator().manual_seed(2)
    q = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=torch.float64)).Q
    vals = 0.8 ** torch.arange(300, dtype=torch.float64)  # fast decay, like the kernels
    a = (q * vals) @ q.T
    lam, u = leading_eigh(a, 20, rcond=0.0)  # randomized (20 + 32 < 300 / 2)
    assert torch.allclose(lam, vals[:20], rtol=1e-6)
    assert torch.allclose((u.T @ q[:, :20]).abs(), torch.eye(20, dtype=torch.float64), atol=1e-4)
    lam_full, _ = leading_eigh(a, None, rcond=1e-12)  # exact path
    assert torch.allclose(lam_full[:20], vals[:20], rtol=1e-10)


def test_sample_columns():
    cols = sample_columns(1000, 0.02, generator=3)
    assert cols.numel() == 20 and len(set(cols.tolist())) == 20
    assert torch.equal(sample_columns(10, 1.0), torch.arange(10))
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InputError):
            sample_columns(100, bad)


@pytest.mark.parametrize("normalize", ["max", "row", "sinkhorn"])
def test_twicing_eigenbasis_equals_iteration(normalize):
    x = _image(3, 8, 8)
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    if normalize == "max":
        w = kernel_matrix(y, depth=2, kernel_size=3)
    else:
        w = NLMAffinity(y, 0.2, patch_size=3).matrix()
    basis = matrix_basis(w, (8, 8), normalize=normalize)
    filt = basis.matrix()
    if normalize == "row":
        assert torch.allclose(filt.sum(1), torch.ones(64, dtype=torch.float64))
    if normalize == "sinkhorn":
        assert torch.allclose(filt.sum(1), torch.ones(64, dtype=torch.float64), atol=1e-8)
        assert torch.allclose(filt, filt.T, atol=1e-12)
    for steps in (1, 2, 5):
        assert torch.allclose(twicing(basis, y, steps), twicing_iterations(filt, y, steps))


def test_sure_and_equation_7_on_a_fixed_filter():
    """With W independent of the noise, SURE and eq. 7 are unbiased for the true MSE."""
    x = _image(1, 8, 8)
    basis = matrix_basis(kernel_matrix(x, depth=2, kernel_size=3), (8, 8))
    sigma, t = 0.1, [3.0, 30.0]
    gen = torch.Generator().manual_seed(2)
    trials = 400
    true = torch.zeros(2, dtype=torch.float64)
    est = torch.zeros(2, dtype=torch.float64)
    for _ in range(trials):
        y = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        true += oracle_mse(basis, y, x, t) / trials
        est += sure(basis, y, t, sigma=sigma) / trials
    eq7 = mse_estimate(basis, x, t, sigma=sigma)["mse"]
    assert torch.allclose(eq7, true, rtol=0.05)
    assert torch.allclose(est, true, rtol=0.05)


def test_oracle_and_sure_stopping_denoise():
    x = torch.linspace(0, 1, 16, dtype=torch.float64).repeat(3, 16, 1)
    x[:, 4:10, 5:12] = 0.2
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    noisy_mse = float((y - x).pow(2).mean())
    for stop in ("oracle", "sure"):
        x_hat, info = denoise(y, sigma=0.1, clean=x, stop=stop, kernel_size=3, columns=0.5)
        assert float((x_hat - x).pow(2).mean()) < 0.5 * noisy_mse, stop
        assert info["t"] > 0
    t, info = select_steps(filter_basis(y, kernel_size=3, columns=0.5), y, stop=4.0)
    assert t == 4.0


def test_fixed_filter_jacobian_is_the_matrix():
    y = _image(1, 8, 8)
    basis = filter_basis(y, kernel_size=3, columns=None)
    fixed = FixedFilter(basis, 7.5)
    jac = torch.autograd.functional.jacobian(lambda v: fixed(v), y[None])
    jac = jac.reshape(64, 64)
    h = fixed.matrix()
    assert torch.allclose(jac, h, atol=1e-12)
    assert torch.allclose(h, h.T, atol=1e-12)


def test_nlm_through_the_same_path():
    x = torch.linspace(0, 1, 12, dtype=torch.float64).repeat(1, 12, 1)
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    for normalize in ("row", "sinkhorn"):
        for stop in (1.0, "oracle"):
            x_hat, _ = denoise(
                y,
                sigma=0.1,
                clean=x,
                stop=stop,
                method="nlm",
                kernel_size=3,
                normalize=normalize,
                columns=None,
            )
            assert float((x_hat - x).pow(2).mean()) < float((y - x).pow(2).mean())


def test_bad_inputs_raise_input_error():
    x = _image(1, 8, 8)
    with pytest.raises(InputError):
        kernel_matrix(x, depth=1)
    with pytest.raises(InputError):
        kernel_matrix(x, kernel_size=11)  # image smaller than the kernel
    with pytest.raises(InputError):
        kernel_matrix(x, kernel_size=4)
    with pytest.raises(InputError):
        denoise(x, sigma=None, stop="sure", kernel_size=3)
    with pytest.raises(InputError):
        denoise(x, sigma=-1.0, stop="sure", kernel_size=3)
    with pytest.raises(InputError):
        denoise(x, sigma=0.1, stop="sure", kernel_size=3, columns=1.5)
    with pytest.raises(InputError):
        kernel_matrix(_image(1, 65, 65), kernel_size=3)


@pytest.mark.parametrize("steps", [0, 0.5, -1.0, float("nan")])
def test_fewer_than_one_twicing_step_is_refused(steps):
    """t = 0 is the zero filter (a black image): a fixed number of steps must be >= 1."""
    y = _image(1, 9, 11)
    with pytest.raises(InputError, match="stop must be at least 1"):
        denoise(y, sigma=0.1, stop=steps, kernel_size=3, columns=0.5)
    with pytest.raises(InputError, match="stop must be at least 1"):
        NonLocalFilterDenoiser(method="ntk", kernel_size=3, stop=steps)
    x_hat, info = denoise(y, sigma=0.1, stop=1, kernel_size=3, columns=0.5)  # the least
    assert info["t"] == 1 and float(x_hat.abs().mean()) > 0.1 * float(y.abs().mean())


@pytest.fixture
def main(monkeypatch):
    """The CLI entry point with the ``ntk`` command registered."""
    monkeypatch.setitem(cli_main.COMMANDS, "ntk", "filterscope.cli.ntk")
    return cli_main.main


def _write(path, image):
    write_image(path, image.permute(1, 2, 0).numpy(), overwrite=True)
    return str(path)


def test_cli_matrix_denoise_eigenimages(tmp_path, main):
    x = _image(3, 12, 12)
    src = _write(tmp_path / "in.png", x)
    out = tmp_path / "m.npy"
    assert main(["ntk", "matrix", src, "--depth", "2", "--kernel", "3", "-o", str(out)]) == 0
    m = np.load(out)
    assert m.shape == (144, 144) and np.allclose(m, m.T)
    den = tmp_path / "d.png"
    report = tmp_path / "r.json"
    argv = ["ntk", "denoise", src, "--sigma", "25", "--kernel", "3", "--columns", "0.5"]
    assert main([*argv, "-o", str(den), "--json", str(report), "--clean", src]) == 0
    assert den.exists() and report.exists()
    eig = tmp_path / "e.npy"
    assert (
        main(
            [
                "ntk",
                "eigenimages",
                src,
                "--kernel",
                "3",
                "-n",
                "4",
                "--columns",
                "0.5",
                "-o",
                str(eig),
            ]
        )
        == 0
    )
    assert np.load(eig).shape == (4, 12, 12)


@pytest.mark.parametrize(
    "extra",
    [
        ["--sigma", "0"],
        ["--sigma", "-5"],
        [],  # SURE without sigma
        ["--sigma", "25", "--columns", "0"],
        ["--sigma", "25", "--columns", "2"],
        ["--sigma", "25", "--depth", "1"],
        ["--sigma", "25", "--kernel", "31"],
        ["--sigma", "25", "--rank", "0"],
        ["--clean", "missing.png", "--stop", "oracle", "--sigma", "25"],
    ],
)
def test_cli_bad_input_exit_2(tmp_path, capsys, main, extra):
    src = _write(tmp_path / "in.png", _image(1, 12, 12))
    argv = ["ntk", "denoise", src, "--kernel", "3", "-o", str(tmp_path / "o.png")]
    if "--kernel" in extra:
        argv = ["ntk", "denoise", src, "-o", str(tmp_path / "o.png")]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("filterscope: error:")


def test_filters_are_models_for_the_analysis_and_evaluation_code():
    from filterscope.analysis.jacobian import dense_jacobian
    from filterscope.evaluation.sweep import evaluate

    y = _image(3, 9, 9)
    fixed = FixedFilter(filter_basis(y, kernel_size=3, columns=None), 5.0)
    jac = dense_jacobian(fixed, y, radius=None, dtype=torch.float64)
    h = fixed.matrix()
    expected = torch.block_diag(h, h, h)  # one filter for every colour channel
    assert torch.allclose(jac.reshape(243, 243), expected, atol=1e-10)
    # precision pinned: the default ("auto") depends on the CPU, and on this 9x9 image the
    # Monte-Carlo SURE of float32 products ("single") is swamped by their rounding
    denoiser = NonLocalFilterDenoiser(
        method="ntk", kernel_size=3, columns=0.5, stop="sure", precision="double"
    )
    result = evaluate({"ntk": denoiser}, [("a", y[None].float())], [25 / 255], progress=False)
    (item,) = result["results"][0]["per_image"]
    assert item["stop"] == "sure" and item["t"] >= 1  # what the filter chose, in the JSON


def test_nystrom_error_report_falls_as_columns_grow():
    y = _image(1, 20, 19)

    def error(columns, precision="int8"):
        basis = filter_basis(
            y, kernel_size=3, columns=columns, rank=None, error_columns=16, precision=precision
        )
        report = basis.info["nystrom_error"]
        assert report["num_test"] == 16
        # test pixels avoid the Nyström columns while there are enough others
        assert report["unseen_test"] == min(16, round((1 - columns) * y.shape[1] * y.shape[2]))
        return report["relative_frobenius"]

    assert error(0.1) > error(0.3) > error(1.0)
    assert error(0.97) > 10 * error(1.0, "double")
    # every pixel a column: the exact matrix, up to the rounding of the product
    assert error(1.0, "double") < 1e-9
    assert error(1.0, "int8") < 1e-2
    _, info = denoise(y, sigma=0.1, stop=2.0, kernel_size=3, columns=0.3, error_columns=8)
    assert info["nystrom_error"]["num_test"] == 8
    with pytest.raises(InputError):  # a row-normalised NLM filter is not symmetric
        filter_basis(y, method="nlm", sigma=0.1, kernel_size=3, columns=0.3, error_columns=8)
    with pytest.raises(InputError):
        filter_basis(y, kernel_size=3, columns=0.3, error_columns=-1)


def test_cli_reports_nystrom_error(tmp_path, main, capsys):
    src = _write(tmp_path / "in.png", _image(3, 12, 13))
    report = tmp_path / "r.json"
    argv = ["ntk", "denoise", src, "--sigma", "25", "--kernel", "3", "--columns", "0.5"]
    assert (
        main([*argv, "--nystrom-error", "-o", str(tmp_path / "d.png"), "--json", str(report)]) == 0
    )
    error = json.loads(report.read_text())["nystrom_error"]
    assert 0 <= error["relative_frobenius"] < 1 and error["num_test"] == 32
    assert "Nyström error" in capsys.readouterr().out
    eig_json = tmp_path / "e.json"
    argv = ["ntk", "eigenimages", src, "--kernel", "3", "-n", "2", "--columns", "0.5"]
    assert main([*argv, "--nystrom-error", "-o", str(tmp_path / "e"), "--json", str(eig_json)]) == 0
    saved = json.loads(eig_json.read_text())
    assert (
        saved["rank"] == len(saved["eigenvalues"])
        and "relative_frobenius" in saved["nystrom_error"]
    )


@pytest.mark.parametrize(
    "command",
    [
        ["matrix", "--kernel", "3", "-o", "{out}.npy"],
        ["eigenimages", "--kernel", "3", "-n", "2", "--columns", "0.5", "-o", "{out}.npy"],
        ["eigenimages", "--kernel", "3", "-n", "2", "--columns", "0.5", "-o", "{out}"],
        ["filters", "--kernel", "3", "--pixels", "3,3", "--columns", "0.5", "-o", "{out}.png"],
        ["denoise", "--sigma", "25", "--kernel", "3", "--columns", "0.5", "-o", "{out}.png"],
    ],
)
def test_cli_never_overwrites_without_force(tmp_path, main, capsys, command):
    src = _write(tmp_path / "in.png", _image(1, 12, 13))
    argv = ["ntk", command[0], src, *[a.format(out=tmp_path / "out") for a in command[1:]]]
    assert main(argv) == 0
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.name != "in.png")
    before = {p: p.read_bytes() for p in written}
    for p in written:  # mark every output so that a silent rewrite would show
        p.write_bytes(b"mine")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert all(p.read_bytes() == b"mine" for p in written)
    assert main([*argv, "--force"]) == 0
    assert all(p.read_bytes() != b"mine" for p in written if p in before)


def test_cli_json_report_is_checked_before_work(tmp_path, main, capsys):
    src = _write(tmp_path / "in.png", _image(1, 12, 13))
    report = tmp_path / "r.json"
    report.write_text("mine")
    out = tmp_path / "d.png"
    argv = ["ntk", "denoise", src, "--sigma", "25", "--kernel", "3", "--columns", "0.5"]
    assert main([*argv, "-o", str(out), "--json", str(report)]) == 2
    assert report.read_text() == "mine" and not out.exists()
