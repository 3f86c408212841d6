"""The machine filterscope runs on, and the numeric path each operation takes there.

CPUs differ in what they run fast: bfloat16 arithmetic is native only with AVX-512 BF16
or AMX (elsewhere oneDNN emulates it, 4-24x slower than float32), and int8 matrix
products (``torch._int_mm``) only with VNNI or AMX (15-30x slower than float32
without). This module reads the CPU's instruction-set flags, answers "bfloat16 or
float32?", "channels-last or not?" and "int8 products or float?" per operation, and is
the one place that does: every ``precision="auto"`` in the package resolves here.

Where the flags do not settle a question (channels-last memory layout; a CPU whose flags
cannot be read, e.g. not Linux on x86), a micro-benchmark of a few milliseconds decides,
and its answer is cached per machine and torch version in
``$XDG_CACHE_HOME/filterscope/machine.json`` (``~/.cache/filterscope`` by default;
``FILTERSCOPE_CACHE_DIR`` overrides). A missing, corrupt or read-only cache only means
measuring again.

Imports only torch and the standard library (and the package's error classes), so any
layer may use it; torch only when first needed, so that :func:`report` answers from its
cache in a few milliseconds (``filterscope info``; importing torch takes 1-3 s).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError


class _TorchOnFirstUse:
    """``torch``, imported when an attribute is first read: :func:`report` answers from
    its cache without paying torch's import time."""

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch, name)


torch = _TorchOnFirstUse()

#: The CPU flags (as Linux names them in /proc/cpuinfo) that decide a numeric path.
FLAGS_THAT_MATTER = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)
#: Flags with native bfloat16 arithmetic (dot products in hardware).
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Flags with native int8 dot products.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

#: Network arithmetic: float32, or a forward pass under bfloat16 autocast.
PRECISIONS = ("float32", "bfloat16")
AUTO = "auto"

#: Operations that take a numeric path, and what each one's path covers.
OPERATIONS = {
    "train": "training step: bfloat16 autocast or float32, channels-last or not",
    "train-gpu": "training step on the GPU: bfloat16 autocast where supported",
    "denoise": "network inference: bfloat16 or float32 (inference is channels-last)",
    "evaluate": "network inference while scoring: float32 unless asked (scores are compared)",
    "analyze": "Jacobian of a network: always float32 (its spectrum needs the digits)",
    "ntk": "Nystrom blocks of the NTK filter: int8 or float32 patch products",
    "dip": "deep image prior fit: float32 (not yet offered in bfloat16)",
    "explore": "filter rows in the explorer: float32 or float64 Jacobians, never bfloat16",
    "demo": "network inference in the demo",
}

#: Operations whose ``auto`` precision is float32 everywhere (accuracy is their point).
FLOAT32_OPERATIONS = ("analyze", "evaluate", "dip", "explore")

_CACHE_FILE = "machine.json"
_memo: dict[str, Any] = {}  # decisions made in this process, by cache key


# --------------------------------------------------------------------------- the machine


def _read_cpuinfo() -> str | None:
    """Text of /proc/cpuinfo, or None where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None


def _cpuinfo_field(names: tuple[str, ...]) -> str | None:
    text = _read_cpuinfo()
    if text is None:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in names:
            return value.strip()
    return None


def cpu_flags() -> frozenset[str] | None:
    """The CPU's instruction-set flags (lower case), or None where they cannot be read.

    Read from the first ``flags`` (x86) or ``Features`` (Arm) line of /proc/cpuinfo.
    None means "unknown": the decisions below then measure instead of reading.
    """
    line = _cpuinfo_field(("flags", "features"))
    return None if line is None else frozenset(line.lower().split())


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` where /proc/cpuinfo has none)."""
    return (
        _cpuinfo_field(("model name", "hardware", "cpu model"))
        or platform.processor()
        or platform.machine()
        or "unknown CPU"
    )


def cpu_capability() -> str:
    """torch's name for the vector instructions its CPU kernels use (``"AVX2"``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # pragma: no cover - very old torch
        return "unknown"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def machine_info() -> dict[str, Any]:
    """What this machine is, as JSON-ready values (cheap: no measurement).

    Returns
    -------
    dict
        ``cpu`` (model name), ``capability`` (torch's), ``flags`` (those of
        :data:`FLAGS_THAT_MATTER` present, or None when unreadable), ``cores``
        (usable by this process), ``cpu_count`` (of the machine), ``threads``
        (torch intra-op), ``torch`` (version), ``cuda`` (GPU name or None).
    """
    flags = cpu_flags()
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "capability": cpu_capability(),
        "flags": None if flags is None else [f for f in FLAGS_THAT_MATTER if f in flags],
        "cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": cuda,
    }


# --------------------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """Folder of filterscope's per-user cache (not created here)."""
    if os.environ.get("FILTERSCOPE_CACHE_DIR"):
        return Path(os.environ["FILTERSCOPE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "filterscope"


def _torch_version() -> str:
    """torch's version, from its package metadata (no import of torch)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - odd installs
        return str(torch.__version__)


def _cache_key() -> str:
    """Machine + torch build (+ a forced capability): a measured decision holds for
    exactly these."""
    forced = os.environ.get("ATEN_CPU_CAPABILITY", "")
    return f"{cpu_model()}|torch {_torch_version()}|{forced}"


def _read_cache() -> dict[str, Any]:
    try:
        saved = json.loads((cache_dir() / _CACHE_FILE).read_text())
    except (OSError, ValueError):  # missing, unreadable or corrupt: measure again
        return {}
    return saved if isinstance(saved, dict) else {}


def _write_cache(saved: dict[str, Any]) -> None:
    """Best effort: a read-only or full cache folder only costs a measurement next time."""
    path = cache_dir() / _CACHE_FILE
    tmp = path.with_name(f".{_CACHE_FILE}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(saved, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def measured(name: str, measure: Callable[[], bool]) -> bool:
    """The cached answer to question ``name`` on this machine, ``measure()`` if none."""
    key = f"{_cache_key()}|{name}"
    if key in _memo:
        return _memo[key]
    saved = _read_cache()
    entry = saved.get(_cache_key())
    if isinstance(entry, dict) and isinstance(entry.get(name), bool):
        _memo[key] = entry[name]
        return entry[name]
    answer = bool(measure())
    _memo[key] = answer
    entry = entry if isinstance(entry, dict) else {}
    entry[name] = answer
    saved[_cache_key()] = entry
    _write_cache(saved)
    return answer


def clear_memo() -> None:
    """Forget this process's decisions (the cache file stays); for tests."""
    _memo.clear()


# --------------------------------------------------------------------------- micro-benchmarks


def _first_is_faster(
    first: Callable[[], object], second: Callable[[], object], *, margin: float = 1.0
) -> bool:
    """Whether ``first`` takes less than ``margin`` times ``second``'s time.

    Medians of 5 runs each, taken alternately after a warm-up of both (oneDNN picks
    and caches its kernels on the first call), so that load from other processes
    falls on both alike; on one thread, because on a busy machine several threads
    waiting for each other make a millisecond kernel take a hundred times longer, and
    what is compared here is the kernels, not the scheduling.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first()
        second()
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(5):
            for run, spent in zip((first, second), times, strict=True):
                start = time.perf_counter()
                run()
                spent.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return sorted(times[0])[2] < margin * sorted(times[1])[2]


def _conv_step(*, channels_last: bool, bfloat16: bool, backward: bool) -> Callable[[], object]:
    """A two-convolution 64-channel step on 1x64x24x24 (a few ms on one core)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(64, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1),
    ).to(memory_format=layout)
    x = torch.randn(1, 64, 24, 24, generator=gen).contiguous(memory_format=layout)

    def run() -> object:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            if not backward:
                with torch.no_grad():
                    return net(x)
            out = net(x.requires_grad_(True))
        out.float().sum().backward()
        return out

    return run


def _channels_last_is_faster(*, backward: bool) -> bool:
    return _first_is_faster(
        _conv_step(channels_last=True, bfloat16=False, backward=backward),
        _conv_step(channels_last=False, bfloat16=False, backward=backward),
    )


def _bfloat16_is_faster() -> bool:
    # bfloat16 costs accuracy: demand a real gain
    return _first_is_faster(
        _conv_step(channels_last=True, bfloat16=True, backward=True),
        _conv_step(channels_last=True, bfloat16=False, backward=True),
        margin=0.9,
    )


def _int8_is_faster() -> bool:
    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is None:
        return False
    gen = torch.Generator().manual_seed(0)
    left = torch.randint(-127, 128, (1024, 80), generator=gen, dtype=torch.int8)
    right = torch.randint(-127, 128, (80, 256), generator=gen, dtype=torch.int8)
    left_f, right_f = left.float(), right.float()
    try:
        int_mm(left, right)
    except RuntimeError:  # no CPU kernel in this build
        return False
    return _first_is_faster(lambda: int_mm(left, right), lambda: left_f @ right_f, margin=0.9)


# --------------------------------------------------------------------------- decisions


def _device_type(device: str | torch.device | None) -> str:
    if device is None:
        return "cpu"
    return torch.device(device).type


def _check_operation(op: str) -> None:
    if op not in OPERATIONS:
        raise InputError(f"op must be one of {', '.join(OPERATIONS)}, got {op!r}")


def _x86_flags() -> frozenset[str] | None:
    """The flags when they settle the questions here (an x86 CPU), else None (unknown,
    or an Arm CPU, whose bfloat16 and int8 speed in torch depends on the build)."""
    flags = cpu_flags()
    return flags if flags is not None and {"sse2", "avx", "avx2"} & flags else None


def native_bfloat16(device: str | torch.device | None = "cpu") -> bool:
    """True where bfloat16 arithmetic is native: a CUDA GPU that reports it, or a CPU with
    AVX-512 BF16 or AMX (measured where the flags cannot be read)."""
    if _device_type(device) == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    flags = _x86_flags()
    if flags is None:
        return measured("bfloat16_faster", _bfloat16_is_faster)
    return bool(flags & set(BFLOAT16_FLAGS))


def choose_precision(
    op: str, device: str | torch.device | None = "cpu", *, requested: str = AUTO
) -> str:
    """``"float32"`` or ``"bfloat16"`` for operation ``op`` on ``device``.

    An explicit ``requested`` precision wins; ``"auto"`` is bfloat16 only where it is
    native (:func:`native_bfloat16`) and ``op`` tolerates it: ``analyze`` and
    ``explore`` (Jacobians need the digits), ``evaluate`` (its scores are compared with
    published float32 ones) and ``dip`` take float32 on every machine.

    Raises
    ------
    InputError
        Unknown ``requested`` precision or ``op``.
    """
    if requested not in (AUTO, *PRECISIONS):
        raise InputError(
            f"precision must be one of {AUTO}, {', '.join(PRECISIONS)}, got {requested!r}"
        )
    _check_operation(op)
    if requested != AUTO:
        return requested
    if op in FLOAT32_OPERATIONS:
        return "float32"
    return "bfloat16" if native_bfloat16(device) else "float32"


def choose_channels_last(
    op: str, device: str | torch.device | None = "cpu", *, requested: bool | str = AUTO
) -> bool:
    """Whether ``op``'s convolutions run in channels-last memory layout.

    An explicit bool wins. ``"auto"``: on a GPU, channels-last where bfloat16 is
    supported (tensor cores want it); on a CPU a cached micro-benchmark of a
    64-channel convolution step (forward and backward for training) decides, since
    the flags do not tell how oneDNN's two layouts compare.

    Raises
    ------
    InputError
        ``requested`` neither a bool nor ``"auto"``, or unknown ``op``.
    """
    if not isinstance(requested, bool) and requested != AUTO:
        raise InputError(f"channels_last must be true, false or auto, got {requested!r}")
    _check_operation(op)
    if isinstance(requested, bool):
        return requested
    if _device_type(device) == "cuda":
        return native_bfloat16(device)
    backward = op in ("train", "train-gpu")
    name = "channels_last_training" if backward else "channels_last_inference"
    return measured(name, lambda: _channels_last_is_faster(backward=backward))


def choose_int8(
    op: str, device: str | torch.device | None = "cpu", *, requested: bool | str = AUTO
) -> bool:
    """Whether ``op`` takes int8 matrix products (``torch._int_mm``) instead of float32.

    An explicit bool wins. ``"auto"``: on a CPU only with VNNI or AMX (without them
    int8 products are 15-30x slower than float32); measured where the flags cannot be
    read. Never on a GPU (not measured there).
    """
    if not isinstance(requested, bool) and requested != AUTO:
        raise InputError(f"int8 must be true, false or auto, got {requested!r}")
    _check_operation(op)
    if isinstance(requested, bool):
        return requested
    if _device_type(device) == "cuda":
        return False
    flags = _x86_flags()
    if flags is None:
        return measured("int8_faster", _int8_is_faster)
    return bool(flags & set(INT8_FLAGS))


def numeric_paths(device: str | torch.device | None = "cpu") -> dict[str, dict[str, Any]]:
    """The ``auto`` path of every operation here: ``{op: {"precision", ...}}``.

    Cheap after the first call on a machine (the measured answers are cached).
    """
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        if op == "train-gpu":
            if not torch.cuda.is_available():
                continue
            op_device: str | torch.device | None = "cuda"
        else:
            op_device = device
        if op == "ntk":
            paths[op] = {"products": "int8" if choose_int8(op, op_device) else "float32"}
            continue
        paths[op] = {"precision": choose_precision(op, op_device)}
        if op in ("train", "train-gpu"):
            paths[op]["channels_last"] = choose_channels_last(op, op_device)
    return paths


def path_record(op: str, requested: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """What to write into a result: the path ``chosen``, what was ``requested``, and
    where (CPU model, capability, torch version)."""
    return {
        "operation": op,
        "chosen": chosen,
        "requested": requested,
        "cpu": cpu_model(),
        "capability": cpu_capability(),
        "torch": torch.__version__,
    }


def _report_key() -> str:
    """What a report depends on beyond :func:`_cache_key`: the threads torch will take
    and the GPUs it may see."""
    env = [os.environ.get(name, "") for name in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")]
    return f"report|{_cache_key()}|cores {usable_cores()}|{'|'.join(env)}"


def _package_version() -> str:
    try:
        return importlib.metadata.version("filterscope")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def report(*, refresh: bool = False) -> dict[str, Any]:
    """Everything a bug report needs about this machine, and the path each command takes.

    Parameters
    ----------
    refresh : bool, keyword-only
        Build the report afresh (importing torch and measuring what is not cached)
        instead of reading the cached one.

    Returns
    -------
    dict
        ``filterscope`` and ``python`` versions, :func:`machine_info`'s fields
        (``cpu``, ``capability``, ``flags``, ``cores``, ``threads``, ``torch``,
        ``cuda``...), ``paths`` (:func:`numeric_paths`: the ``auto`` path of each
        command), ``cache`` (the cache file) and ``cached`` (whether this came from it).

    Notes
    -----
    Cost: a few milliseconds from the cache; the first time on a machine (or with
    ``refresh``) torch's import (1-3 s) and the micro-benchmarks (well under 1 s).
    The cached report is per CPU model, torch version, usable cores and
    ``OMP_NUM_THREADS`` / ``CUDA_VISIBLE_DEVICES``.
    """
    key = _report_key()
    saved = _read_cache()
    if not refresh and isinstance(saved.get(key), dict):
        return {**saved[key], "cache": str(cache_dir() / _CACHE_FILE), "cached": True}
    built = {
        "filterscope": _package_version(),
        "python": platform.python_version(),
        **machine_info(),
        "paths": numeric_paths(),
    }
    saved = _read_cache()  # numeric_paths may have written measured answers meanwhile
    saved[key] = built
    _write_cache(saved)
    return {**built, "cache": str(cache_dir() / _CACHE_FILE), "cached": False}


#: Blocks of at least this many bytes get their own memory mapping (see
#: :func:`return_large_blocks`): a few MiB is above any small tensor, below any
#: full-tile activation.
LARGE_BLOCK_BYTES = 4 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
#: The environment variable by which glibc takes a user's own mmap threshold.
MMAP_THRESHOLD_VARIABLE = "MALLOC_MMAP_THRESHOLD_"


def return_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Have glibc give blocks of ``threshold`` bytes or more back to the system when freed.

    glibc raises its mmap threshold each time a large block is freed, after which
    blocks of that size come from its heap and stay resident when freed; a tiled pass
    over a large image, which allocates and frees a tile's activations (hundreds of MB)
    again and again, then grows by fragments of them. A fixed threshold keeps the
    resident memory at one tile's working set: on a 3000x2000 RGB photo the peak of
    ``filterscope denoise`` falls by about 0.1 GiB (``benchmarks/blind_denoise_speed.py``).

    Parameters
    ----------
    threshold : int
        Block size in bytes from which blocks are mapped on their own.

    Returns
    -------
    bool
        True when set (glibc); False where the C library is another, or where the
        environment sets glibc's own ``MALLOC_MMAP_THRESHOLD_`` (nothing changes).

    Notes
    -----
    Process-wide and lasting: it changes how later large blocks of this process are
    allocated (each is mapped and zeroed by the system, a cost that is small next to
    the convolutions that fill it). Called by every tiled pass of more than one tile.
    A program that embeds filterscope and wants its own allocator policy sets
    ``MALLOC_MMAP_THRESHOLD_`` (glibc reads it at start; this function then leaves it).
    """
    if platform.libc_ver()[0] != "glibc" or MMAP_THRESHOLD_VARIABLE in os.environ:
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
