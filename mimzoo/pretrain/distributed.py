"""torchrun processes: process group, device, DDP / FSDP wrapping, collectives.

Launched with ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set), training joins a process
group: NCCL on GPUs, gloo on CPUs. Across machines, torchrun's usual rendezvous options apply
(``--nnodes``, ``--rdzv-endpoint``). Without those variables it is one plain process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .._torchrun import choose_device, launch_from_env, visible_cuda_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits."""

    rank: int  # global rank
    world: int  # number of processes
    local_rank: int  # rank on this machine (GPU index)
    device: torch.device  # the device this process trains on

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str | None = None) -> DistInfo:
    """Join the torchrun process group if there is one, and pick the device.

    Args:
        device: "cpu", "cuda" (this rank's GPU, cuda:LOCAL_RANK), "cuda:N" (one process, or N equal
            to LOCAL_RANK under torchrun) or None (the local GPU when there is one).
    """
    launch = launch_from_env()
    dev = torch.device(choose_device(device, launch, visible_cuda_count()))  # before the group: errors are cheap
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if launch.multi and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        log.info("process %d of %d on %s (%s)", launch.rank, launch.world, dev, dist.get_backend())
    return DistInfo(rank=launch.rank, world=launch.world, local_rank=launch.local_rank, device=dev)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(value: float, info: DistInfo) -> float:
    """Sum of a float over all processes."""
    if info.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order (all processes get the list)."""
    if info.world == 1:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def wrap(objective: nn.Module, info: DistInfo, fsdp: bool = False) -> nn.Module:
    """DDP across processes, or FSDP (parameters sharded per transformer / ConvNeXt block) with ``fsdp``."""
    if fsdp:
        return _fully_shard(objective, info)
    if info.world == 1:
        return objective
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(objective, device_ids=ids, broadcast_buffers=False)


def _fully_shard(objective: nn.Module, info: DistInfo) -> nn.Module:
    """FSDP2: each block of the encoder (and of an EMA teacher, which shards alike) is its own unit."""
    if info.world == 1:
        log.warning("--fsdp with one process shards nothing; launch with torchrun --nproc-per-node N")
        return objective
    from torch.distributed.fsdp import fully_shard

    for module in _shard_units(objective):
        fully_shard(module)
    fully_shard(objective)
    return objective


def _shard_units(objective: nn.Module) -> list[nn.Module]:
    units: list[nn.Module] = []
    for owner in (objective.encoder, getattr(objective.target, "teacher", None)):
        if owner is None:
            continue
        blocks = getattr(owner, "blocks", None)
        if blocks is None and hasattr(owner, "stages"):
            blocks = [b for s in owner.stages for b in s.blocks]
        units.extend(list(blocks or []))
    return units


def unwrap(model: nn.Module) -> nn.Module:
    """The objective inside a DDP wrapper (FSDP2 modules are the objective itself)."""
    return getattr(model, "module", model)
