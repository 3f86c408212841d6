"""Is the shipped default worth choosing? Side by side with BM3D, NLM and the published model.

Run from the repository root (needs ../shared)::

    python benchmarks/denoiser_quality.py gray  --images 68    # BSD68, σ = 5 … 100
    python benchmarks/denoiser_quality.py color --images 10    # CBSD68, Kodak24, McMaster
    python benchmarks/denoiser_quality.py color --sets McMaster --images 18   # one whole set
    python benchmarks/denoiser_quality.py speed      # 512² gray Mpx/s, 3000×2000 RGB memory

Every method sees the same noisy images: the noise of image ``i`` at σ comes from
``filterscope.evaluation.sweep.noise_seed(0, i, σ / 255)``, as in ``filterscope
evaluate``. PSNR of the estimate clipped to [0, 1], data range 1, mean over images of
per-image values. Networks run in float32.

Gray methods: the default gray model blind (``sigma=None``: for ``bf-drunet-gray`` σ
estimated from the image, then non-blind), told σ, and in the blind mode its network was
trained with (σ input 0), the default blind with the 8-fold self-ensemble (at
``--ensemble-sigmas``), BM3D and scikit-image NLM
given the true σ, the published BF-DnCNN trained on [0, 100] (blind), and the previous
default ``bf-dncnn-gray``. Colour methods: the default colour model blind and told σ,
CBM3D (``bm3d.bm3d_rgb``, true σ), the published gray BF-DnCNN [0, 100] per channel,
and the previous ``bf-dncnn-color``.

Per-image PSNRs are cached in ``benchmarks/results/denoiser_quality.partial.json``
(keyed by method, set, image and σ, and for a shipped model by a digest of its weights
and configuration, so a re-shipped model is scored again), so an interrupted or extended
run (more images, more σ) computes only what is missing; ``--forget LABEL`` drops one
method's entries. Results: ``benchmarks/results/denoiser_quality.json`` (not written
by a ``--methods`` run, which only prints) and markdown tables; each set's table records
the command that scored it, and a run of some colour sets (``--sets``) keeps the others'
last tables.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import torch

from _common import (
    RESULTS_DIR,
    SHARED,
    estimator_tag,
    peak_rss_gib,
    print_table,
    run_fresh,
    write_results,
)

PUBLISHED_0_100 = SHARED / "reference/bias_free_denoising/pretrained/dncnn/bias_free/0-100.pt"
CACHE = RESULTS_DIR / "denoiser_quality.partial.json"
GRAY_SIGMAS = [5, 10, 15, 25, 35, 50, 75, 100]
COLOR_SIGMAS = [15, 25, 50]
COLOR_SETS = ["CBSD68", "Kodak24", "McMaster"]


def _load(name: str):
    from filterscope.hub import load_model

    return load_model(name).eval()


def _per_channel(model):
    """A gray model run on each channel of an RGB batch."""

    def run(y, sigma):
        b, c, h, w = y.shape
        return model(y.reshape(b * c, 1, h, w), None).reshape(b, c, h, w)

    return run


def methods(part: str, default: str) -> dict[str, Callable[[], Callable]]:
    """Label -> factory of ``fn(y, sigma) -> x_hat`` (σ on the image scale)."""
    from filterscope.ensemble import self_ensemble

    def blind(name):
        return lambda: (lambda m: lambda y, s: m(y, None))(_load(name))

    def told(name):
        return lambda: (lambda m: lambda y, s: m(y, s))(_load(name))

    def ensemble(name):
        return lambda: (lambda m: lambda y, s: self_ensemble(m, y, None))(_load(name))

    def trained_blind(name):  # a noise-level network's own blind mode (σ input 0)
        return lambda: (lambda m: lambda y, s: m(y, 0.0))(_load(name))

    if part == "gray":
        return {
            f"{default} (blind)": blind(default),
            f"{default} (told sigma)": told(default),
            f"{default} (trained blind mode)": trained_blind(default),
            f"{default} (blind, ensemble)": ensemble(default),
            "BM3D (true sigma)": told("bm3d"),
            "NLM (true sigma)": told("nlm"),
            "published BF-DnCNN [0,100]": blind(str(PUBLISHED_0_100)),
            "bf-dncnn-gray (old default)": blind("bf-dncnn-gray"),
        }
    return {
        f"{default} (blind)": blind(default),
        f"{default} (told sigma)": told(default),
        "CBM3D (true sigma)": told("bm3d"),
        "published gray BF-DnCNN [0,100] per channel": lambda: _per_channel(
            _load(str(PUBLISHED_0_100))
        ),
        "bf-dncnn-color (old default)": blind("bf-dncnn-color"),
    }


def _noisy(clean: torch.Tensor, index: int, sigma: float) -> torch.Tensor:
    """The noisy image ``filterscope evaluate`` makes for image ``index`` at σ (0–255)."""
    from filterscope.evaluation.sweep import noise_seed
    from filterscope.noise import add_noise

    return add_noise(clean, sigma / 255.0, generator=noise_seed(0, index, sigma / 255.0))


def _score(job) -> float:
    """PSNR of one (method, image, σ): a picklable job for the worker processes."""
    label, part, default, path, index, sigma = job
    from filterscope.io import read_image, to_tensor
    from filterscope.metrics import psnr

    torch.set_num_threads(1)
    fn = _worker_method(label, part, default)
    image, _ = read_image(path)
    clean = to_tensor(image)
    with torch.inference_mode():
        estimate = fn(_noisy(clean, index, sigma), sigma / 255.0)
    return float(psnr(estimate.float(), clean)[0])


_WORKER_CACHE: dict[str, Callable] = {}


def _worker_method(label: str, part: str, default: str) -> Callable:
    if label not in _WORKER_CACHE:
        _WORKER_CACHE[label] = methods(part, default)[label]()
    return _WORKER_CACHE[label]


def _sets(part: str, args) -> list[tuple[str, list[int]]]:
    if part == "gray":
        return [("BSD68", args.sigmas or GRAY_SIGMAS)]
    return [(name, args.sigmas or COLOR_SIGMAS) for name in args.sets or COLOR_SETS]


@functools.lru_cache
def _weights_tag(label: str) -> str:
    """``"|"`` and a digest of the weights and configuration of the shipped model a label
    names (``"bf-drunet-gray (blind)"``), and for a blind label of the noise estimator's
    source; ``""`` for other methods."""
    from filterscope.models.zoo import list_shipped, shipped_weights

    name = label.split(" (")[0]
    weights = shipped_weights(name)
    if weights is None:
        return ""
    digest = hashlib.sha256(weights.read_bytes())
    digest.update(json.dumps(list_shipped()[name].get("config"), sort_keys=True).encode())
    if "blind" in label:  # the blind path reads σ with the wavelet estimator
        digest.update(estimator_tag().encode())
    return "|" + digest.hexdigest()[:12]


def _save_cache(cache: dict) -> None:
    """Merge into the cache on disk (another run may be adding to it) and replace it whole."""
    on_disk = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    cache.update({k: v for k, v in on_disk.items() if k not in cache})
    partial = CACHE.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(cache, indent=1) + "\n")
    partial.replace(CACHE)


def quality(part: str, args) -> dict:
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    for label in args.forget:
        cache = {k: v for k, v in cache.items() if not k.startswith(label + "|")}
        CACHE.write_text(json.dumps(cache, indent=1) + "\n")
    labels = [
        label
        for label in methods(part, args.default)
        if not args.methods or any(label.startswith(prefix) for prefix in args.methods)
    ]
    jobs = []
    for set_name, sigmas in _sets(part, args):
        files = sorted((SHARED / "data" / set_name).glob("*.png"))[: args.images]
        for label in labels:
            use = args.ensemble_sigmas if "ensemble" in label else sigmas
            for sigma in use:
                for index, path in enumerate(files):
                    key = f"{label}|{set_name}|{path.name}|{sigma}{_weights_tag(label)}"
                    if key not in cache:
                        jobs.append((key, (label, part, args.default, str(path), index, sigma)))
    print(f"{len(jobs)} (method, image, sigma) runs to do, {args.jobs} processes")
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        for done, (key, value) in enumerate(
            zip([k for k, _ in jobs], pool.map(_score, [j for _, j in jobs]), strict=True), start=1
        ):
            cache[key] = value
            if done % 20 == 0 or done == len(jobs):
                _save_cache(cache)
                print(f"  {done}/{len(jobs)} ({time.perf_counter() - start:.0f} s)", flush=True)
    return _summarise(part, args, cache, labels)


def _summarise(part: str, args, cache: dict, labels: list[str]) -> dict:
    tables = {}
    for set_name, sigmas in _sets(part, args):
        files = sorted((SHARED / "data" / set_name).glob("*.png"))[: args.images]
        rows = []
        for label in labels:
            row = {"method": label}
            for sigma in sigmas:
                tag = _weights_tag(label)
                values = [cache.get(f"{label}|{set_name}|{p.name}|{sigma}{tag}") for p in files]
                if all(v is not None for v in values):
                    row[str(sigma)] = round(statistics.fmean(values), 3)
            rows.append(row)
        tables[set_name] = {
            "images": len(files),
            "sigmas_255": sigmas,
            "rows": rows,
            "command": _command(),
        }
        print(f"\n{set_name} ({len(files)} images), mean PSNR (dB), sigma on the 0-255 scale")
        print_table(rows, ["method"] + [str(s) for s in sigmas])
    return tables


def _command() -> str:
    return " ".join(["python benchmarks/denoiser_quality.py"] + sys.argv[1:])


def _speed_child(name: str, height: int, width: int, channels: int, repeats: int) -> dict:
    from filterscope.inference import denoise_tensor, prepare_model
    from filterscope.machine import choose_precision

    torch.set_num_threads(2)
    precision = choose_precision("denoise", "cpu")  # what `filterscope denoise` takes here
    model = prepare_model(_load(name), precision=precision)
    y = torch.rand(1, channels, height, width, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            denoise_tensor(model, y)
            times.append(time.perf_counter() - start)
    peak = peak_rss_gib()
    median = statistics.median(times[1:] if len(times) > 1 else times)
    rate = height * width / median / 1e6
    return {"seconds": median, "mpx_per_s": rate, "peak_gib": peak, "precision": precision}


def speed(args) -> dict:
    """Each measurement in a fresh process, so peak memory is that run's own."""
    cases = [
        (args.default, 512, 512, 1, 6),
        ("bf-dncnn-gray", 512, 512, 1, 6),
        (args.default_color, 2000, 3000, 3, 1),
        ("bf-dncnn-color", 2000, 3000, 3, 1),
    ]
    rows = []
    for name, height, width, channels, repeats in cases:
        call = f"_speed_child({name!r}, {height}, {width}, {channels}, {repeats})"
        result = run_fresh("denoiser_quality", call)
        rows.append({"model": name, "image": f"{width}x{height}x{channels}", **result})
    print_table(rows, ["model", "image", "precision", "seconds", "mpx_per_s", "peak_gib"])
    return {"precision": "the CPU's denoise default (see the rows)", "threads": 2, "rows": rows}


def main() -> int:
    from filterscope.models.zoo import default_model_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["gray", "color", "speed"])
    parser.add_argument("--images", type=int, default=68, help="first N images of each set")
    parser.add_argument("--default", default=default_model_name(1), help="gray model")
    parser.add_argument("--default-color", default=default_model_name(3), help="color model")
    parser.add_argument(
        "--sets",
        type=lambda t: t.split(","),
        default=[],
        help=f"colour sets (comma-separated), default: {','.join(COLOR_SETS)}",
    )
    parser.add_argument("--sigmas", default="", help="sigmas (0-255), default: the target's")
    parser.add_argument("--ensemble-sigmas", default="25,50", help="sigmas (0-255) for ensemble")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument(
        "--methods",
        type=lambda t: t.split(","),
        default=[],
        help="only methods whose label starts with one of these (comma-separated)",
    )
    parser.add_argument("--forget", action="append", default=[], help="drop a method's cache")
    args = parser.parse_args()
    args.ensemble_sigmas = [int(s) for s in args.ensemble_sigmas.split(",") if s]
    args.sigmas = [int(s) for s in args.sigmas.split(",") if s]
    if args.part == "color":
        args.default = args.default_color
    unknown = [name for name in args.sets if name not in COLOR_SETS]
    if unknown or (args.sets and args.part != "color"):
        print(f"--sets: colour sets are {', '.join(COLOR_SETS)}, got {args.sets}", file=sys.stderr)
        return 2
    if args.part != "speed" and not (SHARED / "data").is_dir():
        print(f"needs {SHARED}/data", file=sys.stderr)
        return 2
    part = speed(args) if args.part == "speed" else quality(args.part, args)
    if args.methods:  # a table without the baselines would replace the side-by-side one
        print("--methods: tables printed, results file left as it was")
        return 0
    # Read the other parts only now: a run of another part may have finished meanwhile.
    path = RESULTS_DIR / "denoiser_quality.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.part == "speed":
        results["speed"] = {**part, "command": _command()}
    else:  # each set keeps the command that scored it; sets not run keep their last scores
        earlier = {k: v for k, v in results.get(args.part, {}).items() if k != "command"}
        results[args.part] = {**earlier, **part}
    write_results("denoiser_quality", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
