"""I-JEPA's pretraining recipe (ViT-H/14, ImageNet-1K, 300 epochs).

Multi-block masking: 4 target blocks (15-20% of the image each, aspect 0.75-1.5) and a context
block (85-100%) with the targets cut out. The context encoder sees the context only; a 12-block,
384-wide predictor predicts the target blocks' features from the EMA target encoder
(layer-normalised, momentum 0.996 -> 1.0); smooth-L1 as in the official code. The model folder
holds the EMA target encoder, which the paper evaluates. From configs/in1k_vith14_ep300.yaml:
lr 1e-3 per 2048 images, weight decay 0.04 (the official schedule raises it to 0.4), 40 warmup
epochs, random-resized crop (0.3-1), no flips.
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="ijepa",
    masking=Masking(kind="multi-block", num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                    context_scale=(0.85, 1.0), min_keep=10),
    target=Target(kind="ema-features", final_norm=True, ema=(0.996, 1.0)),
    loss=Loss(kind="smooth-l1", beta=1.0),
    decoder=Decoder(kind="predictor", dim=384, depth=12, heads=12, mlp_ratio=4.0),
    optim=Optim(blr=1.25e-4, weight_decay=0.04, betas=(0.9, 0.999), warmup_epochs=40, min_lr=1e-6,
                batch_size=2048, epochs=300),
    augment=Augment(crop_scale=(0.3, 1.0), hflip=False),
    arch="ijepa-vit-h14",
    export_encoder="teacher",
    notes="ijepa configs/in1k_vith14_ep300.yaml; constant weight decay 0.04 instead of the 0.04->0.4 ramp",
)
