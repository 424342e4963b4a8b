"""Where a process sits under torchrun, and which device it uses: plain data and rules, no torch.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in every process it starts; process
``LOCAL_RANK`` on a machine owns GPU ``cuda:LOCAL_RANK``. Both training (``pretrain/distributed``)
and evaluation (``eval/dist``) choose their device here, so they follow one rule:

- ``--device cuda`` (or no ``--device`` with a GPU present) means ``cuda:LOCAL_RANK``;
- an explicit ``cuda:N`` in a multi-process run must equal ``LOCAL_RANK``, since every rank would
  otherwise land on GPU N; choose GPUs with ``CUDA_VISIBLE_DEVICES`` instead;
- a single process may name any visible GPU.

>>> choose_device("cuda", Launch(rank=1, world=2, local_rank=1), cuda_count=2)
'cuda:1'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import MimzooError

DEVICE_HINT = "use cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun job (one plain process: rank 0 of 1)."""

    rank: int  # global rank (RANK)
    world: int  # number of processes (WORLD_SIZE)
    local_rank: int  # rank on this machine (LOCAL_RANK): the GPU index it owns

    @property
    def multi(self) -> bool:
        return self.world > 1


def launch_from_env(env: Mapping[str, str] | None = None) -> Launch:
    """The torchrun variables of `env` (default: os.environ), checked to be whole numbers."""
    env = os.environ if env is None else env
    values = {}
    for key, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = env.get(key, "").strip()
        try:
            values[key] = int(raw) if raw else default
        except ValueError:
            raise MimzooError(f"{key}={raw!r} is not a whole number; launch with torchrun, "
                              f"or unset {key} for one process") from None
        if values[key] < 0:
            raise MimzooError(f"{key}={raw} is negative; launch with torchrun, or unset {key} for one process")
    return Launch(rank=values["RANK"], world=max(values["WORLD_SIZE"], 1), local_rank=values["LOCAL_RANK"])


def choose_device(device: str | None, launch: Launch, cuda_count: int) -> str:
    """The device this process computes on, as a string torch.device accepts.

    Args:
        device: "cpu", "cuda", "cuda:N", "auto"/None (the local GPU when there is one), or another torch
            device type (e.g. "mps") for a single process.
        launch: from :func:`launch_from_env`.
        cuda_count: CUDA GPUs visible to this process (0 when none).
    """
    want = (device or "auto").strip().lower()
    if want == "cpu":
        return "cpu"
    if want == "auto":
        return _local_gpu(launch, cuda_count, "auto") if cuda_count else "cpu"
    if want == "cuda":
        return _local_gpu(launch, cuda_count, "cuda")
    if want.startswith("cuda:"):
        return _explicit_gpu(want, launch, cuda_count)
    if launch.multi:
        raise MimzooError(f"--device {device} under torchrun ({launch.world} processes) is not supported; "
                          "use --device cuda (each rank takes cuda:LOCAL_RANK) or --device cpu")
    return _other_device(want)


def _local_gpu(launch: Launch, cuda_count: int, asked: str) -> str:
    if cuda_count == 0:
        raise MimzooError(f"--device {asked} needs a CUDA GPU, and none is visible; use --device cpu "
                          "(`mimzoo doctor --backend torch-cuda` says why)")
    if launch.local_rank >= cuda_count:
        raise MimzooError(f"LOCAL_RANK={launch.local_rank} but only {cuda_count} CUDA GPU(s) are visible; "
                          f"launch at most {cuda_count} processes per machine (torchrun --nproc-per-node "
                          f"{cuda_count}), or use --device cpu")
    return f"cuda:{launch.local_rank}"


def _explicit_gpu(want: str, launch: Launch, cuda_count: int) -> str:
    try:
        index = int(want.partition(":")[2])
    except ValueError:
        raise MimzooError(f"--device {want} is not a device; {DEVICE_HINT}") from None
    if index < 0:
        raise MimzooError(f"--device {want} is not a device; {DEVICE_HINT}")
    refuse_conflicting_index(index, launch)
    if cuda_count == 0:
        raise MimzooError(f"--device {want} needs a CUDA GPU, and none is visible; use --device cpu "
                          "(`mimzoo doctor --backend torch-cuda` says why)")
    if index >= cuda_count:
        raise MimzooError(f"--device {want}, but only {cuda_count} CUDA GPU(s) are visible "
                          f"(cuda:0 to cuda:{cuda_count - 1}); use one of those, or --device cuda")
    return f"cuda:{index}"


def refuse_conflicting_index(index: int | None, launch: Launch | None = None, option: str = "--device") -> None:
    """Refuse ``cuda:N`` with N != LOCAL_RANK in a multi-process run (every rank would share GPU N).
    Checked before anything about the hardware: the command line is wrong on any machine."""
    launch = launch or launch_from_env()
    if index is not None and launch.multi and index != launch.local_rank:
        raise MimzooError(f"{option} cuda:{index} conflicts with LOCAL_RANK={launch.local_rank} under torchrun "
                          f"({launch.world} processes): every rank would use GPU {index}; use {option} cuda "
                          "(each rank takes cuda:LOCAL_RANK), and CUDA_VISIBLE_DEVICES to choose the GPUs")


def _other_device(want: str) -> str:
    import torch

    try:
        return str(torch.device(want))
    except RuntimeError:
        raise MimzooError(f"unknown device '{want}'; {DEVICE_HINT}") from None


def visible_cuda_count() -> int:
    """CUDA GPUs this process can use (0 without a GPU or with a CPU-only torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
