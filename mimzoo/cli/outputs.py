"""Output paths checked when the command starts, before any work: a path under a file, or in a folder
that cannot be written, is one line naming the fix instead of a traceback minutes later."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MimzooError
from .failure import file_in_the_way


def check_output(path: str | os.PathLike[str] | None, *, option: str = "-o", folder: bool = False) -> None:
    """Refuse an output `path` that cannot be written.

    Args:
        path: the file or folder the command will write (None: nothing to check).
        option: how the command names it in the message (``-o``, ``--cache-dir``).
        folder: True when `path` is a folder the command creates or fills.
    """
    if path is None or str(path) == "":
        return
    p = Path(path).expanduser()
    blocker = file_in_the_way(p.parent if not folder else p)
    if blocker is not None:
        what = "is a file" if blocker == p else f"is under the file {blocker}"
        raise MimzooError(f"{option} {path} {what}, not a folder; choose another {option} (or move that file)")
    if not folder and p.is_dir():
        raise MimzooError(f"{option} {path} is a folder; give a file path, e.g. {p / 'results.json'}")
    existing = next((a for a in (p, *p.parents) if a.exists()), None)
    mode = os.W_OK | os.X_OK if existing is not None and existing.is_dir() else os.W_OK
    if existing is not None and not os.access(existing, mode):
        where = "" if existing == p else f" (its folder {existing})"
        raise MimzooError(f"{option} {path}{where} is not writable; choose another {option} or make it writable")
