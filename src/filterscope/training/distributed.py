"""Training on several processes: DistributedDataParallel plus synchronised batch norm.

``torchrun --nproc_per_node=N filterscope train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and joins the process group (gloo on
CPU, NCCL on GPU). Each process trains on its own shard of the images with
``batch_size / N`` patches per step; gradients are averaged by DDP, and the batch-norm
statistics are reduced over all processes by :func:`synchronize_batch_norm`, so one step
of N processes is the step one process would take on the concatenated global batch
(up to float round-off). PyTorch's own ``SyncBatchNorm`` needs a GPU, and it does not
know the bias-free norm, hence the small replacements here.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InputError
from ..nn.norm import BFBatchNorm2d


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder, the log and the progress bar."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; one GPU per local rank."""
    if name not in ("auto", "cpu", "cuda"):
        raise InputError(f"device: must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device: cuda was asked for but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Returns a single-process context otherwise. The backend is NCCL when this process
    trains on a GPU and gloo on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, torch_device)


def shutdown_distributed() -> None:
    """Leave the process group once every process got here (a barrier first: no
    process tears down its connections while another still reduces over them)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over processes (the backward pass sums the gradients too)."""
    # The only all-reduce with a backward pass in torch 2.13; it warns that it is
    # deprecated in favour of functional collectives, which have none.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(x, op=dist.ReduceOp.SUM)


def _global_mean_and_var(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel mean and biased variance over batch and space of every process."""
    local_count = x.shape[0] * x.shape[2] * x.shape[3]
    count = torch.tensor([float(local_count)], device=x.device)
    dist.all_reduce(count)
    total = int(count.item())
    mean = _all_reduce_sum(x.sum(dim=(0, 2, 3))) / total
    # Two passes (mean first) keep the variance accurate in float32.
    centred = x - mean.view(1, -1, 1, 1)
    var = _all_reduce_sum((centred * centred).sum(dim=(0, 2, 3))) / total
    return mean, var, total


class SyncBFBatchNorm2d(BFBatchNorm2d):
    """:class:`~filterscope.nn.BFBatchNorm2d` whose training statistics span all processes."""

    def _batch_variance(self, x: torch.Tensor) -> torch.Tensor:
        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return super()._batch_variance(x)
        _, var_biased, total = _global_mean_and_var(x)
        return var_biased * total / max(total - 1, 1)  # unbiased, as the local layer


class SyncBatchNorm2dCPU(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics span all processes, on any device."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        mean, var_biased, total = _global_mean_and_var(x)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var_biased * total / max(total - 1, 1)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased.detach())
                self.num_batches_tracked.add_(1)
        shape = (1, -1, 1, 1)
        y = (x - mean.view(shape)) / torch.sqrt(var_biased.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def synchronize_batch_norm(model: nn.Module) -> nn.Module:
    """Swap every batch norm of ``model`` (in place) for its synchronised version.

    Parameters and buffers are kept (the classes differ only in ``forward``), so state
    dicts and checkpoints are unchanged. Outside a process group, or in eval mode, the
    layers behave exactly as the originals.
    """
    for module in model.modules():
        if type(module) is BFBatchNorm2d:
            module.__class__ = SyncBFBatchNorm2d
        elif type(module) is nn.BatchNorm2d:
            module.__class__ = SyncBatchNorm2dCPU
    return model


def unsynchronize_batch_norm(model: nn.Module) -> nn.Module:
    """Undo :func:`synchronize_batch_norm` (before saving or inference)."""
    for module in model.modules():
        if type(module) is SyncBFBatchNorm2d:
            module.__class__ = BFBatchNorm2d
        elif type(module) is SyncBatchNorm2dCPU:
            module.__class__ = nn.BatchNorm2d
    return model


def wrap_distributed(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``model`` with synchronised batch norms inside DistributedDataParallel."""
    synchronize_batch_norm(model)
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[context.device.index] if context.device.type == "cuda" else None,
        # The synchronised norms keep the buffers equal; no broadcast before each step.
        forward_sync_buffers=False,
    )


def average_over_processes(value: float, context: DistributedContext) -> float:
    """Mean of a per-process number (e.g. the loss of the local batch) over processes."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def broadcast_object(value, context: DistributedContext):
    """Rank 0's ``value`` on every process (e.g. a validation score deciding the lr)."""
    if not context.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


__all__ = [
    "DistributedContext",
    "SyncBFBatchNorm2d",
    "SyncBatchNorm2dCPU",
    "average_over_processes",
    "broadcast_object",
    "init_distributed",
    "resolve_device",
    "shutdown_distributed",
    "synchronize_batch_norm",
    "unsynchronize_batch_norm",
    "wrap_distributed",
]
