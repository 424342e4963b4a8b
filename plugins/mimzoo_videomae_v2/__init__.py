"""VideoMAE V2: Scaling Video Masked Autoencoders with Dual Masking (Wang, Huang, Zhao, Tong, He, Wang,
Wang, Qiao, 2023).

VideoMAE's tube-masked encoder with a second, "running cell" mask on the decoder (50 %) so a ViT-g can
be pretrained on 1.35M unlabelled clips (UnlabeledHybrid), then post-pretrained (fine-tuned) on K710.
The encoder is the same ``video_vit`` as VideoMAE's (:mod:`mimzoo.encoders.video`); checkpoint layouts
are VideoMAE's too (the official ``.pth`` keys are identical), so they are shared with the videomae plugin.

What is public, said plainly: the ViT-giant pretraining and fine-tuning checkpoints are behind a
download-request form (OpenGVLab/VideoMAEv2 docs/MODEL_ZOO.md), so they are not listed here: no
variant may name a file mimzoo cannot fetch. What is public are the **distilled** ViT-S and ViT-B: students
of the K710-fine-tuned ViT-g, initialised from the post-pretrained model, i.e. **fine-tuned classifiers
on K710, not self-supervised encoders**. Their classifier head is dropped; they keep their ``fc_norm``,
so ``encoder(x)`` is ``fc_norm(mean of tokens)``, the features their head was trained on.
"""

from __future__ import annotations

from mimzoo.registry import Method, Paper, Reference, Taxonomy, Variant, WeightSource
from mimzoo_videomae import preprocess, video_kwargs
from mimzoo_videomae.layouts import LAYOUTS

_REPO = "OpenGVLab/VideoMAE2"
_ZOO = ("OpenGVLab/VideoMAEv2 docs/MODEL_ZOO.md, Distillation table: K400 top-1 of the distilled model "
        "(16x5x3 views, before any further fine-tuning); epochs: the ViT-g teacher's pretraining (1200)")


def _distilled(size: str, params_m: float, k400: float) -> Variant:
    file = f"distill/vit_{size}_k710_dl_from_giant.pth"
    return Variant(
        name=f"videomae-v2-vit-{size}-k710-distilled",
        arch="video_vit",
        params_m=params_m,
        pooling="avg",
        model_kwargs=video_kwargs(size, fc_norm=True),
        preprocess=preprocess(stride=4),
        weights=(
            WeightSource(
                "official",
                repo_id=_REPO,
                filename=file,
                url=f"https://huggingface.co/{_REPO}/resolve/main/{file}",
                layout="official",
                note="official distilled checkpoint (a K710 classifier distilled from the fine-tuned ViT-g); "
                "the 710-way head is dropped, fc_norm kept",
            ),
        ),
        layouts=LAYOUTS,
        reference=Reference(finetune_top1=k400, epochs=1200, dataset="Kinetics-400",
                            pretrain_data="UnlabeledHybrid (teacher), then K710 labels", source=_ZOO),
        description=f"VideoMAE V2 ViT-{size.upper()}/16 distilled from the K710-fine-tuned ViT-g: a supervised "
        "K710 video classifier's backbone (head dropped, fc_norm kept), 16 frames at 224 px",
    )


TEST_VARIANT = Variant(
    name="videomae-v2-vit-test",
    arch="video_vit",
    params_m=0.038,
    pooling="avg",
    model_kwargs={"img_size": 32, "patch_size": 8, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32, "depth": 2,
                  "num_heads": 2, "fc_norm": True},
    preprocess=preprocess(frames=4, stride=1, size=32),
    layouts=LAYOUTS,
    description="tiny random-init VideoMAE V2 video ViT with fc_norm pooling (fine-tuned layout) for tests",
    test_only=True,
)

METHOD = Method(
    name="videomae-v2",
    title="VideoMAE V2",
    paper=Paper(
        title="VideoMAE V2: Scaling Video Masked Autoencoders with Dual Masking",
        arxiv="2303.16727",
        year=2023,
        authors="Wang, Huang, Zhao, Tong, He, Wang, Wang, Qiao",
        code="https://github.com/OpenGVLab/VideoMAEv2",
        bibtex=(
            "@inproceedings{wang2023videomaev2,\n"
            "  title={Video{MAE} V2: Scaling Video Masked Autoencoders with Dual Masking},\n"
            "  author={Wang, Limin and Huang, Bingkun and Zhao, Zhiyu and Tong, Zhan and He, Yinan and Wang, Yi "
            "and Wang, Yali and Qiao, Yu},\n"
            "  booktitle={CVPR},\n"
            "  year={2023}\n"
            "}"
        ),
    ),
    family="reconstruction",
    taxonomy=Taxonomy(
        masking="tube",
        mask_ratio=0.9,
        target="normalized-pixels",
        objective="mse",
        architecture="ViT",
        encoder_input="visible",
        downstream=("action-recognition", "action-detection", "temporal-action-detection"),
        survey_nodes=("masking",),
        details="dual masking: tube masking (90%) on the encoder, running-cell masking (50%) on the decoder; "
        "loss on the decoder's visible part of the masked tubes; the public ViT-S/B are distilled K710 classifiers",
    ),
    license="cc-by-nc-4.0",
    variants=(
        _distilled("s", 21.885, k400=83.7),
        _distilled("b", 86.236, k400=86.6),
        TEST_VARIANT,
    ),
)
