"""Attention the fast way for where the objective runs, and a timm block evaluated at some rows only.

- :func:`choose_attention`: timm attention modules compute either with
  ``F.scaled_dot_product_attention`` (``fused_attn=True``) or as ``softmax(q k^T * scale) v``
  with two matmuls. On the CPU in bfloat16 the second is the faster one for ViT shapes (torch's
  CPU flash-attention kernel runs bf16 about 3x slower than bf16 matmuls do, forward + backward,
  at 197 tokens x 32 channels per head), so the trainer switches CPU bf16 runs to it. It is the
  attention of the original MAE code and of transformers' ``eager`` implementation.
- :func:`block_rows`: a timm ``Block`` whose output is needed at some token rows only (MAE's last
  decoder block: the loss reads the masked patches): queries, projection and MLP run on those
  rows, keys and values on every token. The result equals ``block(x)`` at those rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vit import take_rows

LOW_PRECISIONS = ("bf16", "fp16")  # the trainer's autocast precisions


def choose_attention(model: nn.Module, device: torch.device | str, precision: str) -> int:
    """Switch ``model``'s timm attention modules to matmul-softmax-matmul on a CPU in low precision.

    Modules that already compute without SDPA are left as they are, and on a GPU or in fp32
    nothing changes (SDPA is the faster path there).

    Args:
        model: any module; every submodule with a true ``fused_attn`` attribute (timm's attention) is switched.
        device: where the model runs.
        precision: the run's precision ("fp32", "bf16", "fp16").

    Returns:
        The number of modules switched.

    >>> choose_attention(objective, torch.device("cpu"), "bf16")  # doctest: +SKIP
    20
    """
    if torch.device(device).type != "cpu" or precision not in LOW_PRECISIONS:
        return 0
    switched = 0
    for module in model.modules():
        if getattr(module, "fused_attn", False) is True:
            module.fused_attn = False
            switched += 1
    return switched


def attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of ``q [N, H, M, d]`` over ``k, v [N, H, T, d]`` the way timm module ``attn`` computes it."""
    if attn.fused_attn:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    weights = (q * attn.scale) @ k.transpose(-2, -1)
    return attn.attn_drop(weights.softmax(dim=-1)) @ v


def _plain(block: nn.Module) -> bool:
    """A timm ``Block`` with timm's fused-qkv ``Attention`` and no gate (what :func:`block_rows` splits)."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    attn = getattr(block, "attn", None)
    return type(block) is Block and type(attn) is Attention and getattr(attn, "gate", None) is None


def block_rows(block: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``block(x)`` at token rows ``rows [N, M]`` of ``x [N, T, D]`` -> ``[N, M, D]``, computing only those rows.

    Keys and values come from all ``T`` tokens; the queries, the attention output projection, the
    residuals and the MLP only from the ``M`` rows. Blocks other than timm's plain ``Block`` run
    whole and are then gathered.

    Args:
        block: a timm ``vision_transformer.Block``.
        x: its input tokens.
        rows: the token positions wanted, per sample.

    >>> block_rows(decoder.decoder_blocks[-1], tokens, masked_rows)  # doctest: +SKIP
    """
    if not _plain(block):
        return take_rows(block(x), rows)
    attn = block.attn
    n, t = x.shape[:2]
    m, heads, hd = rows.shape[1], attn.num_heads, attn.head_dim
    width = heads * hd
    h = block.norm1(x)
    w, b = attn.qkv.weight, attn.qkv.bias
    q = F.linear(take_rows(h, rows), w[:width], None if b is None else b[:width])  # [N, M, H*d]
    kv = F.linear(h, w[width:], None if b is None else b[width:])  # [N, T, 2*H*d]
    q = q.view(n, m, heads, hd).transpose(1, 2)
    k, v = kv.view(n, t, 2, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    out = attend(attn, q, k, v).transpose(1, 2).reshape(n, m, width)
    out = attn.proj_drop(attn.proj(attn.norm(out)))
    y = take_rows(x, rows) + block.drop_path1(block.ls1(out))
    return y + block.drop_path2(block.ls2(block.mlp(block.norm2(y))))
