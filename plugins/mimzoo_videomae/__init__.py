"""VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised Video Pre-Training
(Tong, Song, Wang, Wang, 2022).

Tube masking: one random 90 % spatial mask shared by every frame pair (tubelet 2 x 16 x 16), a ViT
encoder on the visible tubes only, a light decoder regressing each masked tube's per-tube normalised
pixels with MSE.

Encoders (mimzoo's ``video_vit``, see :mod:`mimzoo.encoders.video`): input ``[N, 3, 16, 224, 224]``,
``forward_features`` -> ``[N, 1568, D]`` (8 x 14 x 14 tubes), ``encoder(x)`` -> mean of the tokens.
The zoo's weights are the pretrained (not fine-tuned) checkpoints; pretraining checkpoints have the
encoder's final norm and no ``fc_norm``, so the pooled embedding is the plain mean of the normed
tokens (the fine-tuning recipe adds an ``fc_norm`` on that mean and trains it).

Weights: transformers copies on the Hub (``MCG-NJU/videomae-base``, ``-large``, ``-base-ssv2``) are the
default sources; the official files are on Google Drive (links in MCG-NJU/VideoMAE MODEL_ZOO.md), which
offers no direct download, so they are provenance only. The ViT-S and ViT-H pretraining checkpoints
exist only on Google Drive and the ViT-L SSv2 one too: download one by hand and load it with
``mimzoo.load("videomae-vit-test", weights=...)``-style ``weights=PATH`` on a variant of its size, or
build it with ``--arch`` arguments (docs/video.md). They are not listed as variants, since a variant
here must name a file mimzoo can fetch.

Preprocessing: 16 frames; the shorter side resized to 224 (bilinear) and a 224 center crop (crop_pct 1.0),
ImageNet mean/std, as transformers' ``VideoMAEImageProcessor`` and the official test-time transform do.
Frame stride (VideoMAE's sampling rate): 4 on Kinetics, 2 on Something-Something V2 (the paper's
implementation details and scripts/*/pretrain.sh ``--sampling_rate``).
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource

from .digits import DIGITS_VARIANT, PATCH8_VARIANT
from .layouts import LAYOUTS
from .recipe import RECIPE

VIDEO_ARCH = "video_vit"
_ZOO = "MCG-NJU/VideoMAE MODEL_ZOO.md (fine-tune top-1, 16x5x3 views on K400, 16x2x3 on SSv2)"
_DRIVE = "https://github.com/MCG-NJU/VideoMAE/blob/main/MODEL_ZOO.md"
_SIZES = {  # embed_dim, depth, num_heads, params (M) of the encoder
    "s": (384, 12, 6, 21.885),
    "b": (768, 12, 12, 86.236),
    "l": (1024, 24, 16, 303.885),
}


def preprocess(frames: int = 16, stride: int = 4, size: int = 224) -> Preprocess:
    """VideoMAE's test-time preprocessing: resize the shorter side to `size`, center crop, ImageNet mean/std."""
    return Preprocess(input_size=(3, size, size), interpolation="bilinear", crop_pct=1.0, num_frames=frames,
                      frame_stride=stride)


def video_kwargs(size: str, **extra: object) -> dict[str, object]:
    dim, depth, heads, _ = _SIZES[size]
    return {"img_size": 224, "patch_size": 16, "num_frames": 16, "tubelet_size": 2, "embed_dim": dim,
            "depth": depth, "num_heads": heads, **extra}


def _variant(size: str, data: str, repo: str, *, epochs: int, top1: float, file: str = "model.safetensors") -> Variant:
    long = {"k400": "Kinetics-400", "ssv2": "Something-Something V2"}[data]
    return Variant(
        name=f"videomae-vit-{size}-{data}",
        arch=VIDEO_ARCH,
        params_m=_SIZES[size][3],
        pooling="avg",
        model_kwargs=video_kwargs(size),
        preprocess=preprocess(stride=4 if data == "k400" else 2),
        weights=(
            WeightSource(
                "hf",
                repo_id=repo,
                filename=file,
                url=_DRIVE,
                layout="transformers",
                note=f"transformers VideoMAEForPreTraining copy of the official {long} pretraining checkpoint "
                "(the official file is on Google Drive, linked from MODEL_ZOO.md); the decoder is dropped",
            ),
        ),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=top1, epochs=epochs, dataset=long, pretrain_data=long, source=_ZOO),
        description=f"VideoMAE ViT-{size.upper()}/16, tubelet 2, 16 frames at 224 px, pretrained {epochs} epochs "
        f"on {long} (not fine-tuned)",
    )


# tiny, for tests: 4 frames of 32 px, tubelet 2, patch 8 -> 2 x 4 x 4 = 32 tokens of 32 dims
TEST_KWARGS = {"img_size": 32, "patch_size": 8, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32, "depth": 2,
               "num_heads": 2}

TEST_VARIANT = Variant(
    name="videomae-vit-test",
    arch=VIDEO_ARCH,
    params_m=0.038,
    pooling="avg",
    model_kwargs=TEST_KWARGS,
    preprocess=preprocess(frames=4, stride=1, size=32),
    layouts=LAYOUTS,
    description="tiny random-init VideoMAE video ViT (4 frames of 32 px) for tests",
    test_only=True,
)

TAXONOMY = Taxonomy(
    masking="tube",
    mask_ratio=0.9,
    target="normalized-pixels",
    objective="mse",
    architecture="ViT",
    encoder_input="visible",
    downstream=("action-recognition", "action-detection"),
    survey_nodes=("masking", "downstream"),
    details="one random spatial mask per clip shared by all frames (tube masking, 90%); per-tube normalised "
    "2x16x16 pixel cubes; MSE on masked tubes; asymmetric encoder-decoder",
)

METHOD = Method(
    name="videomae",
    title="VideoMAE",
    paper=Paper(
        title="VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised Video Pre-Training",
        arxiv="2203.12602",
        year=2022,
        authors="Tong, Song, Wang, Wang",
        code="https://github.com/MCG-NJU/VideoMAE",
        bibtex=(
            "@inproceedings{tong2022videomae,\n"
            "  title={Video{MAE}: Masked Autoencoders are Data-Efficient Learners for Self-Supervised Video "
            "Pre-Training},\n"
            "  author={Tong, Zhan and Song, Yibing and Wang, Jue and Wang, Limin},\n"
            "  booktitle={NeurIPS},\n"
            "  year={2022}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=TAXONOMY,
    license="cc-by-nc-4.0",
    recipe=RECIPE,
    variants=(
        _variant("b", "k400", "MCG-NJU/videomae-base", epochs=1600, top1=80.9, file="pytorch_model.bin"),
        _variant("l", "k400", "MCG-NJU/videomae-large", epochs=1600, top1=84.7),
        _variant("b", "ssv2", "MCG-NJU/videomae-base-ssv2", epochs=2400, top1=70.6),
        DIGITS_VARIANT,  # pretrained here on moving-digits clips; ships inside the package
        PATCH8_VARIANT,
        TEST_VARIANT,
    ),
)
