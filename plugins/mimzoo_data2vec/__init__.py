"""data2vec (vision): A General Framework for Self-supervised Learning in Speech, Vision and Language
(Baevski, Hsu, Xu, Babu, Gu, Auli, 2022).

A student BEiT encoder sees the image with about 60% of the patches blockwise-masked (120 of
196, blocks of at least 16 patches) and replaced by a mask token; it regresses, at the masked
positions and with smooth-L1 (beta 2), the average of the top 6 block outputs of an EMA teacher
that sees the whole image, each output normalised before averaging. In the survey's R/C split
this teacher-student latent prediction is contrastive-based.

The zoo's encoders are the official ImageNet-1k pretrained students (not fine-tuned), a BEiT
architecture loaded through the same layouts as BEiT (``mimzoo_beit/layouts.py``). Default
source: their Hugging Face copies ``facebook/data2vec-vision-{base,large}``
(``Data2VecVisionModel``); the official ``checkpoint-799.pth`` files load too (their ``model``
entry, the student; the ``lm_head`` regression head and the mask token are dropped).

Pooling: data2vec evaluates vision by fine-tuning with BEiT's classifier, which pools the mean
of the final patch tokens; here ``'avg'`` is that mean over tokens normalised by the pretrained
final ``norm`` (no untrained ``fc_norm``).
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource
from mimzoo_beit.family import ENCODER_KWARGS, tiny_variant
from mimzoo_beit.layouts import DATA2VEC_HEADS, TRANSFORMERS_LAYOUT, official_layout

from .recipe import RECIPE

LAYOUTS = (
    official_layout(
        DATA2VEC_HEADS,
        "facebookresearch/data2vec_vision checkpoint (checkpoint-799.pth 'model': BEiT layout + D x D lm_head) "
        "and timm's Beit state dict; mask_token and lm_head dropped",
    ),
    TRANSFORMERS_LAYOUT,
)
# data2vec_vision pretrains with --imagenet_default_mean_and_std; its BEiT eval transform is
# resize 256 (bicubic) + center crop 224
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
_OFFICIAL = "https://dl.fbaipublicfiles.com/fairseq/data2vec/data2vec_vision"


def _variant(size: str, arch: str, params_m: float, *, folder: str, epochs: int, ft: float | None,
             source: str, note: str) -> Variant:
    long = {"b": "base", "l": "large"}[size]
    hf = WeightSource(
        "hf",
        repo_id=f"facebook/data2vec-vision-{long}",
        filename="pytorch_model.bin",
        url=f"{_OFFICIAL}/{folder}/checkpoint-799.pth",
        layout="transformers",
        note=note,
    )
    return Variant(
        name=f"data2vec-vit-{size}",
        arch=arch,
        params_m=params_m,
        pooling="avg",
        model_kwargs=dict(ENCODER_KWARGS),
        preprocess=_PREPROCESS,
        weights=(hf,),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=ft, linear_top1=None, epochs=epochs, source=source),
        description=f"data2vec ViT-{size.upper()}/16 encoder (student), pretrained {epochs} epochs on ImageNet-1K "
        "(not fine-tuned)",
    )


METHOD = Method(
    name="data2vec",
    title="data2vec",
    paper=Paper(
        title="data2vec: A General Framework for Self-supervised Learning in Speech, Vision and Language",
        arxiv="2202.03555",
        year=2022,
        authors="Baevski, Hsu, Xu, Babu, Gu, Auli",
        code="https://github.com/facebookresearch/data2vec_vision/tree/main/beit",
        bibtex=(
            "@inproceedings{baevski2022data2vec,\n"
            "  title={data2vec: A General Framework for Self-supervised Learning in Speech, Vision and Language},\n"
            "  author={Baevski, Alexei and Hsu, Wei-Ning and Xu, Qiantong and Babu, Arun and Gu, Jiatao and "
            "Auli, Michael},\n"
            "  booktitle={ICML},\n"
            "  year={2022}\n"
            "}"
        ),
    ),
    family="contrastive",
    taxonomy=Taxonomy(
        masking="blockwise",
        mask_ratio=0.6,
        target="ema-features",
        objective="smooth-l1",
        architecture="ViT",
        encoder_input="masked",
        downstream=("classification",),
        survey_nodes=(),
        details="student regresses the mean of the EMA teacher's top-6 normalised block outputs at ~60% "
        "blockwise-masked patches (120 of 196), smooth-L1 with beta 2; mask tokens in the encoder input",
    ),
    license="cc-by-nc-4.0",
    recipe=RECIPE,
    variants=(
        _variant("b", "beit_base_patch16_224", 85.7, folder="base_800", epochs=800, ft=84.2,
                 source="data2vec paper (arXiv 2202.03555), ImageNet-1K fine-tuning of ViT-B; "
                 "facebookresearch/data2vec_vision README (800-epoch checkpoint)",
                 note="Data2VecVisionModel conversion of the official 800-epoch ViT-B student"),
        _variant("l", "beit_large_patch16_224", 303.1, folder="large_1600", epochs=1600, ft=None,
                 source="facebookresearch/data2vec_vision README (1600-epoch ViT-L checkpoint); fine-tuning top-1 "
                 "not verified, left unset",
                 note="Data2VecVisionModel conversion of an official ViT-L student; the model card does not say "
                 "whether HF converted the 800- or the 1600-epoch release (the URL is the 1600-epoch one)"),
        tiny_variant("data2vec-vit-test", "beit_base_patch16_224", pooling="avg", layouts=LAYOUTS,
                     preprocess=_PREPROCESS, what="data2vec"),
    ),
)
