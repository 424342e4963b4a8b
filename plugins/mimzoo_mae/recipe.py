"""MAE's pretraining recipe (the paper's ViT-B/L/H settings).

Random 75% patch masking; the encoder sees the visible patches only; an 8-block, 512-wide
decoder regresses per-patch normalised pixels; MSE on the masked patches. AdamW (0.9, 0.95),
weight decay 0.05, base lr 1.5e-4 per 256 images, batch 4096, 40 warmup epochs, cosine decay;
random-resized crop (0.2-1) and flips. Source: arXiv 2111.06377 Table 8 and facebookresearch/mae
PRETRAIN.md (800 epochs; the released encoders trained 1600).
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="mae",
    masking=Masking(kind="random-patch", ratio=0.75),
    target=Target(kind="normalized-pixels"),
    loss=Loss(kind="mse"),
    decoder=Decoder(kind="mae", dim=512, depth=8, heads=16, mlp_ratio=4.0, sincos_pos=True),
    optim=Optim(blr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95), warmup_epochs=40, batch_size=4096, epochs=800),
    augment=Augment(crop_scale=(0.2, 1.0), hflip=True),
    arch="mae-vit-b",
    notes="MAE paper Table 8 / PRETRAIN.md: 800 ep, blr 1.5e-4, batch 4096, warmup 40, norm-pix MSE",
)
