"""The tutorial's pretraining recipe: MaskFeat's, as pure data.

Every part is one of mimzoo's existing components: blockwise masking of 40% of the patches; the
encoder sees the whole sequence with a mask token in place of masked patches; a linear head
predicts the HOG histograms of each masked patch's 8x8-pixel cells (9 orientation bins, per RGB
channel); MSE on masked patches. Optimiser values from PySlowFast's
``configs/masked_ssl/in1k_VIT_B_MaskFeat_PT.yaml`` (mimzoo's ``maskfeat`` recipe says which
values are approximate and why).
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="example-hog",  # the Method's name
    masking=Masking(kind="blockwise", ratio=0.4, min_block=15),
    target=Target(kind="hog", hog_bins=9, hog_cell=8),
    loss=Loss(kind="mse"),
    decoder=Decoder(kind="mask-token"),  # mask tokens in the encoder input + a linear head
    optim=Optim(blr=2e-4, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=30, min_lr=1e-6,
                batch_size=2048, epochs=1600, clip_grad=0.02),
    augment=Augment(crop_scale=(0.5, 1.0), hflip=True),
    arch="example-hog-vit-b",
    notes="tutorial copy of MaskFeat's recipe (PySlowFast configs/masked_ssl/in1k_VIT_B_MaskFeat_PT.yaml)",
)
