"""Test helpers: fake installed distributions, subprocess runners."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
# Environment in which any attempt to reach the network fails fast: the Hub endpoint and every proxy
# point at a closed port on this machine.
NO_NETWORK = {"HF_ENDPOINT": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "HTTPS_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


def make_distribution(root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write a real installed distribution (a .dist-info with entry_points.txt) plus its modules under `root`.

    `root` put on sys.path makes importlib.metadata see it exactly as pip would have installed it.
    """
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "[mimzoo.methods]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(eps)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


def run_py(code: str, *, env: dict[str, str] | None = None, pythonpath: list[Path] = (), cwd: Path | None = None):
    """Run Python code in a fresh interpreter (for import-time settings such as HF_HUB_OFFLINE)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update(env or {})
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env,
        cwd=cwd, timeout=300,
    )


def run_cli(*args: str, env: dict[str, str] | None = None, pythonpath: list[Path] = ()):
    """Run the installed `mimzoo` entry point as a user would."""
    code = "import sys; from mimzoo.cli.main import main; sys.argv = ['mimzoo'] + sys.argv[1:]; main()"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update(env or {})
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, timeout=300)
