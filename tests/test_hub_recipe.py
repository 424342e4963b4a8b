"""Release recipes (exports/*.toml): the shipped ones are valid, and broken ones are refused clearly."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

import mimzoo
from mimzoo.hub.recipe import RecipeError, ReleaseRecipe, load_recipe

EXPORTS = Path(__file__).resolve().parents[1] / "exports"

GOOD = """
format = 1
model = "mae-vit-b"
weights = "timm"

[hub]
repo = "mimzoo/mae-vit-b"
license = "cc-by-nc-4.0"

[[validate]]
task = "linear"
dataset = "imagenet-1k"
data = "${IMAGENET_DIR}/val"
reference = "linear_top1"
max_drop = 1.0

[[export]]
format = "onnx"
precision = "fp32"

[export.tolerances]
cosine_min = 0.9999
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("path", sorted(EXPORTS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    recipe = load_recipe(path)  # checked against the installed plugins too
    assert path.stem == recipe.model and recipe.published_exports
    assert all(e.tolerances for e in recipe.exports)


@pytest.mark.parametrize("name", ["mae-vit-b", "mae-vit-l", "mae-vit-h"])
def test_mae_recipes(name):
    recipe = load_recipe(EXPORTS / f"{name}.toml")
    entry = mimzoo.get_registry().model(name)
    assert recipe.repo == f"mimzoo/{name}" and recipe.license == "cc-by-nc-4.0" and recipe.weights == "timm"
    assert [(e.format, e.precision) for e in recipe.published_exports] == [("onnx", "fp32"), ("onnx", "fp16")]
    assert all(e.opset >= 17 and e.tolerances["cosine_min"] >= 0.999 for e in recipe.exports)
    assert [g.threshold(entry.variant.reference) for g in recipe.gates] == [80.0, entry.variant.reference.linear_top1 - 1.0]


def test_every_public_mae_model_has_a_recipe():
    public = [e.name for e in mimzoo.get_registry().models() if e.method.name == "mae"]
    assert public == ["mae-vit-b", "mae-vit-digits", "mae-vit-h", "mae-vit-l"]
    assert all((EXPORTS / f"{name}.toml").is_file() for name in public)


def test_recipe_fields(tmp_path, monkeypatch):
    recipe = load_recipe(write(tmp_path, GOOD))
    assert isinstance(recipe, ReleaseRecipe) and recipe.revision == "main" and recipe.private is False
    (gate,) = recipe.gates
    assert gate.split == "val" and gate.threshold(mimzoo.get_registry().model("mae-vit-b").variant.reference) == 67.0
    (export,) = recipe.exports
    trt = load_recipe(write(tmp_path, GOOD.replace('format = "onnx"', 'format = "tensorrt"'))).exports[0]
    assert trt.publish is False  # verified where TensorRT runs, never shipped
    assert (export.opset, export.batch, export.publish, dict(export.tolerances)) == (17, "dynamic", True, {"cosine_min": 0.9999})
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.repo = "other/x"  # type: ignore[misc]
    monkeypatch.setenv("IMAGENET_DIR", "/data/in1k")
    assert gate.resolved_data() == "/data/in1k/val"
    monkeypatch.delenv("IMAGENET_DIR")
    with pytest.raises(RecipeError, match="set the environment variable in '\\$\\{IMAGENET_DIR\\}/val'"):
        gate.resolved_data()


@pytest.mark.parametrize("edit,message", [
    (("model = ", "modle = "), "unknown key\\(s\\) modle; allowed: format, model"),
    (("format = 1", "format = 2"), "'format' must be 1"),
    (('repo = "mimzoo/mae-vit-b"', 'repo = "mimzoo/../x"'), "\\[hub\\]: 'mimzoo/../x' is not a Hub repo id"),
    (('license = "cc-by-nc-4.0"', 'license = "apache-2.0"'), "license apache-2.0 differs from the mae-vit-b weights' license"),
    (('weights = "timm"', 'weights = "hf"'), "'mae-vit-b' has no weight source 'hf' \\(sources: timm, vis\\)"),
    (('model = "mae-vit-b"\nweights = "timm"', 'model = "mae-vit-test"\nweights = "timm"'),
     "'mae-vit-test' has no weight source 'timm' \\(sources: none\\)"),
    (('model = "mae-vit-b"', 'model = "mae-vit-bb"'), "unknown model 'mae-vit-bb'; did you mean 'mae-vit-b'"),
    (('format = "onnx"', 'format = "tensorrt"\npublish = true'), "only ONNX exports are published"),
    (("cosine_min = 0.9999", "cosine = 0.9999"), "tolerances: unknown key\\(s\\) cosine"),
    (("cosine_min = 0.9999", "cosine_min = 1.5"), "'cosine_min' must be a number in \\[0.0, 1.0\\]"),
    (("[export.tolerances]\ncosine_min = 0.9999", ""), "give the verification tolerances"),
    (('precision = "fp32"', 'precision = "fp8"'), "'precision' is 'fp8', not one of fp32, fp16, int8"),
    (("max_drop = 1.0", "max_drop = 1.0\nmin_top1 = 60.0"), "give either min_top1 or reference"),
    (('task = "linear"', 'task = "probe"'), "'task' is 'probe', not one of knn, linear"),
    (("[hub]", "[hub]\nprivate = \"yes\""), "'private' must be true or false"),
    (("[[export]]", "[[export]]\nbatch = 0"), "'batch' must be \"dynamic\" or a positive integer"),
    (("[hub]", "hub = 3\n[hubb]"), "unknown key\\(s\\) hubb"),
])
def test_broken_recipes_name_the_file_and_key(tmp_path, edit, message):
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(RecipeError, match=message) as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_reference_the_model_lacks(tmp_path):
    text = GOOD.replace('model = "mae-vit-b"\nweights = "timm"', 'model = "mae-vit-test"')
    with pytest.raises(RecipeError, match="has no pretrained weights to release"):
        load_recipe(write(tmp_path, text))
    assert load_recipe(write(tmp_path, text), check_registry=False).model == "mae-vit-test"


def test_unreadable_recipes(tmp_path):
    with pytest.raises(RecipeError, match="not found; recipes live in exports/<model>.toml"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(RecipeError, match="is not valid TOML"):
        load_recipe(write(tmp_path, "model = [unclosed"))
