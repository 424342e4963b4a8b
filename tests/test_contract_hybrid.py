"""The hybrid branch of the contract: its vocabulary, the token-avg pooling, the k-NN reference column,
and how `mimzoo list --taxonomy`, `mimzoo list`, `mimzoo info` and model cards show them."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import mimzoo
from mimzoo.cli.main import cli
from mimzoo.errors import PluginError
from mimzoo.registry import Reference, Taxonomy
from mimzoo.registry.contract import OBJECTIVES, POOLINGS, TARGETS


def invoke(*args: str):
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_vocabulary_of_the_hybrid_branch():
    assert "online-tokenizer" in TARGETS and "self-distillation" in OBJECTIVES and "token-avg" in POOLINGS
    Taxonomy("blockwise", "online-tokenizer", "self-distillation", "ViT", "masked").validate("ok")
    with pytest.raises(PluginError, match="objective 'distillation' is not one of"):
        Taxonomy("blockwise", "online-tokenizer", "distillation", "ViT", "masked").validate("m")


def test_taxonomy_lists_dinov2_under_hybrid():
    out = invoke("list", "--taxonomy")
    hybrid = out.split("hybrid-based", 1)[1]
    assert "DINOv2" in hybrid and "iBOT" in hybrid and "online-tokenizer" in hybrid and "self-distillation" in hybrid
    assert "iBOT" not in out.split("hybrid-based", 1)[0]  # one family per method
    rows = json.loads(invoke("list", "--taxonomy", "--json"))
    dinov2 = next(r for r in rows if r["method"] == "DINOv2")
    assert dinov2["family"] == "hybrid" and dinov2["encoder_input"] == "masked"


def test_knn_column_in_list_and_info():
    rows = {r["name"]: r for r in json.loads(invoke("list", "dinov2-*", "--json"))}
    assert (rows["dinov2-vit-b14"]["knn_top1"], rows["dinov2-vit-b14"]["lin_top1"]) == (82.1, 84.5)
    assert (rows["dinov2-vit-g14-reg4"]["knn_top1"], rows["dinov2-vit-g14-reg4"]["lin_top1"]) == (83.7, 87.1)
    assert "k-NN top-1" in invoke("list", "dinov2-*")
    info = invoke("info", "dinov2-vit-b14")
    assert "pooling=token-avg" in info and "linear 84.5 / k-NN 82.1" in info and "LVD-142M" in info
    assert "None ep" not in info  # DINOv2 names no epoch count
    mae = invoke("info", "mae-vit-b")
    assert "fine-tune 83.6 / linear 68.0 on ImageNet-1K" in mae and "None" not in mae  # unstated figures left out


def test_card_shows_the_knn_reference():
    from mimzoo.hub.card import CardInfo, build_card

    entry = mimzoo.get_registry().model("dinov2-vit-s14")
    card = build_card(CardInfo(repo_id="mimzoo/dinov2-vit-s14", license="apache-2.0", arch=entry.variant.arch,
                               num_features=768, params_m=21.6, pooling="token-avg",
                               preprocess=entry.variant.preprocess, method=entry.method, variant=entry.variant))
    assert "linear probe top-1 81.1, k-NN top-1 79.0" in card and "? pretraining epochs" not in card


def test_reference_without_figures_is_refused_by_the_plugin_checks():
    import dataclasses

    import mimzoo.testing as mt

    method = mimzoo.get_registry().method("dinov2")
    variant = dataclasses.replace(method.variants[0], reference=Reference(pretrain_data="LVD-142M", source="x"))
    with pytest.raises(AssertionError, match="reference numbers"):
        mt.check_variant_metadata(method, variant)


def test_token_avg_needs_a_class_token():
    from mimzoo.encoders.build import build_timm
    from mimzoo.encoders.pooling import apply_pooling

    with pytest.raises(PluginError, match="needs a class token"):  # e.g. a class-token-free I-JEPA ViT
        apply_pooling(build_timm("vit_huge_patch14_gap_224", pooling="avg", img_size=28,
                                 model_kwargs={"embed_dim": 16, "depth": 1, "num_heads": 1}), "token-avg")
    model = build_timm("vit_small_patch14_dinov2", pooling="token-avg", img_size=28,
                       model_kwargs={"embed_dim": 16, "depth": 1, "num_heads": 1})
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        tokens = model.forward_features(x)
        pooled = model.forward_head(tokens, pre_logits=True)
    torch.testing.assert_close(pooled, torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=-1))
    assert model.num_features == 16 and type(model).__name__ == "TokenAvgVisionTransformer"


def test_release_gate_on_the_knn_reference(tmp_path):
    """A release recipe may gate on the paper's k-NN figure, checked against the registry."""
    from mimzoo.hub.recipe import RecipeError, load_recipe

    recipe = """
format = 1
model = "dinov2-vit-b14"
weights = "timm"

[hub]
repo = "mimzoo/dinov2-vit-b14"
license = "apache-2.0"

[[validate]]
task = "knn"
dataset = "imagenet-1k"
data = "/data/imagenet"
reference = "knn_top1"
max_drop = 0.5

[[export]]
format = "onnx"
precision = "fp32"

[export.tolerances]
cosine_min = 0.9999
"""
    (tmp_path / "r.toml").write_text(recipe)
    gate = load_recipe(tmp_path / "r.toml").gates[0]
    entry = mimzoo.get_registry().model("dinov2-vit-b14")
    assert gate.threshold(entry.variant.reference) == pytest.approx(82.1 - 0.5)
    mae = recipe.replace("dinov2-vit-b14", "mae-vit-b").replace("apache-2.0", "cc-by-nc-4.0")
    (tmp_path / "m.toml").write_text(mae)
    with pytest.raises(RecipeError, match="knn_top1"):  # MAE's paper gives no k-NN figure
        load_recipe(tmp_path / "m.toml")
