"""What BEiT, BEiT v2 and data2vec share: how their pretrained encoder is built in timm.

All three pretrain a ViT with layer scale, q/v biases, no absolute position embedding and one
relative position bias shared by all blocks (unilm ``--rel_pos_bias`` defaults to the shared
table in pretraining). timm's ``Beit`` built with the kwargs below has exactly that parameter
set, so official checkpoints load strictly once their pretraining heads are dropped.

``use_fc_norm=False`` keeps the pretrained final ``norm`` on every token. With
``global_pool='avg'`` the pooled embedding is then the mean of the normalised patch tokens
(timm's default 'avg' would instead put a new, untrained ``fc_norm`` after the mean).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mimzoo.registry import CheckpointLayout, Preprocess, Variant

# timm Beit kwargs giving the pretrained (not fine-tuned) BEiT-family encoder
ENCODER_KWARGS: Mapping[str, Any] = {
    "use_abs_pos_emb": False,  # position comes from the relative bias only
    "use_rel_pos_bias": False,  # no per-block tables (those appear at fine-tuning)
    "use_shared_rel_pos_bias": True,  # one table shared by every block, as pretrained
    "use_fc_norm": False,  # keep the pretrained per-token final norm, whatever the pooling
}

# a few-thousand-parameter encoder for tests; transformers' BeitConfig / Data2VecVisionConfig can
# mirror it (image_size=32, patch_size=4, hidden_size=32, 2 layers, 2 heads, intermediate 128)
TINY_KWARGS: Mapping[str, Any] = {
    "img_size": 32,
    "patch_size": 4,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "mlp_ratio": 4.0,
    **ENCODER_KWARGS,
}
TINY_PARAMS_M = 0.028  # 27,592 parameters


def tiny_variant(
    name: str, arch: str, *, pooling: str, layouts: tuple[CheckpointLayout, ...], preprocess: Preprocess, what: str
) -> Variant:
    """The test-only tiny variant of a BEiT-family method (random init, 32 px, 4 px patches)."""
    return Variant(
        name=name,
        arch=arch,
        params_m=TINY_PARAMS_M,
        pooling=pooling,
        model_kwargs=dict(TINY_KWARGS),
        preprocess=preprocess.with_size(TINY_KWARGS["img_size"]),
        layouts=layouts,
        description=f"tiny random-init {what} encoder for tests (no pretrained weights)",
        test_only=True,
    )
