"""VideoMAE's pretraining recipe (the official ViT-B Kinetics-400 script).

Tube masking at 90 %; the encoder sees the visible tubes only; a 4-block decoder 384 wide with 6 heads
(``pretrain_videomae_base_patch16_224``) regresses per-tube normalised pixels; MSE on the masked tubes.
AdamW (0.9, 0.95), weight decay 0.05, base lr 1.5e-4 scaled by batch / 256 (``run_mae_pretraining.py``),
batch 2048 (32 clips x 64 GPUs in ``scripts/kinetics/..._epoch_800/pretrain.sh``), 40 warmup epochs,
cosine decay to a floor of 1e-5 x batch / 256 (= 8e-5 at batch 2048; mimzoo's ``min_lr`` is absolute),
800 epochs (the zoo's checkpoints trained 1600 / 2400), 16 frames with stride 4.

Approximations, said here so nobody mistakes them for the paper's: the official warmup starts at
1e-6 x batch / 256 (mimzoo's starts near 0), its augmentation is multi-scale crop + flip (mimzoo's is a
random-resized crop of area 0.2-1 plus flip, identical on every frame of a clip), and its weight decay
follows a (constant) cosine schedule. Sources: MCG-NJU/VideoMAE run_mae_pretraining.py defaults and
scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/pretrain.sh.
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="videomae",
    masking=Masking(kind="tube", ratio=0.9),
    target=Target(kind="normalized-pixels"),
    loss=Loss(kind="mse"),
    decoder=Decoder(kind="videomae", dim=384, depth=4, heads=6, mlp_ratio=4.0, sincos_pos=True),
    optim=Optim(blr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95), warmup_epochs=40, min_lr=8e-5, batch_size=2048,
                epochs=800),
    augment=Augment(crop_scale=(0.2, 1.0), hflip=True),
    arch="videomae-vit-b-k400",
    notes="VideoMAE pretrain.sh (ViT-B, K400): 800 ep, blr 1.5e-4, batch 2048, warmup 40, tube 90%, norm-pix MSE, "
    "decoder 4 x 384; approximated: random-resized crop for multi-scale crop, warmup from 0",
)
