"""The README's set-up commands stay true: CI runs the test command verbatim, the try-it command runs."""

from __future__ import annotations

import re

from helpers import REPO, run_cli, run_py


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = _bash_blocks()[1].strip()
    assert "pytest" in test_cmd
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_try_it_command_runs_offline(tmp_path):
    try_cmd = _bash_blocks()[0].strip()
    assert "mimzoo list" in try_cmd and "mimzoo.examples.first_steps" in try_cmd
    # the install step is what CI itself just did; run the rest as written
    assert run_cli("list").returncode == 0
    r = run_py(f"import sys; from mimzoo.examples.first_steps import main; sys.exit(main({str(tmp_path)!r}))",
               env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "identical embeddings" in r.stdout
    assert (tmp_path / "mae-vit-test" / "model.safetensors").is_file()


def test_cli_commands_in_readme_exist():
    block = _bash_blocks()[2]
    for line in block.strip().splitlines():
        args = line.split("#")[0].split()[1:]
        args = [a.strip("'") for a in args]
        r = run_cli(*args)
        assert r.returncode == 0, (line, r.stderr)
        assert "Traceback" not in r.stderr, line
