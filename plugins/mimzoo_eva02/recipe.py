"""EVA-02's MIM recipe: feature distillation from a frozen CLIP vision encoder.

Blockwise masking of ~40% (105 of 256 patches); the student sees mask tokens; a linear head
regresses the frozen teacher's patch features at masked positions; negative cosine loss. The
teacher is any model ``mimzoo.load`` accepts (EVA-02 used EVA-CLIP; the default here is timm's
Hub copy of EVA01-CLIP-g/14's vision tower, which is ~, not necessarily the exact teacher);
change it with ``--set target.teacher=<name or folder>``. Optimiser values are approximate (~).
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="eva02",
    masking=Masking(kind="blockwise", ratio=0.4, min_block=16),
    target=Target(kind="teacher-features", teacher="hf-hub:timm/eva_giant_patch14_clip_224.laion400m_s11b_b41k"),
    loss=Loss(kind="negative-cosine"),
    decoder=Decoder(kind="mask-token"),
    optim=Optim(blr=3.75e-4, weight_decay=0.05, betas=(0.9, 0.98), warmup_epochs=10, batch_size=2048, epochs=150,
                clip_grad=3.0),
    augment=Augment(crop_scale=(0.2, 1.0), hflip=True),
    arch="eva02-vit-b",
    notes="EVA-02 B MIM on IN-21K, 150 ep; EVA-CLIP teacher; optimiser values ~",
)
