"""How the CLI reports a failure: one `error: ...` line, never a traceback unless `-v` was given.

:class:`~mimzoo.errors.MimzooError` carries its own message. An ``OSError`` from writing a file is
turned into a line that says which path and what to do (full disk, read-only folder, a file where a
folder should be). Anything else is a bug: one line naming the exception and `-v`.
"""

from __future__ import annotations

import errno
import os
import traceback
from pathlib import Path

import click

from ..errors import MimzooError

INTERRUPTED = 130  # the shell's code for a SIGINT-ended process
BUG = 1  # exit code of an unexpected exception (same as a user error: scripts test for non-zero)


def os_error_message(e: OSError) -> str:
    """One line for an OSError a user can act on: the path, what went wrong, and the fix.

    >>> os_error_message(OSError(errno.ENOSPC, "No space left on device", "/data/out/model.onnx"))
    'no space left on device writing /data/out/model.onnx; free space or choose another -o'
    """
    path = e.filename if e.filename is not None else e.filename2
    where = f" {path}" if path is not None else ""
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return f"no space left on device writing{where or ' the output'}; free space or choose another -o"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        return f"{path or 'the output'} is not writable ({why}); choose another -o or make it writable"
    if e.errno == errno.ENOTDIR:
        blocker = file_in_the_way(Path(path)) if path is not None else None
        under = f"under the file {blocker}" if blocker is not None else "under a file"
        return f"{path or 'the path'} is {under}, not a folder; choose another -o (or move that file)"
    if e.errno == errno.ENOENT:
        return f"{path or 'a file'} does not exist; check the path"
    if e.errno == errno.EISDIR:
        return f"{path} is a folder where a file was expected; choose a file path"
    return f"{e.strerror or e}{' (' + str(path) + ')' if path is not None else ''}; rerun with -v for the traceback"


def file_in_the_way(path: Path) -> Path | None:
    """The nearest ancestor of `path` (or `path` itself) that exists and is not a folder."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return None if p.is_dir() else p
    return None


def bug_message(e: BaseException, verbose: bool = False) -> str:
    """The line for an exception mimzoo did not expect (a bug, or a case it should name better)."""
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    what = f"{first[:300]} " if first else ""
    hint = "the traceback is above; please report it" if verbose else "rerun with -v for the traceback"
    return f"{what}({type(e).__name__}); {hint}"


def report(e: BaseException, verbose: bool) -> int:
    """Print the failure as `error: ...` on stderr (after the traceback with -v); return the exit code."""
    if isinstance(e, KeyboardInterrupt):
        click.echo(f"\ninterrupted: {e}" if str(e) else "\ninterrupted", err=True)  # e.g. what a run kept
        return INTERRUPTED
    if verbose and not isinstance(e, MimzooError):
        traceback.print_exception(e)
    if isinstance(e, MimzooError):
        line, code = str(e), e.exit_code
    elif isinstance(e, OSError):
        line, code = os_error_message(e), 1
    else:
        line, code = bug_message(e, verbose), BUG
    click.echo(f"error: {line}", err=True)
    return code
