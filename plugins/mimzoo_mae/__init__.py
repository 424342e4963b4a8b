"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al., 2021).

Random 75% patch masking, a ViT encoder on the visible patches only, a light transformer
decoder regressing per-patch normalised pixels with MSE on the masked patches.

The zoo's encoders are the official pretrained (not fine-tuned) weights; their Hub copies under
``timm/`` are the default source and the official URLs are recorded as provenance. Linear
probing in the paper uses the class token after the final norm (MAE's main_linprobe.py default),
which is the pooling here.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Variant, WeightSource

from .digits import DIGITS_VARIANT
from .layouts import LAYOUTS
from .recipe import RECIPE
from .taxonomy import TAXONOMY

_OFFICIAL = "https://dl.fbaipublicfiles.com/mae"
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
_REF_SOURCE = "MAE paper (arXiv 2111.06377) Tables 3 and 9; facebookresearch/mae README"


def _variant(size: str, arch: str, params_m: float, ft: float, lin: float, vis: bool = True) -> Variant:
    long = {"b": "base", "l": "large", "h": "huge"}[size]
    sources = [
        WeightSource(
            "timm",
            repo_id=f"timm/{arch}.mae",
            url=f"{_OFFICIAL}/pretrain/mae_pretrain_vit_{long}.pth",
            layout="timm",
            note="official norm-pix pretrained encoder, as republished by timm",
        ),
        WeightSource(
            "vis",
            repo_id=f"facebook/vit-mae-{long}",
            filename="pytorch_model.bin",
            url=f"{_OFFICIAL}/visualize/mae_visualize_vit_{long}.pth",
            layout="transformers",
            note="raw-pixel visualization weights with the decoder: good for reconstructions, not the paper's numbers",
        ),
    ]
    return Variant(
        name=f"mae-vit-{size}",
        arch=arch,
        params_m=params_m,
        pooling="token",
        preprocess=_PREPROCESS,
        weights=tuple(sources),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=ft, linear_top1=lin, epochs=1600, source=_REF_SOURCE),
        description=f"MAE ViT-{size.upper()} encoder, pretrained 1600 epochs on ImageNet-1K (not fine-tuned)",
    )


METHOD = Method(
    name="mae",
    title="MAE",
    paper=Paper(
        title="Masked Autoencoders Are Scalable Vision Learners",
        arxiv="2111.06377",
        year=2021,
        authors="He, Chen, Xie, Li, Dollár, Girshick",
        code="https://github.com/facebookresearch/mae",
        bibtex=(
            "@inproceedings{he2022mae,\n"
            "  title={Masked Autoencoders Are Scalable Vision Learners},\n"
            "  author={He, Kaiming and Chen, Xinlei and Xie, Saining and Li, Yanghao and Doll{\\'a}r, Piotr and Girshick, Ross},\n"
            "  booktitle={CVPR},\n"
            "  year={2022}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=TAXONOMY,
    license="cc-by-nc-4.0",
    recipe=RECIPE,
    variants=(
        _variant("b", "vit_base_patch16_224", 85.8, ft=83.6, lin=68.0),
        _variant("l", "vit_large_patch16_224", 303.3, ft=85.9, lin=75.8),
        _variant("h", "vit_huge_patch14_224", 630.8, ft=86.9, lin=76.6),
        DIGITS_VARIANT,  # pretrained here on scikit-learn digits; ships inside the package
        Variant(
            name="mae-vit-test",
            arch="vit_tiny_patch16_224",
            params_m=0.029,
            pooling="token",
            model_kwargs={"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
            preprocess=Preprocess(input_size=(3, 32, 32), crop_pct=0.875),
            layouts=LAYOUTS,
            description="tiny random-init MAE ViT for tests (no pretrained weights)",
            test_only=True,
        ),
    ),
)
