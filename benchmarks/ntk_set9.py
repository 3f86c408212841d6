"""Neural-tangent and NLM non-local filters on Set9color at σ = 25 (Table 1's setting).

Run from the repository root (each part updates its own key of the JSON)::

    python benchmarks/ntk_set9.py --threads 1                 # quality, all images
    python benchmarks/ntk_set9.py --filters ntk --images 5    # the NTK rows, 5 images
    python benchmarks/ntk_set9.py --quick                     # smoke run: 64×64 crops of 2 images
    python benchmarks/ntk_set9.py --no-quality --speed --threads 2
    python benchmarks/ntk_set9.py --filters ntk --precision single   # float32 products
    python benchmarks/ntk_set9.py --no-quality --correctness
    python benchmarks/ntk_set9.py --no-quality --figures      # benchmarks/results/ntk/*.png

Quality: for each image (noise seed = its index in sorted order), one Nyström filter of
the one-hidden-layer 11×11 CNN (1×1 output layer, equation 16; 2% columns, rank
``--rank``) stopped by the oracle, by the Monte-Carlo SURE (one more filter for y + εb)
and by the trace SURE (for reference); NLM (equation 4, 7×7 patches, 2% columns, rank
256, h = 1.5σ) with row and with Sinkhorn normalisation, plain (t = 1) and with twicing
(oracle t; Sinkhorn also with Monte-Carlo SURE), through the same code path. h = 1.5σ is
the bandwidth at which NLM twicing does best on 128² crops; plain NLM would prefer
h = σ/2, but that affinity is nearly diagonal and 2% Nyström columns cannot represent it
(House crop, row-normalised: 25.7 dB with every eigenpair, 3.5 dB at rank 64-128).
Targets: NTK oracle mean ≥ 28.3 dB (the paper's Nyström row), SURE within 0.3 dB of oracle.

Speed and memory (``--speed``): ``ntk.denoise`` with the default SURE stopping on a
256×256 and a 512×512 colour image, each in a fresh subprocess with ``--threads`` threads
(peak RSS from ``getrusage``). Targets: ≤ 3 s and ≤ 15 s on 2 cores, peak < 4 GiB at
512×512. Timings on a loaded machine are only an indication; the load average is kept.

Correctness (``--correctness``): closed form against the empirical NTK at c = 4096 on a
16×16 image (target: relative Frobenius error < 5%), symmetry and positive
semi-definiteness of full matrices, Nyström with every pixel as a column against the
full matrix, and the Jacobian of the frozen filter against its matrix.

Results go to ``benchmarks/results/ntk_set9.json`` and are printed as tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import RESULTS_DIR, SHARED, print_table, write_results

REPO = Path(__file__).resolve().parent.parent
DATA = SHARED / "data" / "Set9color"
SIGMA_255 = 25
TARGET_ORACLE_DB = 28.3
TARGET_SURE_GAP_DB = 0.3
NTK = dict(method="ntk", depth=2, kernel_size=11, output_kernel=1, columns=0.02)
NLM = dict(method="nlm", kernel_size=7, columns=0.02)
NLM_H = 1.5  # h = 1.5 σ, see the module notes
NTK_NAMES = ["ntk-oracle", "ntk-sure", "ntk-sure-trace"]
ERROR_COLUMNS = 32  # exact columns of the Nyström error report (NTK rows)
NLM_RANK = 256  # NLM affinities are less low-rank than the NTK (rank 64 loses ~1 dB)
NLM_NAMES = [
    "nlm-row",
    "nlm-row-twicing",
    "nlm-sinkhorn",
    "nlm-sinkhorn-twicing",
    "nlm-sinkhorn-twicing-sure",
]


def _filters(group: str, rank: int, sigma: float, precision: str) -> list:
    """``(prefix, filter options, column names, stopping rules)`` of a group of filters."""
    nlm = dict(NLM, h=NLM_H * sigma, rank=NLM_RANK)
    ntk_options = dict(NTK, rank=rank, precision=precision)
    ntk = [("ntk", ntk_options, NTK_NAMES, ["oracle", "sure", "sure-trace"])]
    nlm = [
        ("nlm_row", dict(nlm, normalize="row"), NLM_NAMES[:2], [1.0, "oracle"]),
        ("nlm_sinkhorn", dict(nlm, normalize="sinkhorn"), NLM_NAMES[2:], [1.0, "oracle", "sure"]),
    ]
    return {"ntk": ntk, "nlm": nlm, "all": ntk + nlm}[group]


def _load(path: Path, crop: int | None) -> torch.Tensor:
    from filterscope.io import read_image

    image, _ = read_image(path)
    x = torch.from_numpy(image.transpose(2, 0, 1).copy()).double()
    if crop:
        x = x[:, :crop, :crop].contiguous()
    return x


def _psnr(z: torch.Tensor, x: torch.Tensor) -> float:
    from filterscope.metrics import psnr

    return float(psnr(z[None].float(), x[None].float()))


def _run_filter(y, x, sigma, options, stops, prefix: str) -> dict:
    """One filter of ``y``, several stopping rules: PSNR, ``t`` and seconds of each.

    NTK filters also get the Nyström approximation-error report (``ERROR_COLUMNS`` exact
    columns against the low-rank filter), outside the timed build.
    """
    from filterscope.ntk import filter_basis, select_steps, twicing

    def build(image):
        return filter_basis(image, sigma=sigma, **options)

    start = time.perf_counter()
    basis = build(y)
    out = {f"{prefix}_basis_s": time.perf_counter() - start}
    if options["method"] == "ntk":
        report = filter_basis(y, sigma=sigma, error_columns=ERROR_COLUMNS, **options)
        out[f"{prefix}_nystrom_error"] = report.info["nystrom_error"]["relative_frobenius"]
    for name, stop in stops:
        start = time.perf_counter()
        t, _ = select_steps(basis, y, stop=stop, sigma=sigma, clean=x, rebuild=build)
        out[name] = _psnr(twicing(basis, y, t), x)
        out[f"{name}_t"] = t
        out[f"{name}_s"] = time.perf_counter() - start
    return out


def quality(
    images: list[tuple[int, Path]], crop: int | None, rank: int, group: str, precision: str
):
    from filterscope.noise import add_noise

    sigma = SIGMA_255 / 255.0
    filters = _filters(group, rank, sigma, precision)
    names = [n for _, _, group_names, _ in filters for n in group_names]
    rows = []
    for index, path in images:
        x = _load(path, crop)
        y = add_noise(x, sigma, generator=index)
        row = {"image": path.stem, "size": f"{x.shape[2]}x{x.shape[1]}", "noisy": _psnr(y, x)}
        for prefix, options, group_names, stops in filters:
            pairs = list(zip(group_names, stops, strict=True))
            row |= _run_filter(y, x, sigma, options, pairs, prefix)
        rows.append(row)
        print(f"{path.stem}: " + ", ".join(f"{n} {row[n]:.2f}" for n in names), flush=True)
        write_results(f"ntk_set9_{group}.partial", {"rows": rows})  # in case it is stopped
    means = {n: sum(r[n] for r in rows) / len(rows) for n in ["noisy", *names]}
    return rows, means, names


WORKER = r"""
import json, resource, sys, time, torch
torch.set_num_threads({threads})
sys.path.insert(0, {bench!r})
from _common import peak_rss_gib
from ntk_set9 import _load, NTK
from filterscope.noise import add_noise
from filterscope.ntk import denoise
from pathlib import Path
x = _load(Path({path!r}), {crop!r})
y = add_noise(x, 25 / 255, generator=0)
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
start, cpu0 = time.perf_counter(), cpu()
x_hat, info = denoise(y, sigma=25 / 255, stop={stop!r}, rank={rank}, precision={precision!r},
                      **NTK)
seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu0
peak = peak_rss_gib() * 2**30
print("RESULT " + json.dumps({{"seconds": seconds, "cpu_seconds": cpu_seconds,
      "basis_seconds": info["basis_seconds"], "peak_bytes": peak, "rank": info["rank"],
      "columns": info["columns"]}}))
"""


def speed(cases, *, stop: str, threads: int, rank: int, precision: str) -> list[dict]:
    rows = []
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for path, crop in cases:
        code = WORKER.format(
            bench=str(Path(__file__).parent),
            path=str(path),
            crop=crop,
            stop=stop,
            threads=threads,
            rank=rank,
            precision=precision,
        )
        load = os.getloadavg()[0]
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout
        result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
        x = _load(path, crop)
        rows.append(
            {
                "image": path.stem,
                "size": f"{x.shape[2]}x{x.shape[1]}",
                "stop": stop,
                "threads": threads,
                "precision": precision,
                **result,
                "peak_gib": result["peak_bytes"] / 2**30,
                "load_before": load,
            }
        )
        print(rows[-1], flush=True)
    return rows


def correctness() -> dict:
    """The correctness targets of the issue, measured."""
    from filterscope.ntk import (
        CNNKernel,
        ColumnEngine,
        FixedFilter,
        empirical_ntk,
        filter_basis,
        kernel_matrix,
        nystrom_basis,
        relative_frobenius_error,
    )

    g = torch.Generator().manual_seed(0)
    out = {}
    x16 = torch.rand(1, 16, 16, generator=g, dtype=torch.float64) - 0.5
    arch = dict(depth=2, kernel_size=3, output_kernel=1)
    k = kernel_matrix(x16, **arch)
    start = time.perf_counter()
    errors = {}
    for width in (256, 1024, 4096):
        e = empirical_ntk(x16, width=width, **arch)
        errors[str(width)] = relative_frobenius_error(e, k)
    out["empirical_vs_closed_form"] = {
        "image": "16x16 gray, uniform in [-0.5, 0.5]",
        "architecture": arch,
        "relative_frobenius_error": errors,
        "target_4096": 0.05,
        "met": errors["4096"] < 0.05,
        "seconds": time.perf_counter() - start,
    }
    x = torch.rand(3, 16, 16, generator=g, dtype=torch.float64)
    psd = []
    for arch in (
        dict(depth=2, kernel_size=11, output_kernel=1),
        dict(depth=2, kernel_size=3, output_kernel=None, padding="zero"),
        dict(depth=4, kernel_size=3, output_kernel=None),
        dict(depth=3, kernel_size=3, output_kernel=1, input="noise"),
    ):
        m = kernel_matrix(x, **arch)
        vals = torch.linalg.eigvalsh(m)
        psd.append(
            {
                **arch,
                "asymmetry": float((m - m.T).abs().max() / m.abs().max()),
                "min_eig_over_max": float(vals[0] / vals[-1]),
            }
        )
    out["full_matrix_symmetric_psd"] = psd
    spec = CNNKernel(depth=2, kernel_size=11, output_kernel=1)
    k = kernel_matrix(x, depth=2, kernel_size=11, output_kernel=1)
    nys = {}
    for precision in ("double", "single"):
        basis = nystrom_basis(
            ColumnEngine(x, spec), torch.arange(256), rcond=1e-13, precision=precision
        )
        nys[precision] = relative_frobenius_error(basis.matrix() / basis.scale, k)
    out["nystrom_all_columns_vs_full"] = nys
    basis = filter_basis(x, kernel_size=3, columns=None)
    fixed = FixedFilter(basis, 12.5)
    jac = torch.autograd.functional.jacobian(lambda v: fixed(v), x[None, :1]).reshape(256, 256)
    out["fixed_filter_jacobian_minus_matrix"] = float((jac - fixed.matrix()).abs().max())
    return out


FIGURE_PIXELS = [(200, 40), (150, 82), (125, 145), (80, 180)]  # (x, y): sky, trim, window, bricks


def figures(out_dir: Path) -> list[str]:
    """Figures 1 and 2 for House at σ = 25 (noise seed 2, its index)."""
    from filterscope.noise import add_noise
    from filterscope.ntk import filter_basis
    from filterscope.plotting.ntk import plot_eigenimages, plot_filter_rows

    out_dir.mkdir(parents=True, exist_ok=True)
    sigma = SIGMA_255 / 255.0
    path = DATA / "image_House256rgb.png"
    index = sorted(DATA.glob("*.png")).index(path)
    y = add_noise(_load(path, None), sigma, generator=index)
    written = []
    ntk = filter_basis(y, **dict(NTK, rank=None))  # every Nyström eigenpair (m = 1311)
    written.append(
        plot_filter_rows(
            y,
            ntk.rows(FIGURE_PIXELS),
            FIGURE_PIXELS,
            out_dir / "house_ntk_filters.png",
            title="NTK filter W (1 hidden layer, 11×11, eq. 16), House, σ = 25",
        )
    )
    nlm = filter_basis(y, h=NLM_H * sigma, **dict(NLM, normalize="row", rank=None))
    written.append(
        plot_filter_rows(
            y,
            nlm.rows(FIGURE_PIXELS),
            FIGURE_PIXELS,
            out_dir / "house_nlm_filters.png",
            title=f"NLM filter D⁻¹W (7×7, h = {NLM_H}σ), House, σ = 25",
        )
    )
    written.append(
        plot_eigenimages(
            ntk.eigenimages(7),
            ntk.eigvals,
            out_dir / "house_ntk_eigenimages.png",
            title="NTK filter: leading eigenimages, House, σ = 25",
        )
    )
    return [str(p.relative_to(REPO)) for p in written]


def _update(path: Path, parts: dict) -> dict:
    payload = json.loads(path.read_text()) if path.exists() else {}
    payload.update(parts)
    return payload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64 crops of 2 images")
    parser.add_argument("--crop", type=int, default=None, help="crop every image to NxN")
    parser.add_argument("--images", type=int, default=None, help="only the first N images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--rank", type=int, default=None, help="Nyström rank (library default)")
    parser.add_argument(
        "--precision",
        choices=("int8", "single", "double"),
        default=None,
        help="NTK Nyström product (library default: int8); other precisions get their own "
        "JSON keys",
    )
    parser.add_argument("--no-quality", action="store_true", help="skip the quality part")
    parser.add_argument(
        "--filters", choices=("ntk", "nlm", "all"), default="all", help="quality: which filters"
    )
    parser.add_argument("--speed", action="store_true", help="time 256² and 512² images")
    parser.add_argument("--speed-256-only", action="store_true", help="--speed: only 256²")
    parser.add_argument("--correctness", action="store_true", help="closed form vs empirical...")
    parser.add_argument("--figures", action="store_true", help="Figures 1-2 (House) as PNGs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from filterscope.ntk.denoiser import DEFAULT_RANK
    from filterscope.ntk.nystrom import DEFAULT_PRECISION

    rank = args.rank or DEFAULT_RANK
    precision = args.precision or DEFAULT_PRECISION
    suffix = "" if precision == DEFAULT_PRECISION else f"_{precision}"
    name = "ntk_set9" + ("_quick" if args.quick else "")
    path = RESULTS_DIR / f"{name}.json"
    parts: dict = {"benchmark": "ntk_set9", "sigma_255": SIGMA_255}
    if not args.no_quality or args.speed or args.figures:
        if not DATA.is_dir():
            print(f"{DATA} not found; nothing to do", file=sys.stderr)
            return 1
    if not args.no_quality:
        images = list(enumerate(sorted(DATA.glob("*.png"))))
        crop = args.crop
        if args.quick:
            images, crop = images[:2], crop or 64
        if args.images:
            images = images[: args.images]
        start = time.time()
        rows, means, names = quality(images, crop, rank, args.filters, precision)
        result = {
            "precision": precision,
            "images": len(rows),
            "of_images": len(list(DATA.glob("*.png"))),
            "crop": crop,
            "rank": rank,
            "nlm": {"h": f"{NLM_H} sigma", "rank": NLM_RANK, "patch": 7},
            "threads": args.threads,
            "load_average": os.getloadavg(),
            "seconds": time.time() - start,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "rows": rows,
            "mean_psnr": means,
        }
        errors = [r["ntk_nystrom_error"] for r in rows if "ntk_nystrom_error" in r]
        if errors:
            result["nystrom_error"] = {
                "what": f"relative Frobenius error of {ERROR_COLUMNS} exact columns against "
                "the rank-limited Nyström filter (equation 16 kernel, 2% columns)",
                "mean": sum(errors) / len(errors),
                "max": max(errors),
            }
            print(f"Nyström error: {result['nystrom_error']}")
        if "ntk-oracle" in means:
            gap = means["ntk-oracle"] - means["ntk-sure"]
            result["targets"] = {
                "ntk_oracle_mean_db": TARGET_ORACLE_DB,
                "ntk_oracle_met": means["ntk-oracle"] >= TARGET_ORACLE_DB,
                "sure_gap_db": gap,
                "sure_gap_met": gap <= TARGET_SURE_GAP_DB,
            }
        parts[f"quality_{args.filters}{suffix}"] = result
        print_table(rows + [{"image": "mean", **means}], ["image", "size", "noisy", *names])
        print(f"targets: {result.get('targets')}")
    if args.speed:
        house = DATA / "image_House256rgb.png"
        lena = DATA / "image_Lena512rgb.png"
        cases = [(house, 64), (house, 128)] if args.quick else [(house, None), (lena, None)]
        if args.speed_256_only:
            cases = cases[:1]
        rows = speed(cases, stop="sure", threads=args.threads, rank=rank, precision=precision)
        parts[f"speed_{args.threads}_threads{suffix}"] = {
            "targets": {"256x256_s": 3.0, "512x512_s": 15.0, "512x512_peak_gib": 4.0},
            "note": (
                "targets are for 2 quiet cores; load_before is the 1-minute load average; "
                "cpu_seconds (user + system) is the load-independent part"
            ),
            "rows": rows,
        }
        print_table(
            rows,
            ["image", "size", "threads", "seconds", "cpu_seconds", "basis_seconds", "peak_gib"],
        )
    if args.correctness:
        parts["correctness"] = correctness()
        print(json.dumps(parts["correctness"], indent=2))
    if args.figures:
        parts["figures"] = figures(RESULTS_DIR / "ntk")
        print("figures:", *parts["figures"])
    payload = _update(path, parts)
    out = write_results(name, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
