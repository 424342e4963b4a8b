"""Nothing read from a file chooses code to import or call.

A model folder's ``pretrain.safetensors`` records its recipe; a hostile folder can name any
``module:attr`` there (``tempfile:mkdtemp``, ``os:system``). Names resolve only through the registry
(zoo models, methods, registered tokenizers, installed plugins' entry points); anything else is one
error line, and the named function never runs (a fresh TMPDIR stays empty, a marker never appears).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import mimzoo
from tests.faults.trial import expect_error, listing, run, snapshot

ASSETS = Path(mimzoo.__file__).parent / "assets" / "mae-vit-digits"


def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.new("RGB", (32, 32), (200, 200, 200)).save(path)
    return path


def made_by_mkdtemp(tmpdir: Path) -> set[str]:
    """Folders tempfile.mkdtemp() made in `tmpdir` (its names start with 'tmp'; torch keeps its own cache there)."""
    return {p for p in listing(tmpdir) if p.startswith("tmp")}


def crafted_folder(tmp_path: Path, target: dict, loss: str = "cross-entropy") -> Path:
    """The bundled digits model folder, its pretrain.safetensors' recipe rewritten to name `target`."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path / "hostile-model"
    shutil.copytree(ASSETS, folder)
    with safe_open(str(ASSETS / "pretrain.safetensors"), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    recipe = json.loads(meta["recipe"])
    recipe["target"].update(target)
    recipe["loss"]["kind"] = loss
    meta["recipe"] = json.dumps(recipe)
    save_file(tensors, str(folder / "pretrain.safetensors"), metadata=meta)
    return folder


@pytest.mark.parametrize("target,loss", [
    ({"kind": "discrete-tokens", "teacher": "tempfile:mkdtemp"}, "cross-entropy"),
    ({"kind": "discrete-tokens", "teacher": "os:system"}, "cross-entropy"),
    ({"kind": "teacher-features", "teacher": "hf-hub:evil/teacher"}, "mse"),
])
def test_reconstruct_never_resolves_names_from_the_model_folder(tmp_path, target, loss):
    folder = crafted_folder(tmp_path, target, loss)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    before = snapshot(folder)
    out = run("reconstruct", folder, _image(tmp_path), "-o", tmp_path / "pic.png", env={"TMPDIR": str(tmpdir)},
              cache=tmp_path / "cache")
    expect_error(out, says=(f"{target['kind']} target", "pictures need a pixel target"), fix=("pretrained on pixels",))
    assert made_by_mkdtemp(tmpdir) == set(), "a function named in the file ran (mkdtemp made a folder)"
    assert not (tmp_path / "pic.png").exists() and snapshot(folder) == before


def test_tokenizer_names_resolve_through_the_registry_only(tmp_path, monkeypatch):
    """The objective builder itself (a recipe from any source) refuses module paths; mkdtemp never runs."""
    import tempfile

    from mimzoo.pretrain.recipe import RecipeError, Target
    from mimzoo.pretrain.targets import build_target, register_tokenizer

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    enc = mimzoo.load("mae-vit-test", pretrained=False)
    for ref in ("tempfile:mkdtemp", "os:system", "mimzoo.pretrain.targets:HOGTarget"):
        with pytest.raises(RecipeError, match=f"'{ref}' is not a registered tokenizer .*register_tokenizer"):
            build_target(Target("discrete-tokens", teacher=ref), encoder=enc.model, preprocess=enc.preprocess,
                         patch=4, grid=(4, 4))
    assert made_by_mkdtemp(tmp_path) == set()
    # a registered name works, and so does the spelling older recipes used for the built-in one
    from mimzoo.pretrain.targets import MeanColorTokenizer

    register_tokenizer("test-mean-color", MeanColorTokenizer)
    for ref in ("test-mean-color", "mean-color", "mimzoo.pretrain.targets:MeanColorTokenizer"):
        t = build_target(Target("discrete-tokens", teacher=ref), encoder=enc.model, preprocess=enc.preprocess,
                         patch=4, grid=(8, 8))
        assert t.dim == 64


def test_pretrain_cli_refuses_a_module_path_tokenizer(tmp_path):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = run("pretrain", "simmim", "--arch", "mae-vit-test", "--data", "digits",
              "--max-steps", "1", "-o", tmp_path / "run",
              "--set", "target.kind=discrete-tokens", "--set", "target.teacher=tempfile:mkdtemp",
              "--set", "loss.kind=cross-entropy", env={"TMPDIR": str(tmpdir)}, cache=tmp_path / "cache")
    expect_error(out, says=("'tempfile:mkdtemp' is not a registered tokenizer",), fix=("register_tokenizer",))
    assert made_by_mkdtemp(tmpdir) == set() and not (tmp_path / "run" / "config.json").exists()


def test_unregistered_method_never_imports_a_module_named_after_it(tmp_path):
    """`mimzoo pretrain evil` used to import `mimzoo_evil.recipe` whatever 'evil' was."""
    pkg = tmp_path / "site" / "mimzoo_evil"
    pkg.mkdir(parents=True)
    marker = tmp_path / "imported"
    (pkg / "__init__.py").write_text("")
    (pkg / "recipe.py").write_text(f"open({str(marker)!r}, 'w').close()\nRECIPE = None\n")
    out = run("pretrain", "evil", "--data", "digits", "-o", tmp_path / "run", cache=tmp_path / "cache",
              env={"PYTHONPATH": str(tmp_path / "site")})
    expect_error(out, says=("method 'evil' has no pretraining recipe",), fix=("methods with one",))
    assert not marker.exists() and not (tmp_path / "run").exists()
