"""The model card: YAML metadata the Hub reads back, license notice, citation, usage."""

from __future__ import annotations

import pytest

import mimzoo
from mimzoo.hub.card import CardInfo, build_card, is_noncommercial
from mimzoo.hub.eval_results import model_index

RECORDS = (
    {"model": "mae-vit-b", "task": "linear", "dataset": "imagenet-1k", "split": "val", "metrics": {"top1": 67.8, "top5": 88.1}},
    {"model": "mae-vit-b", "task": "knn", "dataset": "digits", "split": "test", "metrics": {"top1": 95.0}},
)


def mae_b_card(**overrides) -> str:
    entry = mimzoo.get_registry().model("mae-vit-b")
    info = CardInfo(
        repo_id="mimzoo/mae-vit-b", license="cc-by-nc-4.0", arch="vit_base_patch16_224", num_features=768,
        params_m=85.8, pooling="token", preprocess=entry.variant.preprocess, method=entry.method,
        variant=entry.variant, weights_source="hf-hub:timm/vit_base_patch16_224.mae/model.safetensors",
        weights_sha256="ab" * 32, base_model="timm/vit_base_patch16_224.mae", eval_records=RECORDS,
        model_index=tuple(model_index(list(RECORDS), "mimzoo/mae-vit-b")),
        exports=({"path": "onnx/fp32/model.onnx", "precision": "fp32", "opset": 17, "batch": "dynamic",
                  "verification": {"max_abs": 2e-5, "cosine_min": 0.99999}, "recheck_cosine": 0.999999},),
    )
    return build_card(CardInfo(**{**info.__dict__, **overrides}))


def test_yaml_metadata_reads_back_with_huggingface_hub():
    import huggingface_hub as hf

    card = hf.ModelCard(mae_b_card())
    data = card.data
    assert data.library_name == "timm" and data.license == "cc-by-nc-4.0"
    assert data.pipeline_tag == "image-feature-extraction" and data.datasets == ["ILSVRC/imagenet-1k"]
    assert data.base_model == "timm/vit_base_patch16_224.mae"
    assert {"mimzoo", "mae", "reconstruction-based", "vit", "onnx", "non-commercial"} <= set(data.tags)
    results = data.eval_results  # parsed back from model-index by huggingface_hub
    assert [(r.dataset_name, r.dataset_split, r.metric_value) for r in results] == [
        ("imagenet-1k", "val", 67.8), ("imagenet-1k", "val", 88.1), ("digits", "test", 95.0)]
    assert results[0].task_type == "image-classification" and results[0].metric_type == "accuracy"
    assert data.model_name == "mimzoo/mae-vit-b"


def test_body_license_first_then_model_usage_and_citation():
    text = mae_b_card().split("---\n", 2)[2]
    first_lines = [line for line in text.splitlines() if line.strip()][:2]
    assert first_lines[0] == "# mae-vit-b"
    assert first_lines[1].startswith("> **License: [CC-BY-NC-4.0](https://creativecommons.org/licenses/by-nc/4.0/): "
                                     "non-commercial use only.**")
    assert "MAE ViT-B encoder, pretrained 1600 epochs on ImageNet-1K (not fine-tuned), as in the zoo model `mae-vit-b`" in text
    assert "| Masking / target / objective | random-patch (75%) / normalized-pixels / mse" in text
    assert "Paper reference on ImageNet-1K: fine-tune top-1 83.6, linear probe top-1 68.0" in text
    assert "| Linear probe on frozen features | imagenet-1k | val | 67.80 | 88.10 |" in text
    assert 'mimzoo.load("hf-hub:mimzoo/mae-vit-b")' in text
    assert 'timm.create_model("hf-hub:mimzoo/mae-vit-b", pretrained=True)' in text
    assert 'snapshot_download("mimzoo/mae-vit-b", allow_patterns=["onnx/fp32/*"])' in text
    assert "@inproceedings{he2022mae," in text and "sha256 `" + "ab" * 32 + "`" in text


def test_permissive_license_has_no_notice_and_no_onnx_section_without_exports():
    text = mae_b_card(license="apache-2.0", exports=(), eval_records=(), model_index=(), variant=None)
    assert "non-commercial" not in text and "> **License" not in text
    assert "onnxruntime" not in text and "## ONNX" not in text and "## Evaluation" not in text
    assert "model-index" not in text


@pytest.mark.parametrize("license_id,nc", [
    ("cc-by-nc-4.0", True), ("cc-by-nc-sa-4.0", True), ("CC-BY-NC-ND-3.0", True), ("my-noncommercial-license", True),
    ("cc-by-4.0", False), ("apache-2.0", False), ("bsd-3-clause", False), ("openrail", False), ("other", False),
    (None, False),
])
def test_noncommercial_licenses_are_recognised(license_id, nc):
    assert is_noncommercial(license_id) is nc
