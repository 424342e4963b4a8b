"""Range checks of evaluation settings, run before any work, with messages that name the option."""

from __future__ import annotations

import math
from typing import Any

from ..errors import MimzooError

# the CLI flag of a setting, where it has one (others are set with --set <task>_<name>=VALUE)
FLAGS = {"batch_size": "--batch-size", "epochs": "--epochs", "base_lr": "--lr", "k": "--k",
         "temperature": "--temperature", "workers": "--workers", "checkpoint_every": "--checkpoint-every",
         "layer_decay": "--layer-decay", "drop_path": "--drop-path"}


def at_least(task: str, minimum: float, *, strict: bool = False, flags: dict[str, str] | None = None,
             **values: Any) -> None:
    """Refuse a value below `minimum` (or equal to it when `strict`), or that is not a finite number.

    >>> at_least("linear", 1, batch_size=0)
    Traceback (most recent call last):
    mimzoo.errors.MimzooError: linear: batch_size must be at least 1, got 0; pass --batch-size N (or --set linear_batch_size=N)
    """
    for name, value in values.items():
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and math.isfinite(value) and (value > minimum if strict else value >= minimum):
            continue
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        flag = (flags or {}).get(name) or FLAGS.get(name)
        fix = f"pass {flag} N (or --set {task}_{name}=N)" if flag else f"pass --set {task}_{name}=N"
        raise MimzooError(f"{task}: {name} must be {bound}, got {value!r}; {fix}")
