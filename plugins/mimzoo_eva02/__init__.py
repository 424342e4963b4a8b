"""EVA-02: A Visual Representation for Neon Genesis (Fang et al., 2023).

Masked image modeling with a language-aligned target: about 40% of the patches (105 of 256,
blockwise, ``num_mask_patches=105`` in the official pretraining scripts) are replaced by a learned
mask token, the encoder sees the full sequence, and a linear head (``lm_head``) regresses the
EVA-CLIP (g/14) features of the masked patches with a negative cosine loss
(``EVA-02/asuka/engine_for_pretraining.py``, ``compute_loss``). The encoder is a plain ViT with
SwiGLU MLPs, 2D RoPE and, for B/L, sub-LN.

The zoo's encoders are the MIM-pretrained (not fine-tuned) ImageNet-21K checkpoints. The default
source is timm's Hub copy (``timm/eva02_*_patch14_224.mim_in22k``); the raw official files on the
Hub (``Yuxin-CV/EVA-02``, with mask token, ``lm_head`` and RoPE tables) load too, converted the
same way (see layouts.py).

Pooling follows timm's EVA-02 MIM configuration: 'avg' over the patch tokens, then ``fc_norm``,
which holds the pretrained final norm (timm moves ``norm`` there). ``forward_features`` returns
the tokens before that norm. This is also EVA-02's fine-tuning classifier (mean pooling, then a
LayerNorm). Preprocessing: timm's configuration for these weights (OpenAI-CLIP mean/std, as in
EVA-02 pretraining; bicubic; crop 0.9 at 224 px).
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS
from .recipe import RECIPE

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_PREPROCESS = Preprocess(
    input_size=(3, 224, 224), mean=_CLIP_MEAN, std=_CLIP_STD, interpolation="bicubic", crop_pct=0.9
)
_OFFICIAL = "https://huggingface.co/Yuxin-CV/EVA-02/blob/main/eva02/pt/{}"
_REF_SOURCE = (
    "baaivision/EVA EVA-02/asuka/README.md: MIM pre-trained EVA-02 (epochs) and IN-1K fine-tuned EVA-02 without "
    "IN-21K intermediate fine-tuning (top-1 at {} px fine-tuning resolution, not comparable with 224 px)"
)


def _variant(size: str, arch: str, tag: str, params_m: float, ft: float, epochs: int, ft_px: int) -> Variant:
    """A public EVA-02 MIM encoder: timm's Hub copy first, the raw official file second."""
    long = {"t": "Ti", "s": "S", "b": "B", "l": "L"}[size]
    filename = f"eva02_{tag}_pt_in21k_p14.pt"
    url = _OFFICIAL.format(filename)
    sources = (
        WeightSource(
            "timm",
            repo_id=f"timm/{arch}.mim_in22k",
            url=url,
            layout="timm",
            note="timm's conversion of the official MIM checkpoint (mask token and lm_head dropped, norm -> fc_norm)",
        ),
        WeightSource(
            "official",
            repo_id="Yuxin-CV/EVA-02",
            filename=f"eva02/pt/{filename}",
            url=url,
            layout="official",
            note="raw pretraining checkpoint with mask_token, lm_head (EVA-CLIP regressor) and RoPE tables; "
                 "converted on load",
        ),
    )
    return Variant(
        name=f"eva02-vit-{size}",
        arch=arch,
        params_m=params_m,
        pooling="avg",
        preprocess=_PREPROCESS,
        weights=sources,
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=ft, linear_top1=None, epochs=epochs, pretrain_data="ImageNet-21K",
                            source=_REF_SOURCE.format(ft_px)),
        description=f"EVA-02 ViT-{long}/14 encoder, MIM-pretrained {epochs} epochs on ImageNet-21K (not fine-tuned)",
    )


# Tiny encoder for tests, in the B/L layer layout (separate q/k/v, SwiGLU with sub-LN). RoPE's
# reference grid is the tiny encoder's own 8x8 patch grid, as 16x16 is for 224 px / patch 14.
TINY_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "ref_feat_shape": (8, 8)}

METHOD = Method(
    name="eva02",
    title="EVA-02",
    paper=Paper(
        title="EVA-02: A Visual Representation for Neon Genesis",
        arxiv="2303.11331",
        year=2023,
        authors="Fang, Sun, Wang, Huang, Wang, Cao",
        code="https://github.com/baaivision/EVA/tree/master/EVA-02",
        bibtex=(
            "@article{fang2023eva02,\n"
            "  title={EVA-02: A Visual Representation for Neon Genesis},\n"
            "  author={Fang, Yuxin and Sun, Quan and Wang, Xinggang and Huang, Tiejun and Wang, Xinlong "
            "and Cao, Yue},\n"
            "  journal={arXiv preprint arXiv:2303.11331},\n"
            "  year={2023}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=Taxonomy(
        masking="blockwise",
        mask_ratio=0.4,
        target="teacher-features",
        objective="negative-cosine",
        architecture="ViT",
        encoder_input="masked",
        downstream=("classification", "detection", "segmentation"),
        survey_nodes=(),
        details=(
            "blockwise masking of 105/256 patches (~40%) with a mask token; lm_head regresses frozen EVA-CLIP "
            "features of the masked patches; negative cosine loss; ViT with SwiGLU, 2D RoPE, sub-LN (B/L)"
        ),
    ),
    license="mit",
    recipe=RECIPE,
    variants=(
        _variant("t", "eva02_tiny_patch14_224", "Ti", 5.5, ft=80.7, epochs=240, ft_px=336),
        _variant("s", "eva02_small_patch14_224", "S", 21.6, ft=85.8, epochs=240, ft_px=336),
        _variant("b", "eva02_base_patch14_224", "B", 85.8, ft=88.3, epochs=150, ft_px=448),
        _variant("l", "eva02_large_patch14_224", "L", 303.3, ft=89.6, epochs=150, ft_px=448),
        Variant(
            name="eva02-vit-test",
            arch="eva02_base_patch14_224",
            params_m=0.0294,
            pooling="avg",
            model_kwargs=TINY_KWARGS,
            preprocess=_PREPROCESS.with_size(32),
            layouts=LAYOUTS,
            description="tiny random-init EVA-02 (B/L layer layout) for tests (no pretrained weights)",
            test_only=True,
        ),
    ),
)
