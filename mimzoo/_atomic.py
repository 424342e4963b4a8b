"""Atomic writes: a file or folder appears complete under its final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._lock import output_lock
from ._outputs import check_replaceable, sweep_stale, temp_name, write_marker


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temp_name(target.name, "tmp", uuid.uuid4().hex[:8]))  # PID inside: see sweep_temps
    try:
        yield tmp
        default_mode(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, overwrite: bool = False, kind: str = "output",
               info: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target` that becomes `target` if the block succeeds.

    The output's lock is held throughout (a second writer fails at once, see :mod:`mimzoo._lock`),
    and what a killed writer left beside `target` is cleaned up first. The marker of a `kind`
    output (with `info`, read when the block ends: the block may add to it) is written last,
    inside the temp folder. An existing `target` is kept until the new folder is complete, then
    swapped out and removed; with `overwrite` it must be mimzoo's own `kind` output
    (:func:`~mimzoo._outputs.check_replaceable`), else nothing is touched.
    """
    target = Path(target)
    with output_lock(target):
        sweep_stale(target)
        if target.exists() and not overwrite:
            raise FileExistsError(target)
        check_replaceable(target, kind)
        tag = uuid.uuid4().hex[:8]
        tmp = target.with_name(temp_name(target.name, "tmp", tag))
        old = target.with_name(temp_name(target.name, "old", tag))
        tmp.mkdir()
        try:
            yield tmp
            write_marker(tmp, kind, **(info or {}))
            for path in [tmp, *tmp.rglob("*")]:
                default_mode(path)
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)


def default_mode(path: Path) -> None:
    """Give `path` the mode a plain ``open()`` would (umask applied): some writers, safetensors
    among them, create 0600 files, and a model or export folder is meant to be shared."""
    if path.is_symlink() or not path.exists():
        return
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
