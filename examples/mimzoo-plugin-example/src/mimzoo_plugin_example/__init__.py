"""MaskFeat: Masked Feature Prediction for Self-Supervised Visual Pre-Training (Wei et al., 2022).

A worked example of a third-party mimzoo method plugin. The whole plugin is this one
:class:`~mimzoo.registry.Method` (plain data), found through the ``mimzoo.methods`` entry point
declared in ``pyproject.toml``; ``layouts.py`` converts the official checkpoints and
``recipe.py`` declares the pretraining recipe.

MaskFeat masks ~40% of the patches in blocks, gives the encoder the full sequence with a mask
token in place of the masked patches, and regresses the HOG features of the masked patches
with a linear head and MSE. The ImageNet-1K encoders are plain ViTs (PySlowFast's MViT code in
ViT mode), i.e. timm ``vit_*_patch16_224``. Fine-tuning pools the mean of the patch tokens
(``MVIT.USE_MEAN_POOLING``); here ``'avg'`` with ``fc_norm=False``: the mean of the tokens
normalised by the pretrained final norm, with no new, untrained LayerNorm.

The official weights are PySlowFast ``.pyth`` files on dl.fbaipublicfiles.com, with no Hub copy:
each weight source is that URL alone (no ``repo_id``), so ``mimzoo.load("maskfeat-vit-b")``
downloads the file into mimzoo's cache and converts its official layout. Offline, pass
``weights=PATH`` to a downloaded copy.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS
from .recipe import RECIPE

_OFFICIAL = "https://dl.fbaipublicfiles.com/pyslowfast/masked_models"
_SOURCE = "facebookresearch/SlowFast projects/maskfeat/README.md, ImageNet-1K table (fine-tuned top-1)"
# PySlowFast's ImageNet test transform: resize the short side to 256/224 * size (bicubic), center crop
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
# keep the pretrained per-token final norm; no new LayerNorm after average pooling
_KWARGS = {"fc_norm": False}


def _variant(size: str, arch: str, params_m: float, finetune_top1: float) -> Variant:
    """One public ImageNet-1K encoder; `size` is "B" or "L"."""
    source = WeightSource(
        "official",
        url=f"{_OFFICIAL}/in1k_VIT_{size}_MaskFeat_PT_epoch_01600.pyth",
        layout="official",
        note="the official PySlowFast checkpoint (dl.fbaipublicfiles.com, no Hugging Face Hub copy)",
    )
    return Variant(
        name=f"maskfeat-vit-{size.lower()}",
        arch=arch,
        params_m=params_m,
        pooling="avg",
        model_kwargs=_KWARGS,
        preprocess=_PREPROCESS,
        weights=(source,),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=finetune_top1, epochs=1600, source=_SOURCE),
        description=f"MaskFeat ViT-{size}/16 encoder, pretrained 1600 epochs on ImageNet-1K (not fine-tuned)",
    )


# A tiny random-init encoder, so tests (yours and mimzoo's) run in a second on a CPU.
TEST_VARIANT = Variant(
    name="maskfeat-vit-test",
    arch="vit_tiny_patch16_224",
    params_m=0.029,
    pooling="avg",
    model_kwargs={**_KWARGS, "img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
    preprocess=Preprocess(input_size=(3, 32, 32)),
    layouts=LAYOUTS,
    description="tiny random-init MaskFeat ViT for tests (no pretrained weights)",
    test_only=True,
)

METHOD = Method(
    name="maskfeat",  # must equal the entry-point name in pyproject.toml
    title="MaskFeat",
    paper=Paper(
        title="Masked Feature Prediction for Self-Supervised Visual Pre-Training",
        arxiv="2112.09133",
        year=2021,
        authors="Wei, Fan, Xie, Wu, Yuille, Feichtenhofer",
        code="https://github.com/facebookresearch/SlowFast/tree/main/projects/maskfeat",
        bibtex=(
            "@inproceedings{wei2022masked,\n"
            "  title={Masked Feature Prediction for Self-Supervised Visual Pre-Training},\n"
            "  author={Wei, Chen and Fan, Haoqi and Xie, Saining and Wu, Chao-Yuan and Yuille, Alan and "
            "Feichtenhofer, Christoph},\n"
            "  booktitle={CVPR},\n"
            "  year={2022}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=Taxonomy(
        masking="blockwise",
        mask_ratio=0.4,
        target="hog",
        objective="mse",
        architecture="ViT",
        encoder_input="masked",
        downstream=("classification", "video-classification"),
        details="HOG of masked patches (9 bins, 8x8-pixel cells, per RGB channel) regressed by a linear head "
        "with MSE; mask tokens in the encoder input; also pretrains video MViTs",
    ),
    license="apache-2.0",  # PySlowFast, which releases the weights, is Apache-2.0
    recipe=RECIPE,
    variants=(
        _variant("B", "vit_base_patch16_224", 85.8, 84.0),
        _variant("L", "vit_large_patch16_224", 303.3, 85.7),
        TEST_VARIANT,
    ),
)
