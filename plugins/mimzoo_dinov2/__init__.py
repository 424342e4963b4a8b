"""DINOv2: Learning Robust Visual Features without Supervision (Oquab et al., 2023), and the
``-reg4`` backbones of Vision Transformers Need Registers (Darcet et al., 2023).

The hybrid branch of the survey: DINO's cross-view self-distillation on the class token plus
iBOT's masked-patch self-distillation. A student ViT sees global crops with blockwise-masked patches
(replaced by a learned mask token) and local crops; it matches, on the class token and on the
masked patch tokens, the centred (Sinkhorn-Knopp) and sharpened softmax over learned prototypes of
an EMA teacher that sees the unmasked views: the teacher's prototypes act as an online tokenizer.
A KoLeo regulariser spreads the class-token features. ViT-g/14 is trained from scratch on
LVD-142M; ViT-S/B/L/14 are distilled from it.

Variants: ``dinov2-vit-{s14,b14,l14,g14}`` and their ``-reg4`` twins (4 register tokens). ViT-g/14
uses a SwiGLU FFN (official ``swiglufused``: ``w12`` packs the gate and up projections; timm's
``SwiGLUPacked``; transformers' ``use_swiglu_ffn``), every block has LayerScale.

Pooling (``token-avg``): the class token concatenated with the mean of the patch tokens (registers
excluded), both after the final norm, ``2 x embed_dim`` wide: the configuration the official
linear evaluation (``dinov2/eval/linear.py``: ``create_linear_input`` with one block and
``use_avgpool``) and transformers' ``Dinov2ForImageClassification`` use. The paper's linear figure
is the best of a grid over that and other inputs (the class tokens of the last 4 blocks, with or
without the patch mean) and learning rates; its k-NN figure uses the L2-normalised class token
alone (``dinov2/eval/knn.py``, T = 0.07). ``forward_features`` returns every token
(``[CLS, registers, patches]``), so the class token alone is ``encoder.forward_features(x)[:, 0]``.

Input size: 224 px by default (resize 256, center crop 224, bicubic, ImageNet mean/std), the
protocol of the official evaluations (``make_classification_eval_transform``) and of every number
quoted here; a classification user expects it, and it costs about a tenth of 518 px. The released
weights carry a 37 x 37 position table (518 px, their last training stage); mimzoo resamples it once
at load, exactly as the official model does at run time (see ``layouts.py``). Pass
``img_size=518`` for the native table (dense tasks), or any multiple of 14.

Weights: timm's Hub copies (``timm/vit_*_patch14{,_reg4}_dinov2.lvd142m``) by default, the
``facebook/dinov2-*`` transformers repos, or the official files on dl.fbaipublicfiles.com.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS

_OFFICIAL = "https://dl.fbaipublicfiles.com/dinov2"
# the official evaluation transform: resize 256, center crop 224, bicubic, ImageNet mean/std
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
_README = ("facebookresearch/dinov2 README, 'Pretrained models' table (ImageNet k-NN / linear), checked at commit "
           "b8931f7; the paper tables (arXiv 2304.07193{}) could not be opened offline to cross-check; the official "
           "k-NN uses the class token alone, the linear figure is the best of a grid over probe inputs")
_SIZES = {  # zoo size -> (timm size, official short name, HF size, width, title)
    "s14": ("small", "vits14", "small", 384, "ViT-S/14 distilled"),
    "b14": ("base", "vitb14", "base", 768, "ViT-B/14 distilled"),
    "l14": ("large", "vitl14", "large", 1024, "ViT-L/14 distilled"),
    "g14": ("giant", "vitg14", "giant", 1536, "ViT-g/14"),
}
# encoder parameters at 224 px (a 16 x 16 position table), counted from timm's models
_PARAMS = {("s14", False): 21.629, ("s14", True): 21.630, ("b14", False): 85.725, ("b14", True): 85.727,
           ("l14", False): 303.228, ("l14", True): 303.231, ("g14", False): 1134.770, ("g14", True): 1134.774}
# (k-NN, linear) ImageNet-1K top-1 from the official README
_TOP1 = {("s14", False): (79.0, 81.1), ("s14", True): (79.1, 80.9), ("b14", False): (82.1, 84.5),
         ("b14", True): (82.0, 84.6), ("l14", False): (83.5, 86.3), ("l14", True): (83.8, 86.7),
         ("g14", False): (83.5, 86.5), ("g14", True): (83.7, 87.1)}


def _variant(size: str, registers: bool) -> Variant:
    timm_size, short, hf_size, width, title = _SIZES[size]
    reg = "_reg4" if registers else ""
    url = f"{_OFFICIAL}/dinov2_{short}/dinov2_{short}{reg}_pretrain.pth"
    hf_repo = f"facebook/dinov2-with-registers-{hf_size}" if registers else f"facebook/dinov2-{hf_size}"
    arch = f"vit_{timm_size}_patch14{reg}_dinov2"
    knn, linear = _TOP1[(size, registers)]
    what = f"{title}{' with 4 registers' if registers else ''}"
    return Variant(
        name=f"dinov2-vit-{size}{'-reg4' if registers else ''}",
        arch=arch,
        params_m=_PARAMS[(size, registers)],
        pooling="token-avg",
        model_kwargs={"img_size": 224},  # the released 37 x 37 table is resampled to 16 x 16 at load
        preprocess=_PREPROCESS,
        weights=(
            WeightSource("timm", repo_id=f"timm/{arch}.lvd142m", url=url, layout="timm",
                         note="timm's Hub copy of the official backbone (37 x 37 position table, resampled at load "
                         "to the 224 px grid the official way)"),
            WeightSource("hf", repo_id=hf_repo, url=url, layout="transformers",
                         note=f"transformers {'Dinov2WithRegistersModel' if registers else 'Dinov2Model'} conversion "
                         "of the official backbone"),
            WeightSource("official", url=url, layout="official",
                         note="the official backbone file (dl.fbaipublicfiles.com), downloaded into mimzoo's cache"),
        ),
        layouts=LAYOUTS,
        reference=Reference(
            knn_top1=knn, linear_top1=linear, pretrain_data="LVD-142M",
            source=_README.format("; arXiv 2309.16588 for registers" if registers else ""),
        ),
        description=f"DINOv2 {what}, self-supervised on LVD-142M (not fine-tuned); 224 px, [CLS] + mean of the "
        f"patch tokens ({2 * width}-d)",
    )


# tiny encoders for tests (patch 14, 56 px = a 4 x 4 grid, 32-d, 2 blocks); transformers' Dinov2Config
# mirrors them with hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=4
TINY_KWARGS = {"img_size": 56, "patch_size": 14, "embed_dim": 32, "depth": 2, "num_heads": 2}
# SwiGLU as ViT-g/14: official hidden (int(4 * 32 * 2 / 3) + 7) // 8 * 8 = 88, packed 176 = 5.5 x 32
TINY_SWIGLU_KWARGS = {**TINY_KWARGS, "mlp_ratio": 5.5}


def _test_variant(name: str, arch: str, params_m: float, kwargs: dict, what: str) -> Variant:
    return Variant(
        name=name,
        arch=arch,
        params_m=params_m,
        pooling="token-avg",
        model_kwargs=kwargs,
        preprocess=_PREPROCESS.with_size(kwargs["img_size"]),
        layouts=LAYOUTS,
        description=f"tiny random-init DINOv2 ViT ({what}) for tests",
        test_only=True,
    )


METHOD = Method(
    name="dinov2",
    title="DINOv2",
    paper=Paper(
        title="DINOv2: Learning Robust Visual Features without Supervision",
        arxiv="2304.07193",
        year=2023,
        authors="Oquab, Darcet, Moutakanni, Vo, Szafraniec, Khalidov, Fernandez, Haziza, Massa, El-Nouby, et al.",
        code="https://github.com/facebookresearch/dinov2",
        bibtex=(
            "@article{oquab2023dinov2,\n"
            "  title={{DINOv2}: Learning Robust Visual Features without Supervision},\n"
            "  author={Oquab, Maxime and Darcet, Timoth{\\'e}e and Moutakanni, Th{\\'e}o and Vo, Huy V. and "
            "Szafraniec, Marc and Khalidov, Vasil and Fernandez, Pierre and Haziza, Daniel and Massa, Francisco and "
            "El-Nouby, Alaaeldin and others},\n"
            "  journal={Transactions on Machine Learning Research},\n"
            "  year={2024}\n"
            "}\n"
            "@inproceedings{darcet2024registers,\n"
            "  title={Vision Transformers Need Registers},\n"
            "  author={Darcet, Timoth{\\'e}e and Oquab, Maxime and Mairal, Julien and Bojanowski, Piotr},\n"
            "  booktitle={ICLR},\n"
            "  year={2024}\n"
            "}"
        ),
    ),
    family="hybrid",
    taxonomy=Taxonomy(
        masking="blockwise",
        mask_ratio=None,  # half of the global crops of a batch are masked, their ratios spread over 0.1-0.5
        target="online-tokenizer",
        objective="self-distillation",
        architecture="ViT",
        encoder_input="masked",
        downstream=("classification", "segmentation", "depth-estimation", "retrieval"),
        survey_nodes=(),
        details="DINO [CLS] self-distillation across global and local crops plus iBOT masked-patch "
        "self-distillation (blockwise masks on half of the global crops, ratio 0.1-0.5) against an EMA teacher's "
        "Sinkhorn-Knopp-centred softmax over learned prototypes, KoLeo regulariser; ViT-g/14 trained on LVD-142M, "
        "S/B/L distilled from it",
    ),
    license="apache-2.0",
    variants=(
        *(_variant(size, registers) for size in _SIZES for registers in (False, True)),
        _test_variant("dinov2-vit-test", "vit_small_patch14_dinov2", 0.045, TINY_KWARGS, "MLP FFN"),
        _test_variant("dinov2-vit-test-reg4", "vit_small_patch14_reg4_dinov2", 0.045, TINY_KWARGS,
                      "MLP FFN, 4 registers"),
        _test_variant("dinov2-vit-test-swiglu", "vit_giant_patch14_dinov2", 0.046, TINY_SWIGLU_KWARGS,
                      "SwiGLU FFN as ViT-g/14"),
    ),
)
