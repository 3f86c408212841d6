"""Several processes: DDP with synchronised batch norm equals one process on the same batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from filterscope import create_model, load_checkpoint
from filterscope.training.distributed import (
    DistributedContext,
    shutdown_distributed,
    unsynchronize_batch_norm,
    wrap_distributed,
)
from filterscope.training.trainer import training_step

STEPS = 5
GLOBAL_BATCH = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batches(in_channels: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(7)
    batches = []
    for _ in range(STEPS):
        clean = torch.rand(GLOBAL_BATCH, in_channels, 13, 11, generator=generator)
        noisy = clean + 0.2 * torch.randn(clean.shape, generator=generator)
        batches.append((noisy, clean))
    return batches


def _model(bias: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("dncnn", bias=bias, in_channels=1, num_layers=4, hidden=6)


def _train(model, batches, *, rank: int = 0, world_size: int = 1) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    share = GLOBAL_BATCH // world_size
    losses = []
    for noisy, clean in batches:
        part = slice(rank * share, (rank + 1) * share)
        loss = training_step(model, optimizer, noisy[part], clean[part])
        if world_size > 1:
            value = torch.tensor([loss], dtype=torch.float64)
            dist.all_reduce(value)
            loss = float(value) / world_size
        losses.append(loss)
    return losses


def _worker(rank: int, world_size: int, port: int, bias: bool, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    model = _model(bias)
    ddp = wrap_distributed(model, DistributedContext(rank, world_size))
    losses = _train(ddp, _batches(1), rank=rank, world_size=world_size)
    unsynchronize_batch_norm(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        probe = model.train()(_batches(1)[0][0])  # training mode: batch statistics
    torch.save({"losses": losses, "state": state, "probe": probe}, f"{out}.{rank}")
    del ddp  # its reducer holds the group's work: gone before the group is
    shutdown_distributed()


@pytest.mark.parametrize("bias", [False, True], ids=["bias-free", "bias"])
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path, bias):
    single_model = _model(bias)
    single_losses = _train(single_model, _batches(1))

    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(2, _free_port(), bias, out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]

    # Same loss trajectory as one process on the concatenated batch (float round-off:
    # reductions run in another order), and the processes hold identical weights.
    np.testing.assert_allclose(ranks[0]["losses"], single_losses, rtol=1e-4)
    reference = single_model.state_dict()
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
        # A convolution bias followed by batch norm has zero gradient in exact arithmetic;
        # Adam turns the round-off into full-size steps, so it (and the running mean it
        # feeds) depends on the summation order. The network's output does not.
        cancelled = key.startswith("hidden_layer_list.") and key.endswith(".bias")
        if not (cancelled or key.endswith("running_mean")):
            torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-5, msg=key)
    single_model.train()
    with torch.no_grad():
        torch.testing.assert_close(
            ranks[0]["probe"], single_model(_batches(1)[0][0]), rtol=1e-4, atol=1e-5
        )
    # The losses moved: a trajectory, not a constant (the comparison above means something).
    assert single_losses[-1] < single_losses[0]


def _image_folder(folder: Path, count: int = 4) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for index in range(count):
        Image.fromarray((rng.random((29, 33)) * 255).astype(np.uint8)).save(
            folder / f"img{index}.png"
        )
    return folder


def test_torchrun_trains_and_resumes_with_two_processes(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to this Python")
    data = _image_folder(tmp_path / "data")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'arch = "dncnn"\narch_options = {{num_layers = 3, hidden = 4}}\n'
        f'data_dir = "{data}"\nval_dir = "{data}"\nval_images = 1\nval_sigmas = [25.0]\n'
        "patch_size = 16\nbatch_size = 4\nsteps = 4\ncheckpoint_every = 2\nval_every = 2\n"
        'device = "cpu"\nthreads = 1\ntensorboard = false\n'
    )
    command = [
        str(torchrun),
        "--nproc_per_node=2",
        "--master_port",
        str(_free_port()),
        "-m",
        "filterscope.cli.main",
        "train",
        "--recipe",
        str(recipe),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    model = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert model.card["training"]["processes"] == 2
    assert model.card["training"]["steps"] == 4
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert len(state["generators"]) == 2  # each process's own data stream is saved
    assert not torch.equal(state["generators"][0]["patch"], state["generators"][1]["patch"])

    # Longer run resumed from the 2-process checkpoint, with the run's own recipe.
    resume = command[:-5] + ["--out", str(tmp_path / "run"), "--resume", "--steps", "6"]
    resume += ["--no-progress"]
    done = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["training"]["steps"] == 6
