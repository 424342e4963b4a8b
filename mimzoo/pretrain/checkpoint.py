"""Training checkpoints: model, optimiser, scheduler, scaler, RNG states and step, in one file.

``<run>/checkpoints/last.pt`` is written atomically (temp file + rename): a process killed at any
moment leaves the previous complete checkpoint. It is read back with
``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickle.
State dicts are full (unsharded) and keyed by parameter name, gathered with
``torch.distributed.checkpoint.state_dict`` so DDP, FSDP and single-process runs read each
other's checkpoints.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import atomic_file
from ..errors import MimzooError

FORMAT = 1
LAST = "last.pt"


class CheckpointError(MimzooError):
    """A checkpoint is missing, unreadable, or from another run configuration."""


def _options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Unsharded model and optimiser state dicts on the CPU (a collective under FSDP: all ranks call it)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    return get_state_dict(model, optimizer, options=_options())


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optim_sd: dict) -> None:
    """The model strictly; the optimiser without requiring state for every parameter: one that has had no
    gradient yet (iBOT's prototypes in the first epoch) has none, in the checkpoint as in the live run."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, model_sd, options=_options())
    lenient = StateDictOptions(full_state_dict=True, cpu_offload=True, strict=False)
    set_optimizer_state_dict(model, optimizer, optim_sd, options=lenient)
    # torch fills a fresh optimiser's state with one zero-gradient step before loading; a parameter the
    # checkpoint has no state for must start without any, as it would have in the run that saved it
    saved = optim_sd.get("state", {})
    for name, param in model.named_parameters():
        fqn = name.replace("_orig_mod.", "").removeprefix("module.")
        if fqn not in saved:
            optimizer.state.pop(param, None)


def rng_state() -> dict[str, Any]:
    """This process's random number generator states (torch CPU/CUDA, Python, NumPy) as plain data."""
    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(gauss)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        _set_cuda_rng_states(list(state["cuda"]))


def _set_cuda_rng_states(saved: list[torch.Tensor]) -> None:
    """Restore each GPU's generator; a checkpoint from another number of GPUs restores those that match."""
    count = torch.cuda.device_count()
    if len(saved) != count:
        logging.getLogger(__name__).warning(
            "the checkpoint holds the RNG states of %d GPU(s) and %d are visible now: restored %d, random draws "
            "on the others differ from the original run", len(saved), count, min(len(saved), count))
    torch.cuda.set_rng_state_all(saved[:count])


def save(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically."""
    path = Path(path)
    with atomic_file(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (weights-only unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; run without --resume to start from scratch")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"cannot read checkpoint {path} ({e}); delete it and start again without --resume") from e
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is checkpoint format {data.get('format')}, this mimzoo reads {FORMAT}")
    return data
