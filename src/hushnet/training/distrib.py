"""Everything data-parallel in one place (as facebookresearch/denoiser's ``distrib.py``).

Under ``torchrun`` each process trains on its own ``batch_size`` items per step (the effective batch
is ``batch_size * WORLD_SIZE``); gradients are averaged by DDP, and what is logged is averaged here.
Without ``torchrun`` every function is a no-op for one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int]:
    """(rank, world size), joining the process group torchrun set up (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if torch.cuda.is_available() and os.environ.get("HUSHNET_BACKEND") != "gloo" else "gloo"
        )
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def is_main() -> bool:
    """Whether this process is the one that writes files and prints (rank 0, or the only process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def device_for(name: str, rank: int, world: int) -> torch.device:
    """The device of this process: one GPU per process under torchrun."""
    device = torch.device(name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    return device


def wrap(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """The module to call in the training step (DDP when there are several processes)."""
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def average(tensor: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of ``tensor`` over all processes (every process must call it)."""
    if world == 1:
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / world


def rank0_flag(value: bool, device: torch.device, world: int) -> bool:
    """Rank 0's ``value`` on every process (a decision all must take together, e.g. to stop)."""
    flag = torch.tensor([float(value)], device=device)
    if world > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()
