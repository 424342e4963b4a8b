"""Running under torchrun unchanged: one small view of the process group.

Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) everything is a single process and
no process group is created. Under torchrun the group is created on first use: NCCL when the
processes run on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .._torchrun import choose_device, launch_from_env, visible_cuda_count

log = logging.getLogger(__name__)
_CREATED_HERE = False  # whether mimzoo created the process group (and so should destroy it)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int  # global rank, 0 in a single process
    world: int  # number of processes
    local_rank: int  # rank on this machine (picks the GPU)
    device: torch.device  # where this process computes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of `t` over the processes (a new tensor on t's device)."""
        if self.world == 1:
            return t.clone()
        out = t.detach().to(self._comm_device, copy=True)
        dist.all_reduce(out)
        return out.to(t.device)

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every process's rows of `t`, concatenated in rank order (row counts may differ)."""
        if self.world == 1:
            return t
        dev = self._comm_device
        n = torch.tensor([t.shape[0]], device=dev)
        sizes = [torch.zeros_like(n) for _ in range(self.world)]
        dist.all_gather(sizes, n)
        rows = [int(s.item()) for s in sizes]
        padded = t.new_zeros((max(rows), *t.shape[1:]), device=dev)
        padded[: t.shape[0]] = t.to(dev)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:r] for p, r in zip(parts, rows)]).to(t.device)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Small picklable objects (RNG states, counts) from every process, in rank order."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every process's `module` (e.g. random init)."""
        if self.world == 1:
            return
        with torch.no_grad():
            for t in module.state_dict().values():
                buf = t.to(self._comm_device)
                dist.broadcast(buf, src=0)
                if buf is not t:
                    t.copy_(buf)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def get_dist(device: str | torch.device | None = None) -> Dist:
    """The current process's :class:`Dist`, creating the process group under torchrun.

    Args:
        device: "cpu", "cuda", "cuda:1", a torch.device, or None/"auto" (the local GPU when there is one).

    >>> get_dist().world  # doctest: +SKIP
    1
    """
    launch = launch_from_env()
    rank, world = launch.rank, launch.world
    dev = torch.device(choose_device(None if device is None else str(device), launch, visible_cuda_count()))
    if world > 1 and not dist.is_initialized():
        global _CREATED_HERE
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend)
        _CREATED_HERE = True
        log.info("process group: %s, rank %d of %d", backend, rank, world)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Dist(rank=rank, world=world, local_rank=launch.local_rank, device=dev)


def shutdown() -> None:
    """Destroy the process group if mimzoo created it (the CLI calls this when it is done)."""
    global _CREATED_HERE
    if _CREATED_HERE and dist.is_initialized():
        dist.destroy_process_group()
    _CREATED_HERE = False
