"""Running timm encoders with masks: visible tokens only, or mask tokens in place of patches.

- :func:`forward_visible`: MAE's encoder; the patches are embedded, position-encoded, and only
  the visible ones go through the blocks (timm ``VisionTransformer``, with or without a class token).
- :func:`forward_mask_tokens`: SimMIM/BEiT/EVA's encoder; masked patch embeddings are replaced
  by a learned mask token right after ``patch_embed``, the rest of the encoder runs unchanged.
  This is a forward hook on ``patch_embed``, so it works for every timm ViT family (ViT, BEiT,
  EVA, ...) and the encoder's state dict keeps timm's keys.
- :func:`token_features`: patch tokens of a (teacher) encoder, optionally the average of its last
  blocks' outputs (data2vec).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..recipe import RecipeError


def num_prefix_tokens(model: nn.Module) -> int:
    """Class / register tokens in front of the patch tokens of ``forward_features``."""
    if hasattr(model, "num_prefix_tokens"):
        return int(model.num_prefix_tokens)
    return 1 if getattr(model, "cls_token", None) is not None else 0


def patch_grid(model: nn.Module) -> tuple[int, int]:
    """``(h, w)`` patches of the encoder's input size."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None:
        raise RecipeError(f"{type(model).__name__} has no patch_embed.grid_size; "
                          "this objective needs a ViT-family encoder")
    return int(grid[0]), int(grid[1])


def patch_size(model: nn.Module) -> int:
    size = model.patch_embed.patch_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """Patch embeddings as ``[N, L, D]`` (timm gives ``[N, H, W, D]`` with dynamic image sizes)."""
    return x.flatten(1, 2) if x.ndim == 4 else x


def equal_rows(keep: torch.Tensor) -> bool:
    """Whether every row of a bool ``keep [N, L]`` has the same number of set entries."""
    counts = keep.sum(dim=1)
    return not bool((counts != counts[0]).any())


def row_index(keep: torch.Tensor) -> torch.Tensor:
    """Positions ``[N, K]`` (raster order) of the set entries of a bool ``keep [N, L]`` with equal row counts."""
    if not equal_rows(keep):
        raise RecipeError("a visible-only encoder needs the same number of visible patches in every image; "
                          "use masking random-patch / random-block / multi-block")
    return keep.nonzero()[:, 1].view(keep.shape[0], -1)


def take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[n, idx[n]]``: rows ``idx [N, K]`` of ``x [N, L, D]`` -> ``[N, K, D]`` (of ids ``[N, L]`` -> ``[N, K]``)."""
    if x.ndim == 2:
        return x.gather(1, idx)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def as_rows(keep: torch.Tensor) -> torch.Tensor:
    """Row positions ``[N, K]`` of a bool mask ``[N, L]`` (:func:`row_index`); ``keep`` itself if it holds positions."""
    return row_index(keep) if keep.dtype == torch.bool else keep


def gather_rows(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x[n, keep[n]]`` for a bool ``keep [N, L]`` with the same count in every row -> ``[N, K, D]``."""
    return take_rows(x, as_rows(keep))


def forward_visible(model: nn.Module, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Encode only the visible patches: ``[N, P + K, D]`` (prefix tokens first), after the final norm.

    ``visible`` is a bool mask ``[N, L]`` or the visible positions ``[N, K]`` (raster order; with
    positions the encoder makes no data-dependent call, which keeps ``torch.compile`` to one graph).
    Position embeddings are added before the patches are dropped, as in MAE; the class token gets
    its own position embedding. Needs a timm ``VisionTransformer``.
    """
    if not hasattr(model, "_pos_embed") or not hasattr(model, "norm_pre"):
        raise RecipeError(f"visible-only encoding needs a timm VisionTransformer, not {type(model).__name__}; "
                          "use decoder.kind=mask-token")
    x = _flat(model.patch_embed(images))  # [N, L, D]
    prefix = num_prefix_tokens(model)
    pos = model.pos_embed
    if pos is not None:
        x = x + (pos if model.no_embed_class else pos[:, prefix:])
    x = gather_rows(x, visible)  # [N, K, D]
    tokens = [t for t in (model.cls_token, getattr(model, "reg_token", None)) if t is not None]
    if tokens:
        lead = torch.cat([t.expand(x.shape[0], -1, -1) for t in tokens], dim=1)  # [N, P, D]
        if pos is not None and not model.no_embed_class:
            lead = lead + pos[:, :prefix]
        x = torch.cat([lead, x], dim=1)
    x = model.norm_pre(model.pos_drop(x))
    x = model.blocks(x)
    return model.norm(x)


@contextlib.contextmanager
def mask_tokens(model: nn.Module, mask: torch.Tensor, token: torch.Tensor) -> Iterator[None]:
    """While active, ``model.patch_embed`` puts ``token`` at the masked positions of ``mask [N, L]``."""

    def hook(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
        shape = out.shape
        flat = _flat(out)
        m = mask.view(flat.shape[0], flat.shape[1], 1)
        return torch.where(m, token.to(flat.dtype).view(1, 1, -1), flat).view(shape)

    handle = model.patch_embed.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def forward_mask_tokens(model: nn.Module, images: torch.Tensor, mask: torch.Tensor,
                        token: torch.Tensor) -> torch.Tensor:
    """``model.forward_features`` with masked patches replaced by ``token``: ``[N, P + L, D]``."""
    with mask_tokens(model, mask, token):
        return model.forward_features(images)


def token_features(model: nn.Module, images: torch.Tensor, layers: int = 1, layer_norm: str = "none") -> torch.Tensor:
    """Patch-token features ``[N, L, D]`` of an encoder (prefix tokens dropped).

    ``layers == 1`` gives ``forward_features`` (after the final norm); ``layers > 1`` averages the
    outputs of the last ``layers`` blocks (before the final norm), each normalised by
    ``layer_norm`` ("layer": LayerNorm over D, "instance": over tokens, "none"), as data2vec does.
    A convolutional feature map ``[N, C, h, w]`` is flattened to ``[N, h*w, C]``.
    """
    if layers <= 1 and layer_norm == "none":
        return _tokens(model, model.forward_features(images))
    blocks = list(getattr(model, "blocks", []))
    if len(blocks) < layers:
        raise RecipeError(f"target.layers={layers} but the teacher has {len(blocks)} blocks; "
                          f"pass --set target.layers={len(blocks)} (or fewer)")
    outs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda _m, _i, o: outs.append(o)) for b in blocks[-layers:]]
    try:
        model.forward_features(images)
    finally:
        for h in handles:
            h.remove()
    prefix = num_prefix_tokens(model)
    feats = [_norm(o[:, prefix:].float(), layer_norm) for o in outs]
    return torch.stack(feats).mean(dim=0)


def _tokens(model: nn.Module, out: torch.Tensor) -> torch.Tensor:
    if out.ndim == 4:  # [N, C, h, w] feature map of a convnet
        return out.flatten(2).transpose(1, 2)
    return out[:, num_prefix_tokens(model):]


def _norm(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "layer":
        return F.layer_norm(x, x.shape[-1:])
    if kind == "instance":
        return F.instance_norm(x.transpose(1, 2)).transpose(1, 2)
    return x


def sincos_2d(dim: int, grid: tuple[int, int], prefix: int = 0) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings ``[1, prefix + h*w, dim]`` (zeros for prefix tokens).

    Official MAE's layout (``get_2d_sincos_pos_embed``, also I-JEPA's): tokens in raster order, the
    first half of the channels encodes the **column**, the second half the row; each half is
    ``[sin, cos]`` of the position times ``1 / 10000^(k / (dim/4))``.
    """
    if dim % 4:
        raise RecipeError(f"sin-cos position embeddings need a width divisible by 4, not {dim}")
    h, w = grid
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows = torch.arange(h, dtype=torch.float64).repeat_interleave(w)[:, None] * freqs  # [L, dim/4]
    cols = torch.arange(w, dtype=torch.float64).repeat(h)[:, None] * freqs
    emb = torch.cat([cols.sin(), cols.cos(), rows.sin(), rows.cos()], dim=1)  # [L, dim]
    emb = torch.cat([torch.zeros(prefix, dim, dtype=torch.float64), emb])
    return emb.float().unsqueeze(0)


def use_sincos_pos(model: nn.Module) -> None:
    """Give a timm ViT fixed (non-trained) 2-D sin-cos position embeddings, as MAE pretrains with."""
    pos = getattr(model, "pos_embed", None)
    if pos is None:
        return
    prefix = 0 if getattr(model, "no_embed_class", False) else num_prefix_tokens(model)
    with torch.no_grad():
        pos.copy_(sincos_2d(pos.shape[-1], patch_grid(model), prefix))
    pos.requires_grad_(False)


def init_like_mae(module: nn.Module) -> None:
    """MAE's initialisation for new layers: xavier-uniform linears with zero bias, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def grid_side(length: int) -> int:
    side = int(math.isqrt(length))
    if side * side != length:
        raise RecipeError(f"{length} tokens are not a square grid")
    return side
