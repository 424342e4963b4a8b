"""Checking a device name before any work: an absent GPU is a one-line error, not a CUDA traceback."""

from __future__ import annotations

from typing import Any

from .._deps import require
from ..errors import MimzooError


def check_device(device: Any, option: str = "--device") -> None:
    """Refuse a device that does not exist here (``cuda`` without a usable GPU, ``cuda:3`` on a 2-GPU
    machine, a misspelt name). None and "auto" always pass: they pick the GPU when there is one.

    Args:
        device: "cpu", "cuda", "cuda:1", "mps", a torch.device, None or "auto".
        option: how the caller names the setting in the message ("--device", "device=").
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return
    torch = require("torch")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise MimzooError(f"{option} {device!s} is not a device; use cpu, cuda or cuda:N") from e
    if dev.type == "cuda":
        from .._torchrun import refuse_conflicting_index

        refuse_conflicting_index(dev.index, option=option)  # cuda:N vs LOCAL_RANK under torchrun: wrong anywhere
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise MimzooError(f"{option} {device!s}: no usable CUDA GPU here (torch {torch.__version__}, {build}); "
                              "use --device cpu, or run `mimzoo doctor` to see what is missing")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise MimzooError(f"{option} {device!s}: this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1}); "
                              "pick one of those")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MimzooError(f"{option} {device!s}: Apple's MPS is not available here; use --device cpu")
