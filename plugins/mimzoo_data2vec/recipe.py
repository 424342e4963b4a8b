"""data2vec (vision)'s pretraining recipe (ViT-B, BEiT architecture).

BEiT blockwise masking of ~60% (120 of 196 patches, blocks of at least 16); the student sees mask
tokens; its linear head regresses the EMA teacher's average of the last 6 block outputs (each
layer-normalised, then the average layer-normalised); smooth-L1 with beta 2 on masked patches.
The teacher's momentum and the optimiser values are approximate (~): check the official
data2vec_vision configs before citing them.
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="data2vec",
    masking=Masking(kind="blockwise", ratio=0.6, min_block=16),
    target=Target(kind="ema-features", layers=6, layer_norm="layer", final_norm=True, ema=(0.9998, 0.99999)),
    loss=Loss(kind="smooth-l1", beta=2.0),
    decoder=Decoder(kind="mask-token"),
    optim=Optim(blr=2.5e-4, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=10, batch_size=2048, epochs=800,
                clip_grad=3.0),
    augment=Augment(crop_scale=(0.08, 1.0), hflip=True),
    arch="data2vec-vit-b",
    notes="data2vec vision ViT-B 800 ep; target/loss per the official engine_for_cyclical.py; optimiser values ~",
)
