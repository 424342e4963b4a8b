"""example-hog: a worked example of a third-party mimzoo method plugin (MaskFeat's HOG-target MIM).

The whole plugin is this one :class:`~mimzoo.registry.Method` (plain data), found through the
``mimzoo.methods`` entry point declared in ``pyproject.toml``; ``layouts.py`` converts checkpoints
and ``recipe.py`` declares the pretraining recipe.

The content is MaskFeat (Wei et al., arXiv 2112.09133), which mimzoo also ships as its own
``maskfeat`` plugin. This copy carries a tutorial name (method ``example-hog``, models
``example-hog-*``) so that installing it next to mimzoo never clashes with the first-party names:
mimzoo refuses two distributions that claim one method or model name.

MaskFeat masks ~40% of the patches in blocks, gives the encoder the full sequence with a mask
token in place of the masked patches, and regresses the HOG features of the masked patches with a
linear head and MSE. The ImageNet-1K encoders are plain ViTs (timm ``vit_*_patch16_224``).
Pooling: the mean of the patch tokens after the pretrained final norm (``'avg'``, ``fc_norm=False``:
no new, untrained LayerNorm).
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS
from .recipe import RECIPE

_OFFICIAL_B = "https://dl.fbaipublicfiles.com/pyslowfast/masked_models/in1k_VIT_B_MaskFeat_PT_epoch_01600.pyth"
# PySlowFast's ImageNet test transform: resize the short side to 224 / 0.875 (bicubic), center crop
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
# keep the pretrained per-token final norm; no new LayerNorm after average pooling
_KWARGS = {"fc_norm": False}

VIT_B = Variant(
    name="example-hog-vit-b",  # `<method>-<arch>-<size>`; must not be any other plugin's model name
    arch="vit_base_patch16_224",  # built with timm.create_model, random init, then the weights
    params_m=85.8,  # listed without building; checked by mimzoo.testing
    pooling="avg",  # timm global_pool
    model_kwargs=_KWARGS,
    preprocess=_PREPROCESS,
    weights=(
        WeightSource(
            "official",
            url=_OFFICIAL_B,  # no Hub copy exists: mimzoo downloads the URL into its cache
            layout="official",
            note="the official PySlowFast checkpoint (the same file as mimzoo's first-party maskfeat-vit-b)",
        ),
    ),
    layouts=LAYOUTS,
    reference=Reference(finetune_top1=84.0, epochs=1600,
                        source="facebookresearch/SlowFast projects/maskfeat/README.md, ImageNet-1K table"),
    description="tutorial plugin: MaskFeat ViT-B/16 encoder, pretrained 1600 epochs on ImageNet-1K (not fine-tuned)",
)

# A tiny random-init encoder, so tests (yours and mimzoo's) run in a second on a CPU.
TEST_VARIANT = Variant(
    name="example-hog-vit-test",
    arch="vit_tiny_patch16_224",
    params_m=0.029,
    pooling="avg",
    model_kwargs={**_KWARGS, "img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
    preprocess=Preprocess(input_size=(3, 32, 32)),
    layouts=LAYOUTS,
    description="tiny random-init encoder of the tutorial plugin, for tests (no pretrained weights)",
    test_only=True,
)

METHOD = Method(
    name="example-hog",  # must equal the entry-point name in pyproject.toml
    title="HOG-MIM (plugin tutorial)",
    paper=Paper(
        title="Masked Feature Prediction for Self-Supervised Visual Pre-Training",
        arxiv="2112.09133",
        year=2021,
        authors="Wei, Fan, Xie, Wu, Yuille, Feichtenhofer",
        code="https://github.com/facebookresearch/SlowFast/tree/main/projects/maskfeat",
    ),
    family="reconstruction",
    taxonomy=Taxonomy(
        masking="blockwise",
        mask_ratio=0.4,
        target="hog",
        objective="mse",
        architecture="ViT",
        encoder_input="masked",
        downstream=("classification",),
        details="MaskFeat, as a tutorial: HOG of masked patches (9 bins, 8x8-pixel cells, per RGB channel) "
        "regressed by a linear head with MSE; mask tokens in the encoder input",
    ),
    license="apache-2.0",  # PySlowFast, which releases the weights, is Apache-2.0
    recipe=RECIPE,
    variants=(VIT_B, TEST_VARIANT),
)
