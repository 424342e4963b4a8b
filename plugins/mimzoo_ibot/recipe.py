"""iBOT's pretraining recipe: ViT-S/16 on ImageNet-1K, the command in bytedance/ibot's README.

Per global view: no mask with probability 0.5, else BEiT-style blocks over 0.3 +- 0.2 of the patches
(``--pred_ratio 0 0.3 --pred_ratio_var 0 0.2``, ``pred_shape=block``); the student sees mask tokens.
An EMA teacher (momentum 0.996 -> 1, cosine) and one projection head shared by [CLS] and patches
(``--shared_head true``; 3 layers, 2048 wide, 256 bottleneck, 8192 prototypes, last layer not
norm-fixed for ViT-S) give the targets: teacher temperatures 0.04 -> 0.07 over 30 epochs for [CLS]
and patches, student 0.1, centres with momentum 0.9; cross-view [CLS] loss + masked-patch loss, each
weight 1. Two global crops (scale 0.25-1) and 10 local crops (0.05-0.25, 96 px at 224). AdamW,
lr 5e-4 per 256 images, 10 warmup epochs, min lr 1e-6, batch 1024 (64 x 16 GPUs), 800 epochs,
gradient clipping 3.0, the prototypes frozen in the first epoch. The model folder holds the teacher.

Approximations (~), all said in ``notes``: constant weight decay 0.04 (iBOT ramps it to 0.4); the
gradient norm is clipped as a whole (iBOT clips each parameter's); no colour jitter, grey-scale,
blur or solarisation (crops and flips only); no drop path in the student (iBOT: 0.1); the mask
token, class token and position table are not weight-decayed (iBOT decays every tensor of 2+ dims).
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Distill, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="ibot",
    masking=Masking(kind="blockwise", ratio=0.3, ratio_var=0.2, unmasked_share=0.5, min_block=16,
                    aspect=(0.3, 1 / 0.3)),
    target=Target(kind="online-tokenizer", ema=(0.996, 1.0)),
    loss=Loss(kind="self-distillation"),
    decoder=Decoder(kind="projection-head"),
    distill=Distill(out_dim=8192, hidden_dim=2048, bottleneck_dim=256, head_layers=3, norm_last_layer=False,
                    student_temp=0.1, teacher_temp=(0.04, 0.07), patch_temp=(0.04, 0.07), temp_warmup_epochs=30,
                    center_momentum=0.9, cls_weight=1.0, patch_weight=1.0, freeze_last_layer_epochs=1),
    optim=Optim(blr=5e-4, weight_decay=0.04, betas=(0.9, 0.999), warmup_epochs=10, min_lr=1e-6, batch_size=1024,
                epochs=800, clip_grad=3.0),
    augment=Augment(crop_scale=(0.25, 1.0), hflip=True, global_crops=2, local_crops=10,
                    local_crop_scale=(0.05, 0.25)),
    arch="ibot-vit-s16",
    export_encoder="teacher",
    notes="bytedance/ibot README ViT-S/16 command + main_ibot.py defaults; ~ constant weight decay 0.04 (not "
    "0.04->0.4), whole-model gradient-norm clipping (iBOT clips per parameter), crops and flips only (no colour "
    "jitter, blur, solarisation), no student drop path",
)
