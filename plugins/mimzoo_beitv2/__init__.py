"""BEiT v2: Masked Image Modeling with Vector-Quantized Visual Tokenizers (Peng et al., 2022).

BEiT's recipe (blockwise masking of 75 of 196 patches, mask tokens in the encoder, cross-entropy
on the masked patches) with a semantic target: the ids of a VQ-KD tokenizer distilled from
CLIP-B/16 (8192 codes). A patch-aggregation head (``cls_pt_layers``: two extra blocks fed the
final [CLS] token with the patch tokens of an early block, sharing the LM head) trains the
[CLS] token to summarise the image; it is a pretraining head and is dropped from the encoder.

The zoo's encoders are the official ImageNet-1k pretrained checkpoints (1600 epochs, not
fine-tuned; ``beitv2_*_patch16_224_pt1k.pth``), in the BEiT layout plus ``cls_pt_layers``. They
are not on the Hugging Face Hub: ``mimzoo.load`` downloads them from the official URL.
The shared layout code lives in the ``mimzoo_beit`` plugin (see its ``layouts.py``).

Pooling: the [CLS] token after the final norm. The patch aggregation exists to make that token
a global image representation for linear probing (paper abstract: it "facilitates linear
probing"), so ``'token'`` is the faithful choice here, unlike BEiT and data2vec.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource
from mimzoo_beit.family import ENCODER_KWARGS, tiny_variant
from mimzoo_beit.layouts import BEITV2_HEADS, official_layout

LAYOUTS = (
    official_layout(
        BEITV2_HEADS,
        "microsoft/unilm BEiT v2 checkpoint (beitv2_*_pt1k.pth: BEiT layout + cls_pt_layers) and timm's Beit "
        "state dict; mask_token, lm_head and the patch-aggregation head dropped",
    ),
)
# beit2 run_beitv2_pretraining.py uses --imagenet_default_mean_and_std; eval transform of
# beit2/datasets.py: resize 256 (bicubic) + center crop 224
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
_OFFICIAL = "https://conversationhub.blob.core.windows.net/beit-share-public/beitv2"
_REF_SOURCE = (
    "BEiT v2 paper (arXiv 2208.06366) abstract; microsoft/unilm beit2/get_started_for_image_classification.md "
    "(1600-epoch pt1k checkpoints fine-tuned on ImageNet-1k)"
)


def _variant(size: str, arch: str, params_m: float, ft: float, lin: float | None) -> Variant:
    long = {"b": "base", "l": "large"}[size]
    filename = f"beitv2_{long}_patch16_224_pt1k.pth"
    official = WeightSource(
        "official",
        url=f"{_OFFICIAL}/{filename}",
        layout="official",
        note="the official checkpoint, downloaded from microsoft/unilm's blob store (no Hugging Face Hub copy)",
    )
    return Variant(
        name=f"beitv2-vit-{size}",
        arch=arch,
        params_m=params_m,
        pooling="token",
        model_kwargs=dict(ENCODER_KWARGS),
        preprocess=_PREPROCESS,
        weights=(official,),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=ft, linear_top1=lin, epochs=1600, source=_REF_SOURCE),
        description=f"BEiT v2 ViT-{size.upper()}/16 encoder, pretrained 1600 epochs on ImageNet-1K (not fine-tuned)",
    )


METHOD = Method(
    name="beitv2",
    title="BEiT v2",
    paper=Paper(
        title="BEiT v2: Masked Image Modeling with Vector-Quantized Visual Tokenizers",
        arxiv="2208.06366",
        year=2022,
        authors="Peng, Dong, Bao, Ye, Wei",
        code="https://github.com/microsoft/unilm/tree/master/beit2",
        bibtex=(
            "@article{peng2022beitv2,\n"
            "  title={{BEiT v2}: Masked Image Modeling with Vector-Quantized Visual Tokenizers},\n"
            "  author={Peng, Zhiliang and Dong, Li and Bao, Hangbo and Ye, Qixiang and Wei, Furu},\n"
            "  journal={arXiv preprint arXiv:2208.06366},\n"
            "  year={2022}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=Taxonomy(
        masking="blockwise",
        mask_ratio=0.4,
        target="discrete-tokens",
        objective="cross-entropy",
        architecture="ViT",
        encoder_input="masked",
        downstream=("classification", "segmentation"),
        survey_nodes=(),
        details="VQ-KD visual tokens (8192 codes, tokenizer distilled from CLIP-B/16) predicted for ~40% "
        "blockwise-masked patches with cross-entropy; a patch-aggregation head pretrains the [CLS] token",
    ),
    license="mit",
    variants=(
        _variant("b", "beitv2_base_patch16_224", 85.7, ft=85.5, lin=80.1),
        _variant("l", "beitv2_large_patch16_224", 303.1, ft=87.3, lin=None),
        tiny_variant("beitv2-vit-test", "beitv2_base_patch16_224", pooling="token", layouts=LAYOUTS,
                     preprocess=_PREPROCESS, what="BEiT v2"),
    ),
)
