"""The README stays true: its shell blocks run as written, offline; its tables come from the registry.

Fenced ```bash blocks are run (in order, in one fresh folder, every network route closed); ```sh
blocks are the ones that need what a test machine lacks (network, a GPU, your data, installing into
your environment) and must say so on their first line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from helpers import NO_NETWORK, REPO

INSTALL = {  # the set-up blocks' install steps: what CI itself just did before running the tests
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && ",
    "python3 -m venv .venv && .venv/bin/pip install -q -e \".[test]\" && ",
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def _commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_ci_runs_the_readme_test_command():
    test_cmd = _blocks("bash")[1].strip()
    assert test_cmd.startswith(tuple(INSTALL)) and test_cmd.endswith("pytest -q -n 2 --dist worksteal")
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_the_try_it_command_is_the_quickstart():
    try_cmd = _blocks("bash")[0].strip()
    assert try_cmd.startswith(tuple(INSTALL)) and try_cmd.endswith("mimzoo quickstart")


def test_blocks_that_are_not_run_say_why():
    for block in _blocks("sh"):
        assert block.startswith(("# needs", "# installs")), block.splitlines()[0]


def test_generated_tables_match_the_registry():
    spec = importlib.util.spec_from_file_location("sync_readme", REPO / "docs" / "sync_readme.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    text = (REPO / "README.md").read_text()
    assert text.count("<!-- generated: ") == 2
    assert sync.regenerate(text) == text, "README tables are stale: run `python docs/sync_readme.py`"
    assert "| mae-vit-b | MAE |" in text  # the table really holds the zoo


def _workspace(tmp_path: Path) -> Path:
    """A folder that looks like a fresh clone to the README's commands (they use exports/ and examples/)."""
    for name in ("exports", "examples"):
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    return tmp_path


def test_readme_shell_blocks_run_offline_as_written(tmp_path):
    bash = _blocks("bash")
    commands = []
    for i, block in enumerate(bash):
        if i == 1:  # the test command: this is it running
            continue
        for cmd in _commands(block):
            for prefix in INSTALL:
                cmd = cmd.removeprefix(prefix)
            commands.append(cmd.replace(".venv/bin/", ""))
    assert any(c.startswith("mimzoo quickstart") for c in commands) and len(commands) >= 12
    cwd = _workspace(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(NO_NETWORK, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               MIMZOO_CACHE=str(tmp_path / ".cache"))
    for cmd in commands:
        start = time.monotonic()
        r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        print(f"{time.monotonic() - start:6.1f}s  {cmd}")  # shown with -s or on failure: where the time goes
        assert r.returncode == 0, f"README command failed: {cmd}\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr, cmd
    assert (cwd / "mimzoo-quickstart" / "quickstart.json").is_file()
    assert (cwd / "hub-folder" / "README.md").is_file() and (cwd / "runs" / "d2v" / "config.json").is_file()
