"""MaskFeat: Masked Feature Prediction for Self-Supervised Visual Pre-Training (Wei et al., 2022).

MaskFeat masks ~40% of the patches in blocks, gives the encoder the full sequence with a mask
token in place of the masked patches, and regresses the HOG features of the masked patches with a
linear head and MSE (``recipe.py``). The ImageNet-1K encoders are plain ViTs: PySlowFast's MViT
code in ViT mode (no pooling, no relative positions), i.e. timm ``vit_*_patch16_224``.

Weights: the official PySlowFast ``.pyth`` pretraining checkpoints on dl.fbaipublicfiles.com
(``projects/maskfeat/README.md``), with no Hub copy: each weight source is that URL alone, so
``mimzoo.load("maskfeat-vit-b")`` downloads the file into mimzoo's cache, reads it with the safe
reader (a ``.pyth`` is a ``torch.save`` pickle: tensors, the optimiser state and the config as YAML
text, nothing that needs code) and converts its official layout (``layouts.py``). Offline, pass
``weights=PATH`` to a downloaded copy.

Pooling: fine-tuning averages the patch tokens (``MVIT.USE_MEAN_POOLING: True`` in the FT
configs) and then applies a LayerNorm that fine-tuning trains from scratch. The pretrained
encoder's only final norm is the per-token LayerNorm at the start of the HOG head, so here
``'avg'`` with ``fc_norm=False``: the mean of the patch tokens normalised by that pretrained norm,
and no new, untrained LayerNorm.

Preprocessing: PySlowFast's ImageNet test transform: resize the short side to 224 / 0.875
(``DATA.IN_VAL_CROP_RATIO``), bicubic, center crop 224, ImageNet mean/std.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS
from .recipe import RECIPE

_OFFICIAL = "https://dl.fbaipublicfiles.com/pyslowfast/masked_models"
_SOURCE = ("facebookresearch/SlowFast projects/maskfeat/README.md, ImageNet-1K table (fine-tuned top-1; "
           "the released checkpoints are epoch 1600)")
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
# keep the pretrained per-token final norm; no new LayerNorm after average pooling
_KWARGS = {"fc_norm": False}


def _variant(size: str, arch: str, params_m: float, finetune_top1: float) -> Variant:
    """One public ImageNet-1K encoder; `size` is "B" or "L"."""
    source = WeightSource(
        "official",
        url=f"{_OFFICIAL}/in1k_VIT_{size}_MaskFeat_PT_epoch_01600.pyth",
        layout="official",
        note="the official PySlowFast pretraining checkpoint (dl.fbaipublicfiles.com, no Hugging Face Hub copy)",
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
        description=f"MaskFeat ViT-{size}/16 encoder, pretrained 1600 epochs on ImageNet-1K with HOG targets "
        "(not fine-tuned)",
    )


# ~29k parameters, so tests build and run the real code path in a fraction of a second
TINY_KWARGS = {**_KWARGS, "img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}

METHOD = Method(
    name="maskfeat",
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
        survey_nodes=("architecture", "target"),
        details="HOG of masked patches (9 bins, 8x8-pixel cells, per RGB channel, each cell L2-normalised) "
        "regressed by a linear head with MSE; mask tokens in the encoder input; also pretrains video MViTs",
    ),
    license="apache-2.0",  # PySlowFast, which releases the weights, is Apache-2.0
    recipe=RECIPE,
    variants=(
        _variant("B", "vit_base_patch16_224", 85.8, 84.0),
        _variant("L", "vit_large_patch16_224", 303.3, 85.7),
        Variant(
            name="maskfeat-vit-test",
            arch="vit_base_patch16_224",
            params_m=0.029,
            pooling="avg",
            model_kwargs=TINY_KWARGS,
            preprocess=_PREPROCESS.with_size(32),
            layouts=LAYOUTS,
            description="tiny random-init MaskFeat ViT for tests (no pretrained weights)",
            test_only=True,
        ),
    ),
)
