"""The wheel a user installs: LICENSE, the release recipes, the bundled model, the plugins, metadata for PyPI.

Issue 14 item 8. The wheel is built from a clean copy of the sources (no stale build/ folder, no race with
another build in the repository), without installing anything: a few seconds.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, run_cli

from mimzoo.hub.recipe import RecipeError, load_recipe
from mimzoo.hub.shipped import SHIPPED, resolve_recipe, shipped_recipes

PLUGINS = sorted(p.name for p in (REPO / "plugins").iterdir() if p.name.startswith("mimzoo_") and p.is_dir())


def test_shipped_recipes_are_exact_copies_of_exports():
    source = {p.name: p.read_bytes() for p in (REPO / "exports").glob("*.toml")}
    shipped = {p.name: p.read_bytes() for p in SHIPPED.glob("*.toml")}
    fix = "run: python -c 'from mimzoo.hub.shipped import sync_shipped; print(sync_shipped())'"
    assert sorted(shipped) == sorted(source), fix
    assert [n for n in source if source[n] != shipped[n]] == [], fix


def test_release_takes_a_model_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository, as from a wheel
    assert resolve_recipe("mae-vit-digits") == SHIPPED / "mae-vit-digits.toml"
    assert load_recipe(resolve_recipe("mae-vit-digits")).model == "mae-vit-digits"
    assert {"mae-vit-b", "mae-vit-digits"} <= set(shipped_recipes())
    with pytest.raises(RecipeError, match=r"ships with mimzoo: run `mimzoo release mae-vit-digits`"):
        resolve_recipe("exports/mae-vit-digits.toml")
    with pytest.raises(RecipeError, match="no shipped recipe for a model of that name; .* one of: mae-vit-b,"):
        resolve_recipe("mae-vit-q")
    mine = tmp_path / "mine.toml"
    mine.write_text("x")
    assert resolve_recipe(mine) == mine and resolve_recipe("mine.toml") == Path("mine.toml")  # files as given


def test_cli_release_errors_name_the_fix(tmp_path):
    code = ("import os, sys; os.chdir(sys.argv[1]); from mimzoo.cli.main import main; "
            "sys.argv = ['mimzoo', 'release', sys.argv[2], '--dry-run', '-o', 'out']; main()")
    for spec, expected in (("exports/mae-vit-digits.toml", "run `mimzoo release mae-vit-digits`"),
                           ("mae-vit-q", "no shipped recipe for a model of that name")):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path), spec], capture_output=True, text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
        assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("mimzoo", "plugins"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    out = root / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                        str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("mimzoo-*.whl")
    return whl


def test_wheel_holds_license_recipes_model_and_plugins(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert z.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        assert b"Apache License" in z.read(f"{info}/licenses/LICENSE")
        for p in (REPO / "exports").glob("*.toml"):
            assert z.read(f"mimzoo/assets/exports/{p.name}") == p.read_bytes()
        for f in ("config.json", "model.safetensors", "pretrain.safetensors"):
            assert f"mimzoo/assets/mae-vit-digits/{f}" in names
        assert "mimzoo/py.typed" in names
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        for plugin in PLUGINS:
            assert f"{plugin}/__init__.py" in names and f"{plugin}:METHOD" in entry_points
        assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "exports/")) or "__pycache__" in n]


def test_wheel_metadata_is_ready_for_the_index(wheel):
    """What `twine check` and PyPI read: PEP 639 license, a markdown long description, classifiers, URLs."""
    with zipfile.ZipFile(wheel) as z:
        info = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(info))
    assert meta["Metadata-Version"] in ("2.4", "2.5") and meta["Name"] == "mimzoo" and meta["Version"]
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip() == (REPO / "README.md").read_text(encoding="utf-8").strip()
    classifiers = meta.get_all("Classifier")
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression says it
    for prefix in ("Programming Language :: Python :: 3.1", "Operating System ::", "Topic ::", "Development Status ::"):
        assert any(c.startswith(prefix) for c in classifiers), prefix
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Source", "Issues", "Documentation"} <= set(urls) and all(u.startswith("https://") for u in urls.values())
    assert meta["Requires-Python"] == ">=3.10" and meta["Keywords"] and meta["Summary"]


def test_the_bundled_release_recipe_runs_from_the_cli_by_name(tmp_path):
    """`mimzoo release mae-vit-digits` outside the repository reaches its gates (the full dry run is checked
    from an installed wheel in the issue's note; here only that the name resolves through the CLI)."""
    r = run_cli("release", "mae-vit-digits", "--dry-run")  # -o is missing: refused before any work
    assert r.returncode != 0 and "-o" in r.stderr and "no shipped recipe" not in r.stderr, r.stderr
