"""Hiera: A Hierarchical Vision Transformer without the Bells-and-Whistles (Ryali et al., 2023).

MAE pretraining of a hierarchical ViT stripped of convolutions, shifted windows and relative
position biases. Masking works on 32x32-pixel mask units (8x8 tokens at the first stage): 60% of
them are deleted at random, the encoder runs on the visible units only (mask-unit attention
in the first two stages keeps them separable), a transformer decoder fed with multi-scale fused
encoder features regresses the per-patch normalised pixels of the masked units with an MSE loss.

The zoo's encoders are the official MAE-pretrained weights (``mae_in1k``, not fine-tuned); their
Hub copies under ``timm/`` are the default source, the transformers conversions
(``facebook/hiera-*-224-mae-hf``, with the decoder) a second one, and the official URLs are
recorded as provenance (the official files load too, see ``layouts.py``).

Architecture: the standard Hiera (query pooling at the first three stage transitions), which is
what the paper fine-tunes and evaluates and what timm's ``.mae`` weights and transformers'
``HieraModel`` build. MAE pretraining itself removed the last query pooling (paper appendix A);
query pooling has no parameters, so the same weights serve both.

Pooling: Hiera's own classifier averages the final-stage tokens and applies a LayerNorm (the
official ``Hiera.forward``: ``x.mean(dim=1)`` then ``norm``); timm's ``global_pool='avg'`` with
``head.norm`` is the same. In MAE checkpoints that norm is the pretrained ``encoder_norm``,
as timm and transformers load it; official ``hiera.py`` instead leaves ``norm`` at its init when it
builds a ``Hiera`` from MAE weights (``MaskedAutoencoderHiera`` deletes it and keeps ``encoder_norm``),
so mimzoo's pooled embedding follows timm, not the official classifier's starting point
(``mimzoo info`` says so). ``encoder.forward_features(x)`` gives the final-stage tokens
``[N, (H/32)*(W/32), C]`` in spatial order.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS

_OFFICIAL = "https://dl.fbaipublicfiles.com/hiera"
# the official inference example: resize to 224/0.875 = 256 (bicubic), center crop 224, ImageNet mean/std
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
_REF_SOURCE = (
    "Hiera paper (arXiv 2306.00989) Table 8 (ImageNet-1K fine-tuning, 224 px) and facebookresearch/hiera README; "
    "1600 pretraining epochs: Table 3 footnote and Table 14"
)
# zoo size: (timm / official name, transformers name, params_m of the headless encoder, IN-1K fine-tune top-1)
_SIZES = {
    "t": ("tiny", "tiny", 27.141, 82.8),
    "s": ("small", "small", 34.239, 83.8),
    "b": ("base", "base", 50.756, 84.5),
    "b+": ("base_plus", "base-plus", 69.0, 85.2),
    "l": ("large", "large", 212.587, 86.1),
    "h": ("huge", "huge", 670.731, 86.9),
}

# a few-thousand-parameter Hiera for tests; transformers' HieraConfig mirrors it (embed_dim=4,
# image_size=[64, 64], depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8]); 64 px = 2x2 mask units
TINY_KWARGS = {"img_size": 64, "embed_dim": 4, "num_heads": 1, "stages": (1, 1, 1, 1)}


def _variant(size: str) -> Variant:
    name, hf_name, params_m, ft = _SIZES[size]
    url = f"{_OFFICIAL}/mae_hiera_{name}_224.pth"
    sources = (
        WeightSource(
            "timm",
            repo_id=f"timm/hiera_{name}_224.mae",
            url=url,
            layout="timm",
            note="official MAE-pretrained encoder (mae_in1k), as republished by timm; pooled embedding = mean of the "
            "final-stage tokens, then MAE's encoder_norm as head.norm (timm's convention; official hiera.py leaves "
            "that norm at its init)",
        ),
        WeightSource(
            "hf",
            repo_id=f"facebook/hiera-{hf_name}-224-mae-hf",
            url=url,
            layout="transformers",
            note="transformers HieraForPreTraining conversion of the same checkpoint; the decoder is dropped",
        ),
    )
    return Variant(
        name=f"mae-hiera-{size}",
        arch=f"hiera_{name}_224",
        params_m=params_m,
        pooling="avg",
        preprocess=_PREPROCESS,
        weights=sources,
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=ft, linear_top1=None, epochs=1600, source=_REF_SOURCE),
        description=f"Hiera-{size.upper()} encoder, MAE-pretrained 1600 epochs on ImageNet-1K (not fine-tuned)",
    )


METHOD = Method(
    name="hiera",
    title="Hiera (MAE)",
    paper=Paper(
        title="Hiera: A Hierarchical Vision Transformer without the Bells-and-Whistles",
        arxiv="2306.00989",
        year=2023,
        authors="Ryali, Hu, Bolya, Wei, Fan, Huang, Aggarwal, Chowdhury, Poursaeed, Hoffman, Malik, Li, Feichtenhofer",
        code="https://github.com/facebookresearch/hiera",
        bibtex=(
            "@inproceedings{ryali2023hiera,\n"
            "  title={Hiera: A Hierarchical Vision Transformer without the Bells-and-Whistles},\n"
            "  author={Ryali, Chaitanya and Hu, Yuan-Ting and Bolya, Daniel and Wei, Chen and Fan, Haoqi and "
            "Huang, Po-Yao and Aggarwal, Vaibhav and Chowdhury, Arkabandhu and Poursaeed, Omid and Hoffman, Judy "
            "and Malik, Jitendra and Li, Yanghao and Feichtenhofer, Christoph},\n"
            "  booktitle={ICML},\n"
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
        architecture="Hiera",
        encoder_input="visible",
        downstream=("classification", "video-classification", "detection", "segmentation"),
        survey_nodes=(),
        details="random 60% of 32x32 mask units deleted; hierarchical ViT encoder on visible units (mask-unit "
        "attention); multi-scale fused features to an 8-block decoder; MSE on per-patch normalised pixels",
    ),
    license="cc-by-nc-4.0",
    variants=(
        *(_variant(size) for size in _SIZES),
        Variant(
            name="mae-hiera-test",
            arch="hiera_tiny_224",
            params_m=0.01744,  # 17,436 parameters
            pooling="avg",
            model_kwargs=dict(TINY_KWARGS),
            preprocess=_PREPROCESS.with_size(TINY_KWARGS["img_size"]),
            layouts=LAYOUTS,
            description="tiny random-init MAE Hiera for tests (no pretrained weights)",
            test_only=True,
        ),
    ),
)
