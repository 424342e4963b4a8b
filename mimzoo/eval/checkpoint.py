"""Fine-tuning checkpoints: written atomically every N steps, read back weights-only, resumed exactly.

A checkpoint holds the model, the optimizer and grad-scaler state, the step, every process's
RNG state (dropout and drop path draw from it) and the loss history. The data order needs no
state: it is a function of (seed, epoch, step). So a run resumed from step s takes exactly the
steps an uninterrupted run takes after s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_file
from .._outputs import sweep_temps
from ..errors import MimzooError
from .dist import Dist

log = logging.getLogger(__name__)
FILENAME = "checkpoint.pt"
FORMAT = 1


class CheckpointError(MimzooError):
    """A fine-tuning checkpoint cannot be used for this run."""


@dataclass
class TrainState:
    """Everything besides the tensors of model and optimizer that a resumed run needs."""

    step: int = 0  # optimizer steps taken
    done: bool = False  # training finished (a rerun only evaluates)
    history: list[float] = field(default_factory=list)  # mean training loss of each finished epoch
    epoch_loss: float = 0.0  # sum of step losses of the current epoch so far
    epoch_steps: int = 0  # steps of the current epoch so far


def save_checkpoint(run_dir: Path, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: Any, state: TrainState, dist: Dist) -> None:
    """Write ``run_dir/checkpoint.pt`` atomically (rank 0 writes; every rank contributes its RNG state)."""
    rng = dist.gather_objects(_rng_state())
    if dist.is_main:
        blob = {
            "format": FORMAT, "key": key, "world": dist.world, "rng": rng,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "state": {"step": state.step, "done": state.done, "history": list(state.history),
                      "epoch_loss": state.epoch_loss, "epoch_steps": state.epoch_steps},
        }
        with atomic_file(run_dir / FILENAME) as tmp:
            torch.save(blob, tmp)
        log.info("checkpoint at step %d in %s", state.step, run_dir)
    dist.barrier()


def load_checkpoint(run_dir: Path, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: Any, dist: Dist) -> TrainState | None:
    """Restore a run from ``run_dir/checkpoint.pt``; None when there is none.

    Raises:
        CheckpointError: the checkpoint belongs to another run (model, data or settings differ).
    """
    path = run_dir / FILENAME
    sweep_temps(run_dir)  # a checkpoint half-written by a killed run never took the name; its temp file goes
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: torch raises several types
        raise CheckpointError(f"{path} is unreadable ({type(e).__name__}); delete it, or start over with "
                              "--restart (resume=False)") from e
    if blob.get("format") != FORMAT or blob.get("key") != key:
        raise CheckpointError(f"{path} belongs to another fine-tuning run (other model, data or settings); "
                              "pass another --run-dir, or --restart (resume=False) to overwrite it")
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    scaler.load_state_dict(blob["scaler"])
    if blob["world"] == dist.world:
        _set_rng_state(blob["rng"][dist.rank])
    else:
        log.warning("checkpoint was written by %d processes, resuming with %d: random draws will differ",
                    blob["world"], dist.world)
    s = blob["state"]
    return TrainState(step=int(s["step"]), done=bool(s["done"]), history=[float(v) for v in s["history"]],
                      epoch_loss=float(s["epoch_loss"]), epoch_steps=int(s["epoch_steps"]))


def _rng_state() -> dict[str, Any]:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
