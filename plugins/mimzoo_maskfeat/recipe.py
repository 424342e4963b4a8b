"""MaskFeat's pretraining recipe (ImageNet-1K, ViT-B/L).

Every part is one of the engine's components, so the recipe is data: blockwise masking of 40% of
the patches (PySlowFast's ``AUG.MASK_RATIO: 0.4`` with its BEiT-style ``MaskingGenerator``: blocks of
at least a fifth of the masked count, 78 // 5 = 15 patches on ViT-B's 14x14 grid, aspect 0.3-1/0.3); the encoder
sees the whole sequence with a mask token in place of the masked patches; a linear head predicts,
for every masked patch, the HOG histograms of its 8x8-pixel cells (9 orientation bins, per RGB
channel, each cell L2-normalised: ``MaskMViT`` ``nbins=9, cell_sz=8``); MSE on the masked patches.

Sources, configs ``configs/masked_ssl/in1k_VIT_{B,L}_MaskFeat_PT.yaml`` (checked):
AdamW, base lr 2e-4 per 256 images (``BASE_LR: 0.0002 # bs256``, scaled by the number of nodes:
``BASE_LR_SCALE_NUM_SHARDS``), betas (0.9, 0.999) (PySlowFast's ``SOLVER.BETAS`` default),
weight decay 0.05, 30 warmup epochs, cosine to 1e-6, gradient-norm clipping at 0.02,
random-resized crop of 50-100% of the image with aspect 3/4-4/3 and horizontal flips (timm's
``transforms_imagenet_train`` default, ``hflip=0.5``), no colour augmentation.

Approximate (~):
- ``batch_size=2048``: the config's batch is 256 *per node* (``TRAIN.BATCH_SIZE`` with 8 GPUs,
  lr scaled by the node count); 2048 = 8 nodes, what the MMSelfSup/MMPretrain reproductions run
  (8 x 256, lr 2e-4 x 8). The node count of the released runs is not in the repository.
- ``epochs=1600``: the released encoders' file names say epoch 1600; the configs say 300.
- HOG: mimzoo's ``hog`` target uses [-1, 0, 1] gradients with replicate padding; PySlowFast's
  ``HOGLayerC`` uses Sobel filters with reflect padding. Same bins, cells and normalisation.
- mimzoo's trainer skips weight decay on norms, biases, tokens and position embeddings; the config's
  ``ZERO_WD_1D_PARAM`` skips it on every 1-d parameter (norms, biases), not on cls/pos.
"""

from __future__ import annotations

from mimzoo.pretrain.recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

RECIPE = Recipe(
    method="maskfeat",
    masking=Masking(kind="blockwise", ratio=0.4, min_block=15),
    target=Target(kind="hog", hog_bins=9, hog_cell=8),
    loss=Loss(kind="mse"),
    decoder=Decoder(kind="mask-token"),
    optim=Optim(blr=2e-4, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=30, min_lr=1e-6,
                batch_size=2048, epochs=1600, clip_grad=0.02),
    augment=Augment(crop_scale=(0.5, 1.0), hflip=True),
    arch="maskfeat-vit-b",
    notes="PySlowFast configs/masked_ssl/in1k_VIT_B_MaskFeat_PT.yaml (300 ep there, 1600 for the released weights ~; "
          "batch 2048 = 8 nodes x 256 ~)",
)
