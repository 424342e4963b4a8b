"""``mimzoo eval --save-head DIR``: which eval tasks train a head that can be saved, and saving it.

No torch at import (the CLI checks the flags before any work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MimzooError

HEAD_TASKS = {"linear": "linear", "finetune": "finetune", "seg-linear": "seg-linear"}  # eval task -> head kind


def check_save_head(tasks: list[str], folder: str | Path | None, overwrite: bool) -> None:
    """Refuse ``--save-head`` before any work: one task at a time, one that trains a head, a writable folder."""
    if folder is None:
        return
    if len(tasks) != 1:
        raise MimzooError(f"--save-head saves one head, but {len(tasks)} tasks were asked for ({', '.join(tasks)}): "
                          f"run one --task ({', '.join(HEAD_TASKS)}) with --save-head")
    if tasks[0] not in HEAD_TASKS:
        raise MimzooError(f"--task {tasks[0]} has no head that mimzoo can save; --save-head works with "
                          f"--task {', --task '.join(HEAD_TASKS)}")
    from .._outputs import check_replaceable

    path = Path(folder)
    if path.exists() and not overwrite:
        raise MimzooError(f"{path} exists; pass --overwrite to replace the head saved there, or choose another "
                          "--save-head folder")
    check_replaceable(path, "head")


def save_eval_head(folder: str | Path, task: str, encoder: Any, trained: dict[str, Any], *, labels: tuple[str, ...],
                   dataset: str, metrics: dict[str, float], overwrite: bool = False) -> Path:
    """Write the head eval trained for `task` (``trained``: "head", and "backbone" / "head_args" where they apply)."""
    from .folder import make_spec, save_head

    if "head" not in trained:
        raise MimzooError(f"--task {task} returned no trained head to save; this is a mimzoo bug: please report it")
    backbone = trained.get("backbone")
    spec = make_spec(encoder, HEAD_TASKS[task], labels, dataset=dataset, metrics=metrics,
                     head_args=trained.get("head_args"), finetuned=backbone)
    return save_head(folder, trained["head"].float().cpu(), spec, backbone=backbone, overwrite=overwrite)
