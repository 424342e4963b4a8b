"""ConvNeXt V2's FCMAE pretraining recipe.

Random masking of 60% of 32x32 units (one unit per encoder output cell); the ConvNeXt V2
encoder runs on the visible units only (dense masked convolution here, sparse convolution in
the paper); a 1-block, 512-wide ConvNeXt decoder predicts each unit's per-patch normalised
pixels; MSE on masked units. AdamW (0.9, 0.95), weight decay 0.05, base lr 1.5e-4 per 256,
batch 4096, 40 warmup epochs, 800 epochs (the released encoders trained 1600): TRAINING.md.
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="fcmae",
    masking=Masking(kind="random-block", ratio=0.6, mask_patch_size=32),
    target=Target(kind="normalized-pixels"),
    loss=Loss(kind="mse"),
    decoder=Decoder(kind="fcmae", dim=512, depth=1),
    optim=Optim(blr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95), warmup_epochs=40, batch_size=4096, epochs=800),
    augment=Augment(crop_scale=(0.2, 1.0), hflip=True),
    arch="fcmae-convnextv2-base",
    notes="ConvNeXt-V2 TRAINING.md FCMAE settings; dense masked convolution instead of MinkowskiEngine",
)
