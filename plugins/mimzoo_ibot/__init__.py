"""iBOT: Image BERT Pre-Training with Online Tokenizer (Zhou, Wei, Wang, Shen, Xie, Yuille, Kong; ICLR 2022).

A student ViT sees two global views with blockwise-masked patches replaced by a learned token; an
EMA teacher sees them whole. A shared projection head maps tokens to a softmax over K learned
prototypes: the teacher's centred, sharpened distribution of each masked patch is the target of
the student's patch token at that position (masked image modeling with an *online tokenizer*),
and the teacher's [CLS] distribution of one view is the target of the student's [CLS] of the
other view (DINO's self-distillation). In the survey's R/C split it is contrastive-based.

Which encoder: every iBOT training checkpoint holds a student and a teacher; the paper and the
official evaluation scripts (``--checkpoint_key teacher``) evaluate the **teacher**, and the
released ImageNet-1K backbones are teachers (``checkpoint_teacher.pth``). The zoo loads the
teacher from either file and refuses student backbones (see ``layouts.py``).

Pooling, from the official linear protocol (``run.sh`` + ``evaluation/eval_linear.py``):

- ViT-B/16 and ViT-L/16 (``--n_last_blocks 1 --avgpool_patchtokens 2``): the final-norm [CLS]
  token concatenated with the mean of the final-norm patch tokens, which is ``token-avg`` exactly
  (2 x embed_dim features);
- ViT-S/16 (``--n_last_blocks 4 --avgpool_patchtokens 0``): the [CLS] tokens of the last 4 blocks,
  each through the final norm, concatenated (4 x 384). The contract has no pooling for that; the
  variant pools the last block's [CLS] (``token``), which is what the k-NN protocol uses for every
  size (``eval_knn.py`` with ``avgpool_patchtokens 0``), so its linear probe reads 1/4 of the
  paper's features.

Numbers: k-NN / linear / fine-tune top-1 on ImageNet-1K from the official README's pre-trained
model table (block-wise masking rows), which repeats the paper's Tables 1-2.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .layouts import LAYOUTS
from .recipe import RECIPE

_CDN = "https://lf3-nlp-opensource.bytetos.com/obj/nlp-opensource/archive/2022/ibot"
# the official eval transform: Resize(256, bicubic) + CenterCrop(224), ImageNet mean/std
_PREPROCESS = Preprocess(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875)
_README = "bytedance/ibot README, pre-trained models table (ImageNet-1K, block-wise masking rows; teacher)"
_LINEAR_S = ("linear probe in the paper: [CLS] of the last 4 blocks concatenated (4 x 384); this variant pools the "
             "last block's [CLS] (the k-NN protocol's features), 1/4 of those")
_LINEAR_BL = "pools [CLS] + mean patch token, the paper's linear-probe features for this size"


def _sources(folder: str) -> tuple[WeightSource, ...]:
    teacher = WeightSource(
        "official",
        url=f"{_CDN}/{folder}/checkpoint_teacher.pth",
        layout="official",
        note="the teacher backbone the paper evaluates (bytedance/ibot release, ByteDance CDN; no Hub copy)",
    )
    full = WeightSource(
        "full",
        url=f"{_CDN}/{folder}/checkpoint.pth",
        layout="official",
        note="the full training checkpoint (student, teacher, heads, optimiser); the teacher is loaded",
    )
    return teacher, full


def _variant(size: str, arch: str, params_m: float, *, folder: str, pooling: str, ref: Reference,
             linear: str) -> Variant:
    return Variant(
        name=f"ibot-vit-{size}16",
        arch=arch,
        params_m=params_m,
        pooling=pooling,
        preprocess=_PREPROCESS,
        weights=_sources(folder),
        layouts=LAYOUTS,
        reference=ref,
        description=f"iBOT ViT-{size.upper()}/16 teacher, pretrained {ref.epochs} epochs on ImageNet-1K "
        f"(not fine-tuned); {linear}",
    )


# tiny encoder for tests: iBOT's ViT at 32 px, 4 px patches
TINY_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 4.0}

METHOD = Method(
    name="ibot",
    title="iBOT",
    paper=Paper(
        title="iBOT: Image BERT Pre-Training with Online Tokenizer",
        arxiv="2111.07832",
        year=2021,
        authors="Zhou, Wei, Wang, Shen, Xie, Yuille, Kong",
        code="https://github.com/bytedance/ibot",
        bibtex=(
            "@inproceedings{zhou2022ibot,\n"
            "  title={iBOT: Image BERT Pre-Training with Online Tokenizer},\n"
            "  author={Zhou, Jinghao and Wei, Chen and Wang, Huiyu and Shen, Wei and Xie, Cihang and Yuille, Alan "
            "and Kong, Tao},\n"
            "  booktitle={International Conference on Learning Representations (ICLR)},\n"
            "  year={2022}\n"
            "}"
        ),
    ),
    # The survey files iBOT under contrastive-based MIM; mimzoo lists it beside DINOv2 as "hybrid": image-level
    # self-distillation ([CLS], DINO) combined with masked-patch prediction, the recipe DINOv2 scales.
    family="hybrid",
    taxonomy=Taxonomy(
        masking="blockwise",
        mask_ratio=0.3,
        target="online-tokenizer",
        objective="self-distillation",
        architecture="ViT",
        encoder_input="masked",
        downstream=("classification", "detection", "segmentation"),
        survey_nodes=("target", "objective"),
        details="per global view: no mask with probability 0.5, else BEiT-style blocks over 0.3 +- 0.2 of the "
        "patches, replaced by a learned token; cross-entropy to the EMA teacher's centred, sharpened softmax over "
        "8192 prototypes at masked patches, plus DINO's cross-view [CLS] loss; shared projection head",
    ),
    license="apache-2.0",
    recipe=RECIPE,
    variants=(
        _variant("s", "vit_small_patch16_224", 21.666, folder="vits_16", pooling="token", linear=_LINEAR_S,
                 ref=Reference(knn_top1=75.2, linear_top1=77.9, finetune_top1=82.3, epochs=800,
                               source=f"{_README}; 800 epochs from the README's ViT-S/16 command")),
        _variant("b", "vit_base_patch16_224", 85.799, folder="vitb_16", pooling="token-avg", linear=_LINEAR_BL,
                 ref=Reference(knn_top1=77.1, linear_top1=79.5, finetune_top1=84.0, epochs=400,
                               source=f"{_README}; epochs ~ (400 = the paper's 1600 effective epochs / 4, not "
                               "checked offline: args.txt beside the checkpoint holds the exact value)")),
        _variant("l", "vit_large_patch16_224", 303.302, folder="vitl_16", pooling="token-avg", linear=_LINEAR_BL,
                 ref=Reference(knn_top1=78.0, linear_top1=81.0, finetune_top1=84.8, epochs=250,
                               source=f"{_README}; epochs ~ (250 = the paper's 1000 effective epochs / 4, not "
                               "checked offline: args.txt beside the checkpoint holds the exact value)")),
        Variant(
            name="ibot-vit-test",
            arch="vit_small_patch16_224",
            params_m=0.029,
            pooling="token-avg",
            model_kwargs=TINY_KWARGS,
            preprocess=_PREPROCESS.with_size(TINY_KWARGS["img_size"]),
            layouts=LAYOUTS,
            description="tiny random-init iBOT ViT ([CLS] + mean patch pooling, like ViT-B/L) for tests",
            test_only=True,
        ),
    ),
)
