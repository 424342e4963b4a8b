"""SimMIM's pretraining recipe (ViT-B, 224 px).

Random masking of 60% of 32x32-pixel units; the encoder sees every patch with a learned mask
token in place of the masked ones; a linear head (1x1 conv + pixel shuffle in the paper) predicts
the raw (normalised-input) pixels; L1 on masked pixels. Settings from the SimMIM configs for
ViT-B 800 ep: AdamW (0.9, 0.999), weight decay 0.05, lr 1e-4 per 512 images (5e-5 per 256),
batch 2048, 10 warmup epochs, gradient clipping at 5, random-resized crop (0.67-1) and flips.
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="simmim",
    masking=Masking(kind="random-block", ratio=0.6, mask_patch_size=32),
    target=Target(kind="pixels"),
    loss=Loss(kind="l1"),
    decoder=Decoder(kind="mask-token"),
    optim=Optim(blr=5e-5, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=10, min_lr=2.5e-6,
                batch_size=2048, epochs=800, clip_grad=5.0),
    augment=Augment(crop_scale=(0.67, 1.0), hflip=True),
    arch="simmim-vit-b",
    notes="SimMIM configs simmim_pretrain__vit_base__img224__800ep (lr scaled per 512 there, per 256 here)",
)
