"""Recipes of methods that have no method plugin (yet): found by name after the registry.

MaskFeat lives here because no ``mimzoo_maskfeat`` plugin exists: a recipe registered by a
plugin needs the plugin's Method (variants, weights, converters), and MaskFeat's official
weights come in PySlowFast's own checkpoint format, which needs a converter nobody has written.
Move it into ``plugins/mimzoo_maskfeat/recipe.py`` when that plugin arrives.
"""

from __future__ import annotations

from .recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, Target

MASKFEAT = Recipe(
    method="maskfeat",
    masking=Masking(kind="blockwise", ratio=0.4, min_block=16),
    target=Target(kind="hog", hog_bins=9, hog_cell=8),
    loss=Loss(kind="mse"),
    decoder=Decoder(kind="mask-token"),
    optim=Optim(blr=2e-4, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=30, batch_size=2048, epochs=1600),
    augment=Augment(crop_scale=(0.5, 1.0), hflip=True),
    arch="vit_base_patch16_224",
    notes="MaskFeat (arXiv 2112.09133) image setting: HOG 9 bins / 8 px cells, ~40% blockwise masking; "
          "optimiser values ~",
)

BUILTIN: dict[str, Recipe] = {"maskfeat": MASKFEAT}
