"""One fault trial: run the real `mimzoo` CLI in a fresh process and check how it failed.

Every trial in tests/faults asserts the same four things a hostile or careless user relies on:
the exit code, the error's type (its one line), a message that names the fix, and no Python
traceback (unless `-v` was given). Helpers here also snapshot folders, so a trial can assert that
nothing half-written appeared and nothing foreign was removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import NO_NETWORK

CLI = "import sys; from mimzoo.cli.main import main; sys.argv = ['mimzoo'] + sys.argv[1:]; main()"


@dataclass(frozen=True)
class Outcome:
    rc: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def cli_env(env: dict[str, str] | None = None, *, cache: Path | None = None) -> dict[str, str]:
    """The environment of a trial: no network, no inherited HF_* or MIMZOO_* settings (hermetic)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MIMZOO_"))}
    full.update(NO_NETWORK)
    if cache is not None:
        full["MIMZOO_CACHE"] = str(cache / "mimzoo")
        full["HF_HOME"] = str(cache / "hf")
    full.update(env or {})
    return full


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300,
        cache: Path | None = None) -> Outcome:
    p = subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True,
                       env=cli_env(env, cache=cache), cwd=cwd, timeout=timeout)
    return Outcome(p.returncode, p.stdout, p.stderr)


def expect_error(out: Outcome, *, rc: int = 1, says: tuple[str, ...] = (), fix: tuple[str, ...] = ()) -> str:
    """Assert a clean user error: exit code `rc`, exactly one `error:` line, no traceback; the line
    contains every string of `says` (what went wrong) and of `fix` (what to do). Returns the line."""
    assert out.rc == rc, f"exit {out.rc} (wanted {rc})\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr + out.stdout, f"traceback shown without -v:\n{out.stderr}"
    lines = out.error_lines
    assert len(lines) == 1, f"want one error line, got {lines}\nstderr:\n{out.stderr}"
    line = lines[0]
    for s in (*says, *fix):
        assert s.lower() in line.lower(), f"{s!r} not in the error line: {line}"
    return line


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden ones too) with its bytes: compare before and after a trial."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def listing(root: Path) -> set[str]:
    """Every path under `root`, hidden temp folders included."""
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def kill_when(args: list[str], *, marker: str | None = None, path: Path | None = None, delay: float = 0.0,
              env: dict[str, str] | None = None, cwd: Path | None = None, cache: Path | None = None,
              timeout: float = 300) -> Outcome:
    """Start the CLI and SIGKILL it when `marker` appears in its output, or `path` exists, or after `delay`
    seconds (whichever is given first). Returns what it printed before it died."""
    p = subprocess.Popen([sys.executable, "-u", "-c", CLI, *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=cli_env(env, cache=cache), cwd=cwd)
    seen: list[str] = []
    start = time.monotonic()
    try:
        if marker is not None:
            assert p.stdout is not None
            for line in p.stdout:
                seen.append(line)
                if marker in line:
                    break
        elif path is not None:
            while not path.exists() and p.poll() is None:
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"{path} never appeared")
                time.sleep(0.01)
        else:
            time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        rest = p.communicate(timeout=timeout)[0] or ""
    finally:
        if p.poll() is None:
            p.kill()
    return Outcome(p.returncode, "".join(seen) + rest, "")
