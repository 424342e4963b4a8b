"""SimMIM: A Simple Framework for Masked Image Modeling (Xie et al., 2021).

Random masking of 32x32-pixel blocks (60% of them), the encoder sees the full sequence with a
learned mask token in place of the masked patches, and a single 1x1 conv + PixelShuffle head
regresses the RGB values of the (normalised) input image; the loss is the L1 error over masked
pixels divided by the number of channels (``models/simmim.py``, ``SimMIM.forward``).

The zoo's encoders are the official pretrained (not fine-tuned) ImageNet-1K checkpoints:

- ``simmim-vit-b``: ViT-B/16 at 224 px, BEiT-style (layer scale, one shared relative position
  bias, no absolute position embedding) -> timm ``Beit`` built with a shared bias (see layouts.py);
- ``simmim-swin-b``: Swin-B at 192 px, window 6 -> timm ``SwinTransformer``;
- ``simmim-swin-l``: Swin-L at 192 px, window 12 -> timm ``SwinTransformer`` (its last stage has a
  6x6 feature map, so its window is 6, as in the official code).

The official weights are on Google Drive only; no Hub copy exists. mimzoo's weight sources name
the ``mimzoo/simmim-*`` Hub repos where the project publishes the converted encoders (timm
layout), and record the Drive links as provenance. Until then, pass ``weights=`` the downloaded
``.pth`` (the official layout is detected and converted).

Pooling: SimMIM evaluates by fine-tuning. Its Swin classifier averages the final normalised
tokens ('avg' here). Its ViT classifier averages the patch tokens; the pretrained ViT has a
per-token final ``norm``, so 'avg' here is the mean of the normalised patch tokens (timm ``Beit``
with ``use_fc_norm=False``: no new, untrained LayerNorm after pooling).

Preprocessing: SimMIM's evaluation transform (``data/data_finetune.py``): resize to
``256/224 * size`` with bicubic interpolation, center crop, ImageNet mean/std.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import SWIN_LAYOUTS, VIT_KWARGS, VIT_LAYOUTS
from .recipe import RECIPE

_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
_REF_SOURCE = (
    "microsoft/SimMIM README, ImageNet-1K pre-trained and fine-tuned models: {}; "
    "pretraining configs configs/*/simmim_pretrain__*.yaml"
)
_NOTE = (
    "official SimMIM pretrained encoder (Google Drive only, no Hub copy): mimzoo publishes its timm-layout "
    "conversion in this repo; until it is there, download the .pth from the URL and pass weights=PATH"
)


def _preprocess(size: int) -> Preprocess:
    """SimMIM's evaluation transform at `size` px: 256/224 resize (bicubic), center crop, ImageNet stats."""
    return Preprocess(input_size=(3, size, size), interpolation="bicubic", crop_pct=0.875)


def _source(name: str, drive_id: str) -> WeightSource:
    return WeightSource(
        "mimzoo",
        repo_id=f"mimzoo/{name}",
        filename="model.safetensors",
        url=_DRIVE.format(drive_id),
        layout="timm",
        note=_NOTE,
    )


SIMMIM_VIT_B = Variant(
    name="simmim-vit-b",
    arch="beit_base_patch16_224",
    params_m=85.7,
    pooling="avg",
    model_kwargs=dict(VIT_KWARGS),
    preprocess=_preprocess(224),
    weights=(_source("simmim-vit-b", "1dJn6GYkwMIcoP3zqOEyW1_iQfpBi8UOw"),),
    layouts=VIT_LAYOUTS,
    reference=Reference(
        finetune_top1=83.8, linear_top1=None, epochs=800,
        source=_REF_SOURCE.format("ViT-Base, 800 ep at 224 px, fine-tuned at 224 px"),
    ),
    description="SimMIM ViT-B/16 encoder (BEiT-style), pretrained 800 epochs on ImageNet-1K at 224 px (not fine-tuned)",
)

SIMMIM_SWIN_B = Variant(
    name="simmim-swin-b",
    arch="swin_base_patch4_window7_224",
    params_m=86.7,
    pooling="avg",
    model_kwargs={"img_size": 192, "window_size": 6},
    preprocess=_preprocess(192),
    weights=(_source("simmim-swin-b", "15zENvGjHlM71uKQ3d2FbljWPubtrPtjl"),),
    layouts=SWIN_LAYOUTS,
    reference=Reference(
        finetune_top1=84.0, linear_top1=None, epochs=800,
        source=_REF_SOURCE.format("Swin-Base, 800 ep at 192 px (window 6), fine-tuned at 224 px (window 7)"),
    ),
    description="SimMIM Swin-B encoder (window 6), pretrained 800 epochs on ImageNet-1K at 192 px (not fine-tuned)",
)

SIMMIM_SWIN_L = Variant(
    name="simmim-swin-l",
    arch="swin_large_patch4_window7_224",
    params_m=195.2,
    pooling="avg",
    model_kwargs={"img_size": 192, "window_size": 12},
    preprocess=_preprocess(192),
    weights=(_source("simmim-swin-l", "1qDxrTl2YUDB0505_4QrU5LU2R1kKmcBP"),),
    layouts=SWIN_LAYOUTS,
    reference=Reference(
        finetune_top1=85.4, linear_top1=None, epochs=800,
        source=_REF_SOURCE.format("Swin-Large, 800 ep at 192 px (window 12), fine-tuned at 224 px (window 14)"),
    ),
    description="SimMIM Swin-L encoder (window 12), pretrained 800 epochs on ImageNet-1K at 192 px (not fine-tuned)",
)

# Tiny encoders for tests. The Swin one has three stages (16x16, 8x8, 4x4 tokens) with window 4:
# two shifted-window stages and one whose map equals the window (no shift), the cases
# transformers' SwinModel (the independent reference) handles; a transformers SwinConfig(
# image_size=32, patch_size=2, embed_dim=8, depths=[2, 2, 2], num_heads=[1, 2, 4], window_size=4)
# mirrors it. The ViT one mirrors a transformers BeitConfig(image_size=32, patch_size=4,
# hidden_size=32, 2 layers, 2 heads, intermediate 128, shared relative position bias).
SIMMIM_SWIN_TEST = Variant(
    name="simmim-swin-test",
    arch="swin_base_patch4_window7_224",
    params_m=0.0373,
    pooling="avg",
    model_kwargs={"img_size": 32, "patch_size": 2, "embed_dim": 8, "depths": (2, 2, 2), "num_heads": (1, 2, 4),
                  "window_size": 4},
    preprocess=_preprocess(32),
    layouts=SWIN_LAYOUTS,
    description="tiny random-init SimMIM Swin for tests (no pretrained weights)",
    test_only=True,
)

SIMMIM_VIT_TEST = Variant(
    name="simmim-vit-test",
    arch="beit_base_patch16_224",
    params_m=0.0276,
    pooling="avg",
    model_kwargs={"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 4.0,
                  **VIT_KWARGS},
    preprocess=_preprocess(32),
    layouts=VIT_LAYOUTS,
    description="tiny random-init SimMIM ViT (BEiT-style) for tests (no pretrained weights)",
    test_only=True,
)

METHOD = Method(
    name="simmim",
    title="SimMIM",
    paper=Paper(
        title="SimMIM: A Simple Framework for Masked Image Modeling",
        arxiv="2111.09886",
        year=2021,
        authors="Xie, Zhang, Cao, Lin, Bao, Yao, Dai, Hu",
        code="https://github.com/microsoft/SimMIM",
        bibtex=(
            "@inproceedings{xie2021simmim,\n"
            "  title={SimMIM: A Simple Framework for Masked Image Modeling},\n"
            "  author={Xie, Zhenda and Zhang, Zheng and Cao, Yue and Lin, Yutong and Bao, Jianmin and Yao, Zhuliang "
            "and Dai, Qi and Hu, Han},\n"
            "  booktitle={CVPR},\n"
            "  year={2022}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=Taxonomy(
        masking="random-block",
        mask_ratio=0.6,
        target="pixels",
        objective="l1",
        architecture="ViT/Swin",
        encoder_input="masked",
        downstream=("classification",),
        survey_nodes=("masking",),
        details=(
            "random 32x32-pixel mask blocks (60%); learned mask token in the encoder; 1x1 conv + PixelShuffle head "
            "regresses the normalised input pixels; L1 over masked pixels / 3"
        ),
    ),
    license="mit",
    recipe=RECIPE,
    variants=(SIMMIM_VIT_B, SIMMIM_SWIN_B, SIMMIM_SWIN_L, SIMMIM_SWIN_TEST, SIMMIM_VIT_TEST),
)
