"""MaskFeat's pretraining recipe (ImageNet-1K, ViT-B/L), from the official PySlowFast configs.

Every part is one of the engine's existing components, so the recipe is pure data: BEiT-style
blockwise masking of 40% of the patches (PySlowFast's mask generator); the encoder sees the
whole sequence with a mask token in place of masked patches; a linear head predicts, for every
masked patch, the HOG histograms of its 8x8-pixel cells (9 orientation bins, per RGB channel);
MSE on masked patches.

Optimiser, from ``configs/masked_ssl/in1k_VIT_B_MaskFeat_PT.yaml``: AdamW, base lr 2e-4 for a
batch of 256, weight decay 0.05, 30 warmup epochs, cosine to 1e-6, gradient clipping 0.02;
random-resized crop of 50-100% of the image. The config runs 300 epochs; the released encoders
were trained 1600. ``betas`` are PySlowFast's AdamW default.
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="maskfeat",
    masking=Masking(kind="blockwise", ratio=0.4, min_block=16),
    target=Target(kind="hog", hog_bins=9, hog_cell=8),
    loss=Loss(kind="mse"),
    decoder=Decoder(kind="mask-token"),
    optim=Optim(blr=2e-4, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=30, min_lr=1e-6,
                batch_size=256, epochs=1600, clip_grad=0.02),
    augment=Augment(crop_scale=(0.5, 1.0), hflip=True),
    arch="maskfeat-vit-b",
    notes="PySlowFast configs/masked_ssl/in1k_VIT_B_MaskFeat_PT.yaml (300 ep there; released weights 1600 ep)",
)
