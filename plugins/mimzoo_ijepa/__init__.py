"""I-JEPA: Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture
(Assran et al., 2023).

Multi-block masking: four target blocks (scale 0.15-0.2 of the image, aspect ratio 0.75-1.5)
and one context block (scale 0.85-1.0) from which the target patches are removed. The context
encoder sees only the context patches; a narrow ViT predictor, fed the context tokens plus mask
tokens at the target positions, regresses the layer-normalised patch features that an EMA copy
of the encoder (the target encoder) computes on the full image.

Which encoder: every I-JEPA training checkpoint holds two encoders. The paper evaluates the
**target encoder**, average-pooling its output (appendix A.1; facebookresearch/ijepa issue #51),
while timm's ``*_ijepa`` weights and the ``facebook/ijepa_*`` transformers conversions hold the
**context encoder** (``checkpoint['encoder']``). The zoo exposes both as separate variants,
because the name then says which encoder you get, whatever file it comes from:

- ``ijepa-vit-h14``, ``ijepa-vit-h16-448``, ``ijepa-vit-g16``: the target encoder, the paper's
  protocol and the one its numbers describe;
- ``ijepa-vit-h14-context`` etc.: the context encoder, what timm and HF load.

A layout choice per weight source alone would not be enough: a local file passed with
``weights=PATH`` goes through layout detection, which cannot know which encoder was meant, and
an encoder carrying one name with the other's weights would mislabel every number measured on it.
Each variant's official layout (``official-target`` / ``official-context``) picks its sub-dict
from the same training checkpoint, and the target variants refuse HF files with a pointer to
the context variant.

Weights: the official training checkpoints are on ``dl.fbaipublicfiles.com`` only (no Hub
copy; ``mimzoo.load`` downloads them from there); the context encoders are also on the Hub as
``facebook/ijepa_*`` (transformers layout), the default source of the context variants.

Pooling: the mean of the final-norm patch tokens (no class token, no extra ``fc_norm``), as the
paper's evaluation average-pools the encoder output; timm's ``vit_*_gap_*`` models with
``global_pool='avg'`` do exactly that.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import CONTEXT_LAYOUTS, TARGET_LAYOUTS, TEST_LAYOUTS
from .recipe import RECIPE

_OFFICIAL = "https://dl.fbaipublicfiles.com/ijepa"
# timm's pretrained_cfg of the *_ijepa tags: ImageNet mean/std (the official pretraining
# transforms normalise with them too), bicubic, crop_pct 0.9 at 224 px and 1.0 at 448 px
_PREPROCESS_224 = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.9)
_PREPROCESS_448 = Preprocess(input_size=(3, 448, 448), interpolation="bicubic", crop_pct=1.0)
_PAPER_SOURCE = "I-JEPA paper (arXiv 2301.08243) Table 1: ImageNet-1K linear evaluation of the target encoder"
_README_SOURCE = "facebookresearch/ijepa README (pretrained models table: epochs and data)"


def _official_source(file: str, layout: str, encoder: str) -> WeightSource:
    """The official training checkpoint, read as the target or the context encoder."""
    return WeightSource(
        "official",
        url=f"{_OFFICIAL}/{file}",
        layout=layout,
        note=f"official training checkpoint (dl.fbaipublicfiles.com, no Hugging Face Hub copy), loaded as its "
        f"{encoder} encoder",
    )


def _pair(
    name: str,
    arch: str,
    params_m: float,
    *,
    file: str,
    hf_repo: str,
    preprocess: Preprocess,
    model_kwargs: dict[str, int],
    what: str,
    target_ref: Reference,
    epochs: int,
    pretrain_data: str,
) -> tuple[Variant, Variant]:
    """The target-encoder variant `name` and its context-encoder twin `name-context`."""
    target = Variant(
        name=name,
        arch=arch,
        params_m=params_m,
        pooling="avg",
        model_kwargs=dict(model_kwargs),
        preprocess=preprocess,
        weights=(_official_source(file, "official-target", "EMA target"),),
        layouts=TARGET_LAYOUTS,
        reference=target_ref,
        description=f"I-JEPA {what} target encoder (EMA; the one the paper evaluates), pretrained {epochs} epochs "
        f"on {pretrain_data} (not fine-tuned)",
    )
    hf = WeightSource(
        "hf",
        repo_id=hf_repo,
        filename="model.safetensors",
        url=f"{_OFFICIAL}/{file}",
        layout="transformers",
        note="transformers IJepaModel conversion of the official checkpoint's context encoder ('encoder')",
    )
    context = Variant(
        name=f"{name}-context",
        arch=arch,
        params_m=params_m,
        pooling="avg",
        model_kwargs=dict(model_kwargs),
        preprocess=preprocess,
        weights=(hf, _official_source(file, "official-context", "context")),
        layouts=CONTEXT_LAYOUTS,
        reference=Reference(
            epochs=epochs,
            pretrain_data=pretrain_data,
            source=f"{_README_SOURCE}; no top-1 figures: the paper reports the target encoder only",
        ),
        description=f"I-JEPA {what} context encoder (what timm and HF transformers load), pretrained {epochs} epochs "
        f"on {pretrain_data} (not fine-tuned)",
    )
    return target, context


_H14 = _pair(
    "ijepa-vit-h14",
    "vit_huge_patch14_gap_224",
    630.8,
    file="IN1K-vit.h.14-300e.pth.tar",
    hf_repo="facebook/ijepa_vith14_1k",
    preprocess=_PREPROCESS_224,
    model_kwargs={},
    what="ViT-H/14",
    target_ref=Reference(linear_top1=79.3, epochs=300, source=_PAPER_SOURCE),
    epochs=300,
    pretrain_data="ImageNet-1K",
)
_H16_448 = _pair(
    "ijepa-vit-h16-448",
    "vit_huge_patch16_gap_448",
    631.7,
    file="IN1K-vit.h.16-448px-300e.pth.tar",
    hf_repo="facebook/ijepa_vith16_1k",
    preprocess=_PREPROCESS_448,
    model_kwargs={"img_size": 448},  # pretrained at 448 px: a 28 x 28 grid of 16 px patches
    what="ViT-H/16 at 448 px",
    target_ref=Reference(linear_top1=81.1, epochs=300, source=_PAPER_SOURCE),
    epochs=300,
    pretrain_data="ImageNet-1K",
)
_G16 = _pair(
    "ijepa-vit-g16",
    "vit_giant_patch16_gap_224",
    1011.4,
    file="IN22K-vit.g.16-600e.pth.tar",
    hf_repo="facebook/ijepa_vitg16_22k",
    preprocess=_PREPROCESS_224,
    model_kwargs={},
    what="ViT-g/16",
    # the paper reports this model on transfer tasks only, no ImageNet-1K top-1
    target_ref=Reference(epochs=44, pretrain_data="ImageNet-22K",
                         source=f"{_README_SOURCE}; the paper gives no ImageNet-1K top-1 for ViT-g/16"),
    epochs=44,
    pretrain_data="ImageNet-22K",
)

# a ~29k-parameter encoder for tests; transformers' IJepaConfig mirrors it (image_size=32,
# patch_size=4, hidden_size=32, 2 layers, 2 heads, intermediate_size=128, layer_norm_eps=1e-6)
TINY_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 4.0}

METHOD = Method(
    name="ijepa",
    title="I-JEPA",
    paper=Paper(
        title="Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture",
        arxiv="2301.08243",
        year=2023,
        authors="Assran, Duval, Misra, Bojanowski, Vincent, Rabbat, LeCun, Ballas",
        code="https://github.com/facebookresearch/ijepa",
        bibtex=(
            "@inproceedings{assran2023ijepa,\n"
            "  title={Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture},\n"
            "  author={Assran, Mahmoud and Duval, Quentin and Misra, Ishan and Bojanowski, Piotr and Vincent, Pascal "
            "and Rabbat, Michael and LeCun, Yann and Ballas, Nicolas},\n"
            "  booktitle={CVPR},\n"
            "  year={2023}\n"
            "}"
        ),
    ),
    family="contrastive",
    taxonomy=Taxonomy(
        masking="multi-block",
        mask_ratio=None,  # the context keeps 0.85-1.0 of the image minus 4 overlapping targets: no fixed ratio
        target="ema-features",
        objective="smooth-l1",
        architecture="ViT",
        encoder_input="visible",
        downstream=("classification", "object-counting", "depth-prediction"),
        survey_nodes=(),
        details="4 target blocks (scale 0.15-0.2, aspect 0.75-1.5) and 1 context block (scale 0.85-1.0) minus "
        "the targets; a narrow ViT predictor fed mask tokens regresses the LayerNorm'd patch features of the EMA "
        "target encoder; the official code uses F.smooth_l1_loss, the paper writes an L2 loss",
    ),
    license="cc-by-nc-4.0",
    recipe=RECIPE,
    variants=(
        *_H14,
        *_H16_448,
        *_G16,
        Variant(
            name="ijepa-vit-test",
            arch="vit_huge_patch14_gap_224",
            params_m=0.029,
            pooling="avg",
            model_kwargs=TINY_KWARGS,
            preprocess=_PREPROCESS_224.with_size(TINY_KWARGS["img_size"]),
            layouts=TEST_LAYOUTS,
            description="tiny random-init I-JEPA ViT (target-encoder layouts plus the HF one) for tests",
            test_only=True,
        ),
    ),
)
