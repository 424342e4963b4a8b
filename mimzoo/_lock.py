"""One writer per output: an OS lock on a hidden file beside the output folder.

``output_lock("runs/mae")`` holds ``fcntl.flock`` on ``runs/.mae.lock`` for as long as the block
runs. A second process asking for the same output fails at once with a message naming the first
one's PID. The kernel drops the lock when its holder dies (even by SIGKILL), so a killed run never
leaves a stale lock: the next run takes the lock, finds the dead run's temp files, and removes them.
The lock file itself is removed when the block ends; one a killed run leaves is reused.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import MimzooError

_HELD: dict[str, int] = {}  # lock file -> depth, for this process (nested locks on one output are fine)
_GUARD = threading.Lock()


class OutputLockedError(MimzooError):
    """Another process is writing the same output folder."""


def lock_path(target: str | Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def output_lock(target: str | Path) -> Iterator[Path]:
    """Hold the lock of output `target` (a folder or file path) for the block; yields the lock file.

    Raises:
        OutputLockedError: another live process holds it.
    """
    path = lock_path(target)
    key = str(path.absolute())
    with _GUARD:
        if key in _HELD:  # already ours (e.g. quickstart -> export): nest
            _HELD[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield path
        finally:
            with _GUARD:
                _HELD[key] -= 1
        return
    made = _missing_parents(path)
    fd = _acquire(path, Path(target))
    with _GUARD:
        _HELD[key] = 1
    try:
        yield path
    finally:
        with _GUARD:
            del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting process re-checks the inode
        os.close(fd)
        for folder in made:  # folders made only to hold the lock file, if nothing else went into them
            with contextlib.suppress(OSError):
                folder.rmdir()


def _missing_parents(path: Path) -> list[Path]:
    """The folders above `path` that do not exist yet, deepest first."""
    out = []
    for parent in path.parents:
        if parent.exists():
            break
        out.append(parent)
    return out


def _acquire(path: Path, target: Path) -> int:
    try:
        import fcntl
    except ImportError:  # not POSIX: no OS lock to take
        return os.open(os.devnull, os.O_RDONLY)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MimzooError(f"cannot create the folder of {target} ({e.strerror}); choose another -o") from e
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise MimzooError(f"cannot write beside {target} ({e.strerror}: {path}); choose another -o "
                              "in a folder you can write") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputLockedError(f"{target} is being written by process {pid}; wait for it or choose another -o")
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by the previous holder between our open and our lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)
