"""Poolings mimzoo computes itself, because timm has no ``global_pool`` for them.

``"token-avg"`` is the linear probe of DINOv2 and iBOT: the class token concatenated with the mean
of the patch tokens (register tokens excluded), both after the final norm: ``[N, 2 * D]``.

timm builds such a model with ``global_pool="token"`` (no ``fc_norm``, an identity head), then the
model's class is swapped for a subclass whose ``forward_head`` pools this way. Every caller of
``model.forward_head(tokens, pre_logits=True)`` (``Encoder.forward``, the feature extractor of the
eval heads, the ONNX export and its verification) therefore gets the same embedding, while
``model.num_features`` stays the token width ``D`` (what the pretraining engine and token probes
need); :attr:`Encoder.num_features` reports the pooled width ``2 * D``.
"""

from __future__ import annotations

from typing import Any

from ..errors import PluginError

# mimzoo pooling -> the timm global_pool the model is built with before mimzoo pools it
TIMM_POOLING = {"token-avg": "token"}


def timm_global_pool(pooling: str) -> str:
    """The ``global_pool`` timm builds a model with for mimzoo's `pooling`.

    >>> timm_global_pool("token-avg"), timm_global_pool("avg")
    ('token', 'avg')
    """
    return TIMM_POOLING.get(pooling, pooling)


def pooled_width(pooling: str, token_dim: int) -> int:
    """Width of the pooled embedding for tokens `token_dim` wide.

    >>> pooled_width("token-avg", 768), pooled_width("token", 768)
    (1536, 768)
    """
    return 2 * token_dim if pooling == "token-avg" else token_dim


def apply_pooling(model: Any, pooling: str) -> Any:
    """`model` (built with :func:`timm_global_pool`) pooling the mimzoo way; other poolings unchanged."""
    if pooling != "token-avg" or getattr(model, "token_avg", False):
        return model
    if getattr(model, "cls_token", None) is None or int(getattr(model, "num_prefix_tokens", 0) or 0) < 1:
        raise PluginError(f"pooling 'token-avg' needs a class token, and {type(model).__name__} has none; "
                          "use pooling 'avg' for this architecture")
    model.__class__ = _token_avg_class(type(model))
    return model


def _token_avg_forward_head(self: Any, x: Any, pre_logits: bool = False) -> Any:
    """[N, prefix + L, D] normed tokens -> [N, 2D]: [CLS] then the mean of the patch tokens."""
    import torch

    pooled = torch.cat([x[:, 0], x[:, self.num_prefix_tokens:].mean(dim=1)], dim=-1)  # registers skipped
    pooled = self.head_drop(pooled) if hasattr(self, "head_drop") else pooled
    return pooled if pre_logits else self.head(pooled)


def _token_avg_class(base: type) -> type:
    """The subclass of `base` that pools with token-avg (one per base class, importable for pickle)."""
    name = f"TokenAvg{base.__name__}"
    cls = globals().get(name)
    if cls is None or cls.__bases__ != (base,):
        cls = type(name, (base,), {
            "forward_head": _token_avg_forward_head,
            "token_avg": True,  # marks the model: Encoder.num_features is then 2 x the token width
            "__module__": __name__,
            "__doc__": f"timm {base.__name__} pooling [CLS] + mean of the patch tokens (mimzoo 'token-avg').",
        })
        globals()[name] = cls
    return cls
