"""MAE's light transformer decoder, with the official checkpoint's parameter names.

The decoder embeds the visible encoder tokens, puts a shared mask token at every masked
position, adds fixed sin-cos position embeddings and predicts each patch's target. Its state
dict keys are those of facebookresearch/mae (``decoder_embed, mask_token, decoder_pos_embed,
decoder_blocks.N.*, decoder_norm, decoder_pred``), so the official ``mae_visualize_*`` files
load into it directly; :func:`decoder_from_transformers` converts a ``ViTMAEForPreTraining``
decoder (transformers v4 file names, v5 state-dict names, or what v5's save_pretrained writes).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from .attention import block_rows
from .vit import as_rows, init_like_mae, sincos_2d, take_rows


class MAEDecoder(nn.Module):
    """``decoder(latent [N, P+K, De], visible [N, L]) -> [N, L, out_dim]`` (prefix tokens dropped)."""

    def __init__(self, enc_dim: int, grid: tuple[int, int], prefix: int, out_dim: int, *, dim: int = 512,
                 depth: int = 8, heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.prefix = prefix
        self.decoder_embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        # fixed, like MAE: a parameter without gradient so official checkpoints load as they are
        self.decoder_pos_embed = nn.Parameter(sincos_2d(dim, grid, prefix), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True) for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_pred = nn.Linear(dim, out_dim)
        init_like_mae(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, visible: torch.Tensor, select: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions of every patch ``[N, L, out]``, or of the patches ``select`` marks.

        Args:
            latent: encoder output ``[N, P+K, De]`` (prefix tokens first, then the visible patches).
            visible: bool ``[N, L]``, the patches the encoder saw (or their positions ``[N, K]``, raster order).
            select: bool ``[N, L]`` with the same count ``M`` in every row (the masked patches a loss
                reads; or their positions ``[N, M]``), None for all. With it the result is ``[N, M, out]``
                and the last block computes only those rows (keys and values still see every token).
        """
        x = self._tokens(latent, as_rows(visible))  # [N, P+L, d]
        blocks = list(self.decoder_blocks)
        if select is None:
            for block in blocks:
                x = block(x)
            return self.decoder_pred(self.decoder_norm(x)[:, self.prefix :])
        rows = as_rows(select) + self.prefix  # [N, M] token positions of the selected patches
        for block in blocks[:-1]:
            x = block(x)
        x = block_rows(blocks[-1], x, rows) if blocks else take_rows(x, rows)
        return self.decoder_pred(self.decoder_norm(x))

    def _tokens(self, latent: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Embedded visible tokens back at their positions ``rows [N, K]``, mask tokens elsewhere, plus
        position embeddings: ``[N, P+L, d]``."""
        x = self.decoder_embed(latent)  # [N, P+K, d]
        n, d = x.shape[0], x.shape[-1]
        length = self.decoder_pos_embed.shape[1] - self.prefix
        lead, vis = x[:, : self.prefix], x[:, self.prefix :]
        full = self.mask_token.to(x.dtype).expand(n, length, d)
        full = full.scatter(1, rows.unsqueeze(-1).expand(-1, -1, d), vis)  # [N, L, d]
        return torch.cat([lead, full], dim=1) + self.decoder_pos_embed.to(x.dtype)


_V4_TO_V5 = (
    # transformers 4 files name the decoder's blocks decoder_layers.N; files saved by transformers 5
    # write decoder_encoder.layer.N (its v5 -> v4 renaming of "layers."); both become decoder_layers.N
    (re.compile(r"^decoder_encoder\.layer\."), "decoder_layers."),
    (re.compile(r"\.attention\.attention\.(query|key|value)\."), lambda m: f".attention.{m[1][0]}_proj."),
    (re.compile(r"\.attention\.output\.dense\."), ".attention.o_proj."),
    (re.compile(r"\.intermediate\.dense\."), ".mlp.fc1."),
    (re.compile(r"\.output\.dense\."), ".mlp.fc2."),
)
_LAYER = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.o_proj": "attn.proj",
          "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def decoder_from_transformers(sd: dict[str, Any]) -> dict[str, Any]:
    """``ViTMAEForPreTraining`` decoder keys (``decoder.*``, v4 or v5 names) -> :class:`MAEDecoder` keys."""
    src = {k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")}
    for pattern, repl in _V4_TO_V5:
        src = {pattern.sub(repl, k): v for k, v in src.items()}
    out = {k: src.pop(k) for k in list(src) if not k.startswith("decoder_layers.")}
    depth = 1 + max((int(k.split(".")[1]) for k in src), default=-1)
    for i in range(depth):
        s, d = f"decoder_layers.{i}.", f"decoder_blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{d}attn.qkv.{part}"] = torch.cat([src.pop(f"{s}attention.{p}_proj.{part}") for p in "qkv"])
            for hf, timm_name in _LAYER.items():
                out[f"{d}{timm_name}.{part}"] = src.pop(f"{s}{hf}.{part}")
    out.update(src)  # leftovers surface as unexpected keys in the strict load
    return out
