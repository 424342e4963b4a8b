"""The worked example plugin (examples/mimzoo-plugin-example), installed for real with pip and used.

The example is built from a temporary copy (setuptools builds in-tree, so building the source
folder would leave build/ and *.egg-info in it) and installed with ``pip install --target`` into a
temporary folder; every use runs in a fresh interpreter with that folder on PYTHONPATH, exactly as
a user's environment would see the installed distribution and its ``mimzoo.methods`` entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, run_cli

EXAMPLE = REPO / "examples" / "mimzoo-plugin-example"
BUILD_ARTEFACTS = ("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")
OFFICIAL_URL = ("https://dl.fbaipublicfiles.com/pyslowfast/masked_models/"
                "in1k_VIT_B_MaskFeat_PT_epoch_01600.pyth")


def _artefacts(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for pat in ("build", "dist", "*.egg-info") for p in root.rglob(pat))


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The example plugin installed by pip into a temporary site folder."""
    root = tmp_path_factory.mktemp("plugin-example")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(*BUILD_ARTEFACTS))
    before = _artefacts(EXAMPLE)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--no-cache-dir", "--target", str(root / "site"), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _artefacts(EXAMPLE) == before, "building the example wrote into the source tree"
    return root / "site"


def test_installed_distribution_declares_the_entry_point(site):
    infos = list(site.glob("mimzoo_plugin_example-0.1.0.dist-info"))
    assert len(infos) == 1
    entry_points = (infos[0] / "entry_points.txt").read_text()
    assert "[mimzoo.methods]" in entry_points and "maskfeat = mimzoo_plugin_example:METHOD" in entry_points
    plugins = run_cli("plugins", pythonpath=[site])
    assert plugins.returncode == 0, plugins.stderr
    row = next(ln for ln in plugins.stdout.splitlines() if ln.startswith("maskfeat "))
    assert row.split() == ["maskfeat", "mimzoo-plugin-example", "0.1.0", "2", "(+1", "test)", "ok"]


def test_list_shows_the_new_method_and_variants(site):
    listing = run_cli("list", pythonpath=[site])
    assert listing.returncode == 0, listing.stderr
    row = next(ln for ln in listing.stdout.splitlines() if ln.startswith("maskfeat-vit-b "))
    assert row.split()[:5] == ["maskfeat-vit-b", "MaskFeat", "reconstruction", "vit_base_patch16_224", "85.8"]
    assert "maskfeat-vit-l " in listing.stdout and "mae-vit-b " in listing.stdout  # the zoo keeps working
    assert "maskfeat-vit-test" not in listing.stdout
    assert "maskfeat-vit-test" in run_cli("list", "--all", pythonpath=[site]).stdout
    taxonomy = json.loads(run_cli("list", "--taxonomy", "--json", pythonpath=[site]).stdout)
    mf = next(r for r in taxonomy if "MaskFeat" in json.dumps(r))
    assert (mf["family"], mf["masking"], mf["target"], mf["objective"]) == ("reconstruction", "blockwise 40%", "hog", "mse")


def test_list_without_the_plugin_does_not_show_it():
    listing = run_cli("list", "--all")
    assert listing.returncode == 0 and "maskfeat" not in listing.stdout


def test_info(site):
    info = run_cli("info", "maskfeat-vit-b", pythonpath=[site])
    assert info.returncode == 0, info.stderr
    out = info.stdout
    assert "MaskFeat (reconstruction)" in out and "https://arxiv.org/abs/2112.09133" in out
    assert "masking=blockwise ratio=0.4 target=hog objective=mse encoder sees=masked" in out
    assert OFFICIAL_URL in out and "fine-tune 84.0" in out
    assert "layout       official: PySlowFast MaskMViT" in out
    assert "provided by  mimzoo-plugin-example" in out


# Runs in the interpreter that has the plugin installed. Writes the random tiny encoder's weights
# under PySlowFast MaskMViT's names (written here independently of the plugin's own converter:
# separate q/k/v, final norm inside the prediction head, HOG head, mask token, HOG filters).
LOAD_AND_CONVERT = """
import json, sys, torch
from safetensors.torch import save_file
import mimzoo
from mimzoo.errors import MimzooError

def official(sd):
    out = {}
    for k, v in sd.items():
        if k.startswith("norm."):
            out["pred_head.transforms.0.0." + k[5:]] = v.clone()
        elif ".attn.qkv." in k:
            for name, part in zip("qkv", v.chunk(3, dim=0)):
                out[k.replace(".attn.qkv.", ".attn." + name + ".")] = part.clone()
        else:
            out[k] = v.clone()
    d = sd["cls_token"].shape[-1]
    out.update({"mask_token": torch.zeros(1, 1, d), "pred_head.projections.0.weight": torch.randn(27, d),
                "pred_head.projections.0.bias": torch.zeros(27), "hogs.0.weight_x": torch.randn(3, 1, 3, 3),
                "hogs.0.weight_y": torch.randn(3, 1, 3, 3)})
    return out

torch.manual_seed(0)
tiny = mimzoo.load("maskfeat-vit-test", pretrained=False)
x = torch.randn(2, 3, 32, 32)
path = sys.argv[1]
save_file(official(tiny.model.state_dict()), path)
loaded = mimzoo.load("maskfeat-vit-test", weights=path)
try:  # no Hub copy of the official weights exists: the error must say where to get them
    mimzoo.load("maskfeat-vit-b")
    offline = "loaded?!"
except MimzooError as e:
    offline = str(e)
with torch.no_grad():
    same = torch.equal(loaded(x), tiny(x)) and torch.equal(loaded.forward_features(x), tiny.forward_features(x))
    print(json.dumps({
        "tiny": [list(tiny(x).shape), list(tiny.forward_features(x).shape), tiny.num_features],
        "info": [tiny.info.method, tiny.info.variant, tiny.info.license, tiny.info.weights.source],
        "layout": loaded.info.weights.layout, "tensors": [loaded.info.weights.tensors, len(tiny.model.state_dict())],
        "identical": same, "offline": offline,
    }))
"""


def test_load_shapes_official_layout_and_missing_weights(site, tmp_path):
    ckpt = tmp_path / "official.safetensors"
    result = _run(LOAD_AND_CONVERT, site, str(ckpt), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["tiny"] == [[2, 32], [2, 1 + 64, 32], 32]
    assert data["info"] == ["maskfeat", "maskfeat-vit-test", "apache-2.0", "random init"]
    assert data["layout"] == "official"
    assert data["tensors"] == [30, 30]  # cls, pos, patch w/b, 12 per block x 2 blocks, final norm w/b
    assert data["identical"] is True
    assert "pass weights=PATH to a local copy of " + OFFICIAL_URL in data["offline"]


def test_pretrain_uses_the_plugin_recipe(site, tmp_path):
    out = tmp_path / "run"
    result = run_cli("pretrain", "maskfeat", "--arch", "maskfeat-vit-test", "--data", "digits", "--epochs", "1",
                     "--max-steps", "2", "--batch-size", "16", "--device", "cpu", "-o", str(out), pythonpath=[site])
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    recipe = config["mimzoo"]["recipe"]
    assert (recipe["method"], recipe["target"]["kind"], recipe["masking"]["ratio"]) == ("maskfeat", "hog", 0.4)
    assert recipe["optim"]["clip_grad"] == 0.02  # the plugin's recipe, not mimzoo's built-in MaskFeat one


def test_the_plugin_own_tests_and_mimzoo_testing_checks_pass(site):
    """The plugin's tests, run against the installed plugin; they include mimzoo.testing.check_variant."""
    env = {**_clean_env(), "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"]
    result = subprocess.run(cmd, cwd=EXAMPLE, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "7 passed" in result.stdout
    for name in ("maskfeat-vit-b", "maskfeat-vit-l", "maskfeat-vit-test"):  # mimzoo's shared plugin checks
        assert f"test_variant_passes_mimzoo_checks[{name}] PASSED" in result.stdout
    assert _artefacts(EXAMPLE) == []


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST_"))}


def _run(code: str, site: Path, *args: str, env: dict[str, str] | None = None):
    """Run `code` with arguments in a fresh interpreter that has the example plugin installed."""
    full_env = {**_clean_env(), "PYTHONPATH": str(site), **(env or {})}
    cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


def test_readme_tables_describe_the_package_not_the_environment(site):
    # with a third-party plugin installed, the README's generated tables still list mimzoo's own models only
    r = subprocess.run([sys.executable, str(REPO / "docs" / "sync_readme.py"), "--check"], capture_output=True,
                       text=True, env={**_clean_env(), "PYTHONPATH": str(site)}, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = run_cli("list", "--markdown", pythonpath=[site])
    assert "maskfeat-vit-b" in listed.stdout  # while `mimzoo list` itself shows the plugin's models
