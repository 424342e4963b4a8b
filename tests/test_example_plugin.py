"""The worked example plugin (examples/mimzoo-plugin-example), installed for real with pip and used.

The example (method ``example-hog``) is MaskFeat under a tutorial name, installed next to mimzoo's own
first-party ``maskfeat`` plugin: both must be listed as ok, their models coexist, and each name loads
its own plugin's model. A plugin that claims a taken method name is reported, naming both distributions.

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
from helpers import REPO, make_distribution, run_cli

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


def _row(stdout: str, first: str) -> list[str]:
    return next(ln for ln in stdout.splitlines() if ln.split()[:1] == [first]).split()


def test_installed_distribution_declares_the_entry_point_and_both_plugins_are_ok(site):
    infos = list(site.glob("mimzoo_plugin_example-0.1.0.dist-info"))
    assert len(infos) == 1
    entry_points = (infos[0] / "entry_points.txt").read_text()
    assert "[mimzoo.methods]" in entry_points and "example-hog = mimzoo_plugin_example:METHOD" in entry_points
    plugins = run_cli("plugins", pythonpath=[site])
    assert "Traceback" not in plugins.stderr, plugins.stderr
    assert _row(plugins.stdout, "example-hog") == ["example-hog", "mimzoo-plugin-example", "0.1.0", "1", "(+1", "test)",
                                                   "ok"]
    assert _row(plugins.stdout, "maskfeat") == ["maskfeat", "mimzoo", "0.1.0", "2", "(+1", "test)", "ok"]


def test_list_shows_both_sets_of_models(site):
    listing = run_cli("list", pythonpath=[site])
    assert listing.returncode == 0, listing.stderr
    assert _row(listing.stdout, "example-hog-vit-b")[:2] == ["example-hog-vit-b", "HOG-MIM"]
    assert _row(listing.stdout, "maskfeat-vit-b")[:5] == ["maskfeat-vit-b", "MaskFeat", "reconstruction",
                                                          "vit_base_patch16_224", "85.8"]
    assert "maskfeat-vit-l " in listing.stdout and "mae-vit-b " in listing.stdout  # the zoo keeps working
    assert "example-hog-vit-test" not in listing.stdout
    assert "example-hog-vit-test" in run_cli("list", "--all", pythonpath=[site]).stdout
    taxonomy = json.loads(run_cli("list", "--taxonomy", "--json", pythonpath=[site]).stdout)
    titles = [r for r in taxonomy if "MaskFeat" in json.dumps(r) or "HOG-MIM" in json.dumps(r)]
    assert len(titles) == 2
    for row in titles:
        assert (row["family"], row["masking"], row["target"], row["objective"]) == ("reconstruction", "blockwise 40%",
                                                                                     "hog", "mse")


def test_list_without_the_plugin_shows_only_the_first_party_maskfeat():
    listing = run_cli("list", "--all")
    assert listing.returncode == 0 and "example-hog" not in listing.stdout
    assert "maskfeat-vit-b " in listing.stdout and "maskfeat-vit-test " in listing.stdout


def test_info(site):
    info = run_cli("info", "example-hog-vit-b", pythonpath=[site])
    assert info.returncode == 0, info.stderr
    out = info.stdout
    assert "HOG-MIM (plugin tutorial) (reconstruction)" in out and "https://arxiv.org/abs/2112.09133" in out
    assert "masking=blockwise ratio=0.4 target=hog objective=mse encoder sees=masked" in out
    assert OFFICIAL_URL in out and "fine-tune 84.0" in out
    assert "layout       official: PySlowFast MaskMViT" in out
    assert "provided by  mimzoo-plugin-example" in out


# Runs in the interpreter that has the plugin installed. Writes a random tiny encoder's weights under
# PySlowFast MaskMViT's names (written here independently of both plugins' converters: final norm inside
# the prediction head, HOG head, mask token, HOG filters) and loads them through each plugin.
LOAD_AND_CONVERT = """
import json, sys, torch
from safetensors.torch import save_file
import mimzoo
from mimzoo.errors import MimzooError
from mimzoo.registry import get_registry

def official(sd):
    out = {("pred_head.transforms.0.0." + k[5:] if k.startswith("norm.") else k): v.clone() for k, v in sd.items()}
    d = sd["cls_token"].shape[-1]
    out.update({"mask_token": torch.randn(1, 1, d), "pred_head.projections.0.weight": torch.randn(27, d),
                "pred_head.projections.0.bias": torch.randn(27), "hogs.0.weight_x": torch.randn(3, 1, 3, 3),
                "hogs.0.weight_y": torch.randn(3, 1, 3, 3)})
    return out

torch.manual_seed(0)
x = torch.randn(2, 3, 32, 32)
result = {}
for name in ("example-hog-vit-test", "maskfeat-vit-test"):
    tiny = mimzoo.load(name, pretrained=False)
    path = sys.argv[1] + name + ".safetensors"
    save_file(official(tiny.model.state_dict()), path)
    loaded = mimzoo.load(name, weights=path)
    with torch.no_grad():
        same = torch.equal(loaded(x), tiny(x)) and torch.equal(loaded.forward_features(x), tiny.forward_features(x))
    result[name] = {"method": loaded.info.method, "variant": loaded.info.variant,
                    "distribution": get_registry().model(name).distribution, "layout": loaded.info.weights.layout,
                    "tensors": [loaded.info.weights.tensors, len(tiny.model.state_dict())], "identical": same,
                    "shapes": [list(tiny(x).shape), list(tiny.forward_features(x).shape)]}
try:  # no Hub copy of the official weights exists: the error must say where to get them
    mimzoo.load("example-hog-vit-b")
    result["offline"] = "loaded?!"
except MimzooError as e:
    result["offline"] = str(e)
print(json.dumps(result))
"""


def test_each_name_loads_its_own_plugins_model(site, tmp_path):
    result = _run(LOAD_AND_CONVERT, site, str(tmp_path / "official-"), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    for name, method, dist in (("example-hog-vit-test", "example-hog", "mimzoo-plugin-example"),
                               ("maskfeat-vit-test", "maskfeat", "mimzoo")):
        got = data[name]
        assert (got["method"], got["variant"], got["distribution"]) == (method, name, dist)
        assert got["layout"] == "official" and got["identical"] is True
        assert got["tensors"] == [30, 30]  # cls, pos, patch w/b, 12 per block x 2 blocks, final norm w/b
        assert got["shapes"] == [[2, 32], [2, 1 + 64, 32]]
    assert "pass weights=PATH to a local copy of " + OFFICIAL_URL in data["offline"]


def test_pretrain_uses_the_plugin_recipe(site, tmp_path):
    out = tmp_path / "run"
    result = run_cli("pretrain", "example-hog", "--arch", "example-hog-vit-test", "--data", "digits", "--epochs", "1",
                     "--max-steps", "2", "--batch-size", "16", "--device", "cpu", "--threads", "1", "-o", str(out),
                     pythonpath=[site])
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    recipe = config["mimzoo"]["recipe"]
    assert (recipe["method"], recipe["target"]["kind"], recipe["masking"]["ratio"]) == ("example-hog", "hog", 0.4)
    assert recipe["notes"].startswith("tutorial copy")  # the plugin's recipe, not the first-party maskfeat one


def test_the_plugin_own_tests_and_mimzoo_testing_checks_pass(site):
    """The plugin's tests, run against the installed plugin; they include mimzoo.testing.check_variant."""
    env = {**_clean_env(), "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"]
    result = subprocess.run(cmd, cwd=EXAMPLE, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "6 passed" in result.stdout
    for name in ("example-hog-vit-b", "example-hog-vit-test"):  # mimzoo's shared plugin checks
        assert f"test_variant_passes_mimzoo_checks[{name}] PASSED" in result.stdout
    assert _artefacts(EXAMPLE) == []


# A plugin as the example was before it was renamed: it claims the method name 'maskfeat', which
# mimzoo's own plugin now has. Silently picking one could load different weights, so it is an error.
OLD_EXAMPLE = """
from mimzoo.registry import Method, Paper, Preprocess, Taxonomy, Variant
from mimzoo_mae.layouts import LAYOUTS

METHOD = Method(
    name="maskfeat",
    title="MaskFeat (old example)",
    paper=Paper(title="Masked Feature Prediction for Self-Supervised Visual Pre-Training", arxiv="2112.09133",
                year=2021, authors="Wei et al."),
    family="reconstruction",
    taxonomy=Taxonomy(masking="blockwise", target="hog", objective="mse", architecture="ViT", encoder_input="masked"),
    license="apache-2.0",
    variants=(Variant(name="oldexample-vit-test", arch="vit_tiny_patch16_224", params_m=0.029, test_only=True,
                      model_kwargs={"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
                      preprocess=Preprocess(input_size=(3, 32, 32)), layouts=LAYOUTS, description="old example"),),
)
"""


def test_a_plugin_claiming_a_first_party_method_name_is_reported(tmp_path):
    old = make_distribution(tmp_path / "old", "mimzoo-plugin-example", "0.0.9", {"maskfeat": "old_example:METHOD"},
                            {"old_example": OLD_EXAMPLE})
    result = run_cli("list", pythonpath=[old])
    assert result.returncode == 1
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("WARNING")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].startswith("error: method 'maskfeat' is registered by both ")
    assert "mimzoo (mimzoo_maskfeat:METHOD)" in errors[0] and "mimzoo-plugin-example (old_example:METHOD)" in errors[0]
    assert errors[0].endswith("uninstall one of them")


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
    assert "example-hog-vit-b" in listed.stdout  # while `mimzoo list` itself shows the plugin's models
