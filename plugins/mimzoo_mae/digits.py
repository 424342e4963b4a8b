"""mae-vit-digits: a tiny MAE ViT pretrained on scikit-learn's digits, shipped inside mimzoo.

The offline default model: it needs no download (the weights are package data under
``mimzoo/assets/mae-vit-digits/``) and it reads the digits images ``mimzoo.data`` serves
(8x8 scans upscaled 4x to 32x32 RGB). Reproduce it with::

    mimzoo pretrain mae --arch mae-vit-digits --data digits --epochs 60 --batch-size 128 \\
        --lr 1.5e-3 --warmup-epochs 5 --set target.kind=pixels --set decoder.dim=64 \\
        --set decoder.depth=2 --set decoder.heads=4 -o runs/mae-vit-digits
    cp runs/mae-vit-digits/{config.json,model.safetensors,pretrain.safetensors} mimzoo/assets/mae-vit-digits/

(docs/pretrain.md and benchmarks/pretrain_digits.py hold the exact command and its numbers.)
Pixel targets rather than per-patch normalised ones: a 4x4 patch of an upscaled digit is one
flat original pixel, whose per-patch normalisation would be all zeros.
"""

from __future__ import annotations

from mimzoo.registry import Preprocess, Variant, WeightSource

from .layouts import LAYOUTS

DIGITS_KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3}
DIGITS_PREPROCESS = Preprocess(input_size=(3, 32, 32), mean=(0.305, 0.305, 0.305), std=(0.376, 0.376, 0.376),
                               interpolation="bicubic", crop_pct=1.0, crop_mode="center")

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
    description="tiny MAE ViT pretrained on scikit-learn digits (bundled, offline); digits test split top-1: "
    "k-NN 61.8 / linear 91.6 (random init 20.8 / 60.8), benchmarks/pretrain_digits.md",
)
