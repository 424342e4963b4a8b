"""mae-vit-digits: a tiny MAE ViT pretrained on scikit-learn's digits, shipped inside mimzoo.

The offline default model: it needs no download (the weights are package data under
``mimzoo/assets/mae-vit-digits/``) and it reads the digits images ``mimzoo.data`` serves
(8x8 scans upscaled 4x to 32x32 RGB). Reproduce it with::

    mimzoo pretrain mae --arch mae-vit-digits --data digits --epochs 60 --batch-size 128 \\
        --lr 1.5e-3 --warmup-epochs 5 --set target.kind=pixels --set decoder.dim=64 \\
        --set decoder.depth=2 --set decoder.heads=4 -o runs/mae-vit-digits
    cp runs/mae-vit-digits/{config.json,model.safetensors,pretrain.safetensors} mimzoo/assets/mae-vit-digits/

(docs/pretrain.md and benchmarks/pretrain_digits.py hold the exact command.) Its figures live in one
file beside the weights, ``mimzoo/assets/mae-vit-digits/results.json`` (written by that benchmark);
the description below, and so ``mimzoo info``, the Hub card and the docs, quote it.

Pixel targets rather than per-patch normalised ones: a 4x4 patch of an upscaled digit is one
flat original pixel, whose per-patch normalisation would be all zeros. The variant's taxonomy
says so (MAE's own is normalised pixels).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mimzoo.registry import Preprocess, Variant, WeightSource
from mimzoo.registry.bundled import probe_figures, read_results, results_or_none

from .layouts import LAYOUTS
from .taxonomy import TAXONOMY

RESULTS = "assets/mae-vit-digits/results.json"  # inside the mimzoo package, beside the bundled weights

DIGITS_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3}
DIGITS_PREPROCESS = Preprocess(input_size=(3, 32, 32), mean=(0.305, 0.305, 0.305), std=(0.376, 0.376, 0.376),
                               interpolation="bicubic", crop_pct=1.0, crop_mode="center")


def measured() -> dict[str, Any]:
    """The bundled weights' figures (``results.json``): ``pretrained`` and ``random_init`` top-1 per task."""
    return read_results(RESULTS)


def describe(results: dict[str, Any] | None) -> str:
    """The variant's one-line description, with the figures of `results`.

    >>> describe({"pretrained": {"knn": 62.44, "linear": 94.44}, "random_init": {"knn": 21.33, "linear": 68.0}})
    'tiny MAE ViT (patch 4, 96-d, depth 6, 32 px) pretrained on raw pixels of scikit-learn digits (bundled, offline); `mimzoo eval` top-1 on the digits test split: k-NN 62.4 / linear 94.4 (random init 21.3 / 68.0)'
    """
    what = ("tiny MAE ViT (patch 4, 96-d, depth 6, 32 px) pretrained on raw pixels of scikit-learn digits "
            "(bundled, offline)")
    if not results:
        return what
    return f"{what}; `mimzoo eval` top-1 on the digits test split: {probe_figures(results)}"


DIGITS_VARIANT = Variant(
    name="mae-vit-digits",
    arch="vit_tiny_patch16_224",
    params_m=0.68,
    pooling="token",
    model_kwargs=DIGITS_KWARGS,
    preprocess=DIGITS_PREPROCESS,
    weights=(
        WeightSource(
            "bundled",
            repo_id="mimzoo/mae-vit-digits",
            filename="model.safetensors",
            layout="timm",
            bundled="assets/mae-vit-digits/model.safetensors",
            note="pretrained by `mimzoo pretrain` on scikit-learn digits (train split) on a CPU; ships with mimzoo",
        ),
    ),
    layouts=LAYOUTS,
    reference=None,
    license="apache-2.0",  # trained by this project (mimzoo's own license), not Meta's MAE weights
    description=describe(results_or_none(RESULTS, "mae-vit-digits")),
    taxonomy=replace(TAXONOMY, target="pixels", details="MAE trained on raw pixels (a 4x4 patch of an upscaled "
                     "8x8 digit is one flat pixel: per-patch normalisation would zero it); MSE on masked patches"),
)
