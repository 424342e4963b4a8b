"""videomae-vit-digits: a tiny VideoMAE pretrained on moving-digits clips, shipped inside mimzoo.

The offline video default (``mimzoo quickstart --video``): 8 frames of 64 px, tubelet 2, patch 16
(4 x 4 x 4 = 64 tube tokens), 96-d, depth 4, 3 heads, mean pooling; frames normalised with mean/std
0.5 (white digits on black). The weights are package data under ``mimzoo/assets/videomae-digits/``,
written by ``benchmarks/pretrain_videomae_digits.py --train bundle --bundle``, which runs
:data:`COMMAND` and keeps the run only when it beats the same architecture at random init (three
seeds) on k-NN and linear. Its figures live in one file beside the weights, ``results.json``; the
description below (so ``mimzoo info``, ``list`` and the Hub card) quotes it.

Why patch 16 rather than patch 8 (the earlier plan, benchmarks/eval_digits.md "Video"): with 8 px
tubes a 28 px glyph spans 4 x 4 tubes and VideoMAE learned where the ink moves (motion) rather than
which digit it is; with 16 px tubes each tube holds a large part of a glyph and the same recipe learns
content (linear probe +10 to +17 points over random init).
"""

from __future__ import annotations

from typing import Any

from mimzoo.registry import Preprocess, Variant, WeightSource
from mimzoo.registry.bundled import probe_figures, read_results, results_or_none

from .layouts import LAYOUTS

RESULTS = "assets/videomae-digits/results.json"  # inside the mimzoo package, beside the bundled weights
DIGITS_KWARGS = {"img_size": 64, "patch_size": 16, "num_frames": 8, "tubelet_size": 2, "embed_dim": 96, "depth": 4,
                 "num_heads": 3}
# the pretraining run of the bundle (benchmarks/pretrain_videomae_digits.py runs it and docs/video.md quotes it)
COMMAND = ("mimzoo pretrain videomae --arch videomae-vit-digits --data moving-digits:train=4000,label=pair --epochs 10 "
           "--warmup-epochs 1 --batch-size 64 --lr 1.5e-3 --threads 1 --set decoder.dim=96 --set decoder.depth=2 "
           "--set decoder.heads=3 --set augment.crop_scale=[0.6,1.0] -o runs/videomae-vit-digits")


def measured() -> dict[str, Any]:
    """The bundled weights' figures (``results.json``): ``pretrained`` and ``random_init`` top-1 per task."""
    return read_results(RESULTS)


def describe(results: dict[str, Any] | None) -> str:
    """The variant's one-line description, with the figures of `results`.

    >>> describe({"pretrained": {"knn": 25.0, "linear": 45.0}, "random_init": {"knn": 21.5, "linear": 35.6}})
    'tiny VideoMAE (8 frames of 64 px, tubelet 2, patch 16, 96-d, depth 4) pretrained on moving-digits clips (bundled, offline); `mimzoo eval` top-1 on moving-digits (digit label): k-NN 25.0 / linear 45.0 (random init 21.5 / 35.6)'
    """
    what = ("tiny VideoMAE (8 frames of 64 px, tubelet 2, patch 16, 96-d, depth 4) pretrained on moving-digits "
            "clips (bundled, offline)")
    if not results:
        return what
    return f"{what}; `mimzoo eval` top-1 on moving-digits (digit label): {probe_figures(results)}"


DIGITS_VARIANT = Variant(
    name="videomae-vit-digits",
    arch="video_vit",
    params_m=0.595,
    pooling="avg",
    model_kwargs=DIGITS_KWARGS,
    preprocess=Preprocess(input_size=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear",
                          crop_pct=1.0, num_frames=8, frame_stride=1),
    weights=(
        WeightSource(
            "bundled",
            repo_id="mimzoo/videomae-vit-digits",
            filename="model.safetensors",
            layout="official",
            bundled="assets/videomae-digits/model.safetensors",
            note="pretrained by `mimzoo pretrain videomae` on moving-digits clips (train split) on a CPU; ships "
            "with mimzoo",
        ),
    ),
    layouts=LAYOUTS,
    reference=None,
    license="apache-2.0",  # trained by this project (mimzoo's own license), not MCG-NJU's weights
    description=describe(results_or_none(RESULTS, "videomae-vit-digits")),
)

# the patch-8 twin the first runs used (benchmarks/eval_digits.md, "Video": they learned motion, not content); an
# architecture only, hidden like the test variants, so those runs can be rerun as they were
PATCH8_VARIANT = Variant(
    name="videomae-vit-digits-p8",
    arch="video_vit",
    params_m=0.485,
    pooling="avg",
    model_kwargs={**DIGITS_KWARGS, "patch_size": 8},
    preprocess=DIGITS_VARIANT.preprocess,
    layouts=LAYOUTS,
    license="apache-2.0",
    description="videomae-vit-digits with patch 8 (256 tube tokens), random init only: the architecture of the "
    "first moving-digits runs, which beat random init on motion but not on content",
    test_only=True,
)
