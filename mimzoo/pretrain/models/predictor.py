"""I-JEPA's predictor: a narrow transformer that predicts target-block features from the context.

``predictor(context [N, K, D], visible [N, L], target [N, L]) -> [N, T, D]``: the context tokens
are embedded to the predictor's width with their position embeddings; one mask token per target
position (plus that position's embedding) is appended; after the blocks, the mask tokens'
outputs are projected back to the encoder's width. Several target blocks are predicted in one
pass by stacking them along the batch, as the official code does.
"""

from __future__ import annotations

import torch
from torch import nn

from .vit import init_like_mae, sincos_2d


class Predictor(nn.Module):
    """The I-JEPA predictor (fixed 2-D sin-cos position embeddings)."""

    def __init__(self, enc_dim: int, grid: tuple[int, int], *, dim: int = 384, depth: int = 6, heads: int = 12,
                 mlp_ratio: float = 4.0):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.predictor_embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.predictor_pos_embed = nn.Parameter(sincos_2d(dim, grid), requires_grad=False)
        self.predictor_blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True) for _ in range(depth))
        self.predictor_norm = nn.LayerNorm(dim, eps=1e-6)
        self.predictor_proj = nn.Linear(dim, enc_dim)
        init_like_mae(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def _positions(self, mask: torch.Tensor) -> torch.Tensor:
        n = mask.shape[0]
        pos = self.predictor_pos_embed.expand(n, -1, -1)
        return pos[mask].view(n, -1, pos.shape[-1])  # [N, K, dim], raster order

    def forward(self, context: torch.Tensor, visible: torch.Tensor,
                targets: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """Predictions for each target block: a list of ``[N, T_i, enc_dim]``."""
        x = self.predictor_embed(context) + self._positions(visible).to(context.dtype)  # [N, K, dim]
        k = x.shape[1]
        n_t = len(targets)
        queries = [self.mask_token.to(x.dtype) + self._positions(t).to(x.dtype) for t in targets]  # [N, T_i, dim]
        sizes = {q.shape[1] for q in queries}
        if len(sizes) == 1:  # equal target sizes: all blocks in one batched pass
            h = torch.cat([x.repeat(n_t, 1, 1), torch.cat(queries, dim=0)], dim=1)
            out = self._run(h)[:, k:]
            return list(out.chunk(n_t, dim=0))
        return [self._run(torch.cat([x, q], dim=1))[:, k:] for q in queries]

    def _run(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.predictor_blocks:
            h = block(h)
        return self.predictor_proj(self.predictor_norm(h))
