"""FCMAE: ConvNeXt V2, Co-designing and Scaling ConvNets with Masked Autoencoders (Woo et al., 2023).

A fully convolutional masked autoencoder: 60% of the 32x32-pixel units of the image are masked
at random, the ConvNeXt V2 encoder runs on the visible pixels only (sparse convolutions, so no
information leaks from masked regions), and a single ConvNeXt block decoder regresses the
per-patch normalised pixels of the masked units with an MSE loss. GRN (global response
normalization) in every block is the architectural half of the co-design.

The zoo's encoders are the self-supervised FCMAE weights (not fine-tuned) of the eight ConvNeXt V2
sizes; their Hub copies under ``timm/`` are the default source and the official ``pt_only``
URLs are recorded as provenance (the official files load too, see ``layouts.py``).

Pooling: global average pooling of the last feature map followed by a LayerNorm, as the official
ConvNeXt V2 classifier and timm's ``head.norm`` do. FCMAE checkpoints have no final norm; it is
set to the identity affine (weight 1, bias 0), the state the official fine-tuning starts from, so
``encoder(x)`` is the parameter-free LayerNorm of the averaged features (details in ``layouts.py``).
``encoder.forward_features(x)`` is the last ``[N, C, H/32, W/32]`` feature map.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS
from .recipe import RECIPE

_OFFICIAL = "https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only"
# main_finetune.py evaluation: resize to 224/0.875 = 256 (bicubic), center crop 224, ImageNet mean/std
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
_REF_SOURCE = (
    "facebookresearch/ConvNeXt-V2 README (ImageNet-1K fine-tuned models, 224 px); 1600 pretraining epochs: "
    "TRAINING.md pretraining command and paper (arXiv 2301.00808) A.2 'all models share the same pre-training setup'"
)
_SIZES = {  # size: (params_m of the headless encoder with its final norm, IN-1K fine-tune top-1)
    "atto": (3.387, 76.7),
    "femto": (4.848, 78.5),
    "pico": (8.553, 80.3),
    "nano": (14.983, 81.9),
    "tiny": (27.866, 83.0),
    "base": (87.693, 84.9),
    "large": (196.42, 85.8),
    "huge": (657.473, 86.3),
}

# a few-thousand-parameter ConvNeXt V2 for tests; transformers' ConvNextV2Config mirrors it
# (depths=[1, 1, 1, 1], hidden_sizes=[4, 8, 12, 16]); 64 px leaves a 2x2 map to pool
TINY_KWARGS = {"depths": (1, 1, 1, 1), "dims": (4, 8, 12, 16)}
TINY_IMG = 64


def _variant(size: str) -> Variant:
    params_m, ft = _SIZES[size]
    source = WeightSource(
        "timm",
        repo_id=f"timm/convnextv2_{size}.fcmae",
        url=f"{_OFFICIAL}/convnextv2_{size}_1k_224_fcmae.pt",
        layout="timm",
        note="official FCMAE-pretrained encoder (pt_only, no final norm), as republished by timm",
    )
    return Variant(
        name=f"fcmae-convnextv2-{size}",
        arch=f"convnextv2_{size}",
        params_m=params_m,
        pooling="avg",
        preprocess=_PREPROCESS,
        weights=(source,),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=ft, linear_top1=None, epochs=1600, source=_REF_SOURCE),
        description=f"ConvNeXt V2-{size.capitalize()} encoder, FCMAE-pretrained 1600 epochs on ImageNet-1K "
        "(not fine-tuned)",
    )


METHOD = Method(
    name="fcmae",
    title="FCMAE (ConvNeXt V2)",
    paper=Paper(
        title="ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
        arxiv="2301.00808",
        year=2023,
        authors="Woo, Debnath, Hu, Chen, Liu, Kweon, Xie",
        code="https://github.com/facebookresearch/ConvNeXt-V2",
        bibtex=(
            "@inproceedings{woo2023convnextv2,\n"
            "  title={{ConvNeXt V2}: Co-designing and Scaling ConvNets with Masked Autoencoders},\n"
            "  author={Woo, Sanghyun and Debnath, Shoubhik and Hu, Ronghang and Chen, Xinlei and Liu, Zhuang "
            "and Kweon, In So and Xie, Saining},\n"
            "  booktitle={CVPR},\n"
            "  year={2023}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=Taxonomy(
        masking="random-block",
        mask_ratio=0.6,
        target="normalized-pixels",
        objective="mse",
        architecture="ConvNeXt",
        encoder_input="visible",
        downstream=("classification", "detection", "segmentation"),
        survey_nodes=("masking", "architecture"),
        details="random 60% of 32x32 mask units; sparse-convolution ConvNeXt V2 (GRN) encoder on visible pixels; "
        "one-block ConvNeXt decoder; MSE on per-patch normalised pixels of masked units",
    ),
    license="cc-by-nc-4.0",
    recipe=RECIPE,
    variants=(
        *(_variant(size) for size in _SIZES),
        Variant(
            name="fcmae-convnextv2-test",
            arch="convnextv2_atto",
            params_m=0.00804,  # 8,040 parameters
            pooling="avg",
            model_kwargs=dict(TINY_KWARGS),
            preprocess=_PREPROCESS.with_size(TINY_IMG),
            layouts=LAYOUTS,
            description="tiny random-init FCMAE ConvNeXt V2 for tests (no pretrained weights)",
            test_only=True,
        ),
    ),
)
