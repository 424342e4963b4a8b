"""Output folders mimzoo owns: a marker file says so, and only such folders are ever replaced.

Every output folder mimzoo writes (export, pretraining run, publish folder, quickstart, model
folder) holds ``.mimzoo-output.json``: ``{"kind": ..., "mimzoo_version": ..., ...}``. For atomic
outputs it is written last, inside the temp folder, so its presence also says the folder is
complete. ``--overwrite`` (``overwrite=True``) replaces a folder only when it is mimzoo's output
of the same kind; a folder with anybody else's files is refused and left untouched.

Folders written before the marker existed stay replaceable when every entry in them has a name
that kind of output writes (an old export holding only export.json and model.onnx, say): a
folder with one foreign file is never replaced.

Temp entries are named ``.NAME.tmp-PID-XXXXXXXX``; :func:`sweep_temps` removes those whose process
is gone (killed runs), and :func:`sweep_stale` everything a dead writer of one output left.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import MimzooError

log = logging.getLogger(__name__)

MARKER = ".mimzoo-output.json"
# top-level names each kind of output writes (for folders that predate the marker)
KNOWN_NAMES: dict[str, frozenset[str]] = {
    "export": frozenset({"export.json", "model.onnx", "model.onnx.data", "model.engine", "engine.json"}),
    "model": frozenset({"config.json", "model.safetensors", "pytorch_model.bin", "README.md"}),
    "hub-folder": frozenset({"config.json", "model.safetensors", "pytorch_model.bin", "README.md", "onnx"}),
    "pretrain": frozenset({"config.json", "model.safetensors", "pretrain.safetensors", "checkpoints", "log.jsonl"}),
    "quickstart": frozenset({"quickstart.json", "eval.json", "onnx-fp32", "bench.md", "inputs", "reconstruction.png",
                             "hub-folder", "cache"}),
}
# .NAME.tmp-PID-TAG / .NAME.old-PID-TAG (older mimzoo wrote .NAME.tmp-TAG, without the PID)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?:(?P<pid>\d+)-)?[0-9a-f]+$")


class ForeignOutputError(MimzooError):
    """An output folder holds files mimzoo did not write (or another kind of mimzoo output)."""


def temp_name(name: str, kind: str, tag: str) -> str:
    """``.NAME.tmp-PID-TAG`` (kind "tmp") or ``.NAME.old-PID-TAG`` (kind "old")."""
    return f".{name}.{kind}-{os.getpid()}-{tag}"


def marker_text(kind: str, **info: Any) -> str:
    data = {"kind": kind, "mimzoo_version": __version__, **info}
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_marker(folder: Path, kind: str, **info: Any) -> None:
    """Write the marker into (temporary) `folder`; call it last: it says the folder is complete."""
    (folder / MARKER).write_text(marker_text(kind, **info), encoding="utf-8")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of `folder`, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def foreign_entries(folder: Path, kind: str) -> list[str]:
    """Entries of `folder` that stop mimzoo from replacing it as a `kind` output ([] means it may)."""
    marker = read_marker(folder)
    if marker is not None:
        return [] if marker["kind"] == kind else [f"{MARKER} of a {marker['kind']} output"]
    known = KNOWN_NAMES.get(kind, frozenset())
    return sorted(p.name for p in folder.iterdir() if p.name not in known and not _TEMP.match(p.name))


def check_replaceable(folder: str | Path, kind: str, *, flag: str = "--overwrite") -> None:
    """Refuse to replace `folder` unless it is mimzoo's own `kind` output (or absent/empty)."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir() or folder.is_symlink():
        raise ForeignOutputError(f"{folder} is not a folder mimzoo wrote; {flag} replaces only those: choose another -o")
    foreign = foreign_entries(folder, kind)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ForeignOutputError(f"{folder} holds files mimzoo did not write as a {kind} ({shown}); {flag} replaces "
                                 "only folders mimzoo wrote: choose another -o, or move them away yourself")


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_temps(folder: str | Path) -> list[str]:
    """Remove temp entries in `folder` whose writing process is gone; returns their names."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and m["pid"] and ".tmp-" in p.name and not pid_alive(int(m["pid"])):
            _remove(p)
            removed.append(p.name)
    if removed:
        log.warning("removed %d temp file(s) of killed runs in %s", len(removed), folder)
    return removed


def sweep_stale(target: str | Path) -> None:
    """Clean up what a dead writer of output `target` left beside it (call with its lock held).

    Temp folders go; a previous output that was moved aside (``.NAME.old-*``) while the target is
    missing (killed between the two renames of a swap) is put back, so nothing complete is lost.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    for p in sorted(target.parent.iterdir()):
        m = _TEMP.match(p.name)
        if not m or m["name"] != target.name:
            continue
        if ".old-" in p.name and not target.exists():
            os.replace(p, target)
            log.warning("restored %s from %s (a run was killed while replacing it)", target, p.name)
        else:
            _remove(p)
            log.warning("removed %s, left by a killed run", p)
