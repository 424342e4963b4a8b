"""BEiT: BERT Pre-Training of Image Transformers (Bao, Dong, Piao, Wei, 2021).

Blockwise masking of about 40% of the patches (75 of 196), the encoder sees the full sequence
with a learned mask token in place of the masked patches, and a linear head predicts the
DALL-E dVAE token (one of 8192) of each masked patch with cross-entropy.

The zoo's encoders are the self-supervised ImageNet-22k checkpoints (``pt22k``), not the
fine-tuned ones timm ships. Default source: their Hugging Face copies
(``microsoft/beit-*-patch16-224-pt22k``, a ``BeitForMaskedImageModeling`` with the mask token
and the LM head, both dropped); the unilm ``beit_*_pt22k.pth`` files load too. See
``layouts.py`` for the shared relative position bias.

Pooling: BEiT's own linear probe (unilm ``beit/run_linear_eval.py``) trains one linear
classifier per block on [CLS token, mean of the patch tokens] and reports the best block, and
its fine-tuning classifies the mean of the final patch tokens. timm's ``Beit`` cannot
concatenate, so the closest faithful pooling is ``'avg'``: the mean of the final-layer patch
tokens, each normalised by the pretrained final ``norm`` (no untrained ``fc_norm``).
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .family import ENCODER_KWARGS, tiny_variant
from .layouts import LAYOUTS

# unilm beit/datasets.py eval transform: resize 256 (bicubic) + center crop 224; pt22k checkpoints
# were pretrained without --imagenet_default_mean_and_std, i.e. with mean = std = 0.5
_PREPROCESS = Preprocess(
    input_size=(3, 224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", crop_pct=0.875
)
_OFFICIAL = "https://conversationhub.blob.core.windows.net/beit-share-public/beit"
_REF_SOURCE = (
    "microsoft/unilm beit/README.md: fine-tuning table, pt22k checkpoint fine-tuned on ImageNet-1k at 224 px; "
    "150 pretraining epochs from its ImageNet-22k pretraining command"
)


def _variant(size: str, arch: str, params_m: float, ft: float) -> Variant:
    long = {"b": "base", "l": "large"}[size]
    hf = WeightSource(
        "hf",
        repo_id=f"microsoft/beit-{long}-patch16-224-pt22k",
        filename="model.safetensors",
        url=f"{_OFFICIAL}/beit_{long}_patch16_224_pt22k.pth",
        layout="transformers",
        note="BeitForMaskedImageModeling conversion of the official self-supervised ImageNet-22k checkpoint",
    )
    return Variant(
        name=f"beit-vit-{size}",
        arch=arch,
        params_m=params_m,
        pooling="avg",
        model_kwargs=dict(ENCODER_KWARGS),
        preprocess=_PREPROCESS,
        weights=(hf,),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=ft, linear_top1=None, epochs=150, pretrain_data="ImageNet-22K",
                            source=_REF_SOURCE),
        description=f"BEiT ViT-{size.upper()}/16 encoder, self-supervised on ImageNet-22k (pt22k, not fine-tuned)",
    )


METHOD = Method(
    name="beit",
    title="BEiT",
    paper=Paper(
        title="BEiT: BERT Pre-Training of Image Transformers",
        arxiv="2106.08254",
        year=2021,
        authors="Bao, Dong, Piao, Wei",
        code="https://github.com/microsoft/unilm/tree/master/beit",
        bibtex=(
            "@inproceedings{bao2022beit,\n"
            "  title={{BEiT}: {BERT} Pre-Training of Image Transformers},\n"
            "  author={Bao, Hangbo and Dong, Li and Piao, Songhao and Wei, Furu},\n"
            "  booktitle={ICLR},\n"
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
        survey_nodes=("target", "objective"),
        details="DALL-E dVAE visual tokens (8192) predicted for ~40% blockwise-masked patches (75 of 196); "
        "mask tokens in the encoder input; cross-entropy on masked patches",
    ),
    license="apache-2.0",
    variants=(
        _variant("b", "beit_base_patch16_224", 85.7, ft=83.7),
        _variant("l", "beit_large_patch16_224", 303.1, ft=86.0),
        tiny_variant("beit-vit-test", "beit_base_patch16_224", pooling="avg", layouts=LAYOUTS,
                     preprocess=_PREPROCESS, what="BEiT"),
    ),
)
