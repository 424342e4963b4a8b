"""MAE's place on the survey's axes (the variants trained otherwise override it)."""

from __future__ import annotations

from mimzoo.registry import Taxonomy

TAXONOMY = Taxonomy(
    masking="random-patch",
    mask_ratio=0.75,
    target="normalized-pixels",
    objective="mse",
    architecture="ViT",
    encoder_input="visible",
    downstream=("classification", "detection", "segmentation"),
    survey_nodes=("masking",),
    details="asymmetric encoder-decoder; encoder sees visible patches only; MSE on masked patches",
)
