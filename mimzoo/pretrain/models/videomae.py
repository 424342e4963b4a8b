"""VideoMAE's pretraining model: tube masking, the encoder on visible tubes, a light decoder, tube targets.

Built by :func:`mimzoo.pretrain.models.build_objective` for a recipe with ``decoder.kind="videomae"``
(and ``masking.kind="tube"``) around a :class:`~mimzoo.encoders.video.VideoViT` encoder::

    objective = build_objective(find_recipe("videomae"), mimzoo.load("videomae-vit-test", pretrained=False))
    masks = objective.masking(n, torch.Generator().manual_seed(0))   # MaskBatch of bool [N, L]
    loss = objective(clips, masks)                                    # clips: normalised [N, C, T, H, W]

Parameter names follow the official ``PretrainVisionTransformer`` (MCG-NJU/VideoMAE
``modeling_pretrain.py``): ``encoder.*`` (the VideoViT), ``encoder_to_decoder`` (no bias),
``mask_token``, ``decoder.blocks.N``, ``decoder.norm``, ``decoder.head``; the decoder's position table
is the same fixed 1-D sin-cos table at the decoder's width (a buffer, in no file).

The stages, as the official ``engine_for_pretraining.py`` and transformers' ``VideoMAEForPreTraining``
compute them:

- masks: one random spatial mask of ``int(ratio * h * w)`` patches per clip, repeated on every
  tube slice (``TubeMaskingGenerator``); positions are flat ``(t', row, column)`` indices;
- encoder: tube tokens + positions, the visible ones only (raster order), blocks, final norm;
- decoder: ``encoder_to_decoder(visible) + their positions`` followed by ``mask_token + positions``
  of the masked tubes, blocks, and ``head(norm(.))`` of the masked (last ``M``) tokens;
- target: the clip un-normalised back to [0, 1] pixels, cut into tubes in ``(t, p, p, C)`` order; with
  ``normalized-pixels`` each tube is normalised per channel over its ``t*p*p`` values (unbiased
  variance, ``+ 1e-6`` on the std);
- loss: MSE over the masked tubes.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ...encoders.video import sincos_table
from ..losses import masked_loss, per_position
from ..masking import MaskBatch, MaskGenerator
from ..recipe import Loss, RecipeError
from ..targets import TargetBase
from .objectives import Objective
from .vit import row_index, take_rows


class TubeMasking(MaskGenerator):
    """VideoMAE: the same ``int(ratio * h * w)`` random patches masked on every tube slice of a clip."""

    def __init__(self, grid: tuple[int, int, int], ratio: float):
        self.grid = tuple(int(g) for g in grid)  # (T', h, w)
        self.per_slice = self.grid[1] * self.grid[2]
        self.length = self.grid[0] * self.per_slice
        self.masked = int(ratio * self.per_slice)
        if self.masked >= self.per_slice:
            raise RecipeError(f"masking.ratio {ratio} masks all {self.per_slice} patches of a frame; lower it")

    def __call__(self, n: int, gen: torch.Generator) -> MaskBatch:
        order = torch.rand(n, self.per_slice, generator=gen).argsort(dim=1)  # [N, h*w]
        one = torch.zeros(n, self.per_slice, dtype=torch.bool).scatter_(1, order[:, : self.masked], True)
        mask = one.repeat(1, self.grid[0])  # [N, T'*h*w]: the same spatial mask at every time step
        return MaskBatch(mask, ~mask)


def tubify(clips: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """``[N, C, T, H, W]`` -> ``[N, L, t*p*p, C]``: tubes in token order, values in (t, row, column) order."""
    n, c, t, h, w = clips.shape
    x = clips.reshape(n, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [N, T', h', w', t, p, p, C]
    return x.reshape(n, -1, tubelet * patch * patch, c)


def untubify(tubes: torch.Tensor, tubelet: int, patch: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`tubify` (flattened): ``[N, L, t*p*p*C]`` -> ``[N, C, T, H, W]``."""
    n = tubes.shape[0]
    gt, gh, gw = grid
    x = tubes.reshape(n, gt, gh, gw, tubelet, patch, patch, -1)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [N, C, T', t, h', p, w', p]
    return x.reshape(n, x.shape[1], gt * tubelet, gh * patch, gw * patch)


class TubePixelTarget(TargetBase):
    """Tube pixels ``[N, L, t*p*p*C]`` in [0, 1]; with ``normalize``, per tube and channel zero mean, unit std."""

    is_pixels = True

    def __init__(self, tubelet: int, patch: int, mean: tuple[float, ...], std: tuple[float, ...], normalize: bool):
        super().__init__()
        self.tubelet, self.patch, self.normalize = tubelet, patch, normalize
        self.channels = len(mean)
        self.dim = tubelet * patch * patch * self.channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1), persistent=False)

    def pixels(self, clips: torch.Tensor) -> torch.Tensor:
        """Normalised clips back to [0, 1] pixels, as ``[N, L, t*p*p, C]`` tubes."""
        return tubify(clips.float() * self.std + self.mean, self.tubelet, self.patch)

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        tubes = self.pixels(clips)  # [N, L, t*p*p, C]
        if self.normalize:
            mean = tubes.mean(dim=-2, keepdim=True)
            std = tubes.var(dim=-2, unbiased=True, keepdim=True).sqrt()
            tubes = (tubes - mean) / (std + 1e-6)
        return tubes.flatten(2)  # [N, L, t*p*p*C]

    def to_pixels(self, pred: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        """Predictions back to the clips' (normalised) space; normalised predictions take each true tube's stats."""
        n, _, _, h, w = clips.shape
        pred = pred.float().reshape(n, -1, self.tubelet * self.patch * self.patch, self.channels)
        if self.normalize:
            true = self.pixels(clips)
            pred = pred * true.var(dim=-2, unbiased=True, keepdim=True).sqrt() + true.mean(dim=-2, keepdim=True)
        grid = (clips.shape[2] // self.tubelet, h // self.patch, w // self.patch)
        return (untubify(pred.flatten(2), self.tubelet, self.patch, grid) - self.mean) / self.std


class VideoMAEDecoder(nn.Module):
    """``decoder(tokens [N, K+M, d], count M) -> [N, M, out]``: blocks, then head(norm) of the last M tokens."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, out_dim: int):
        super().__init__()
        from timm.models.vision_transformer import Block

        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(dim)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, count: int | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x if count is None else x[:, -count:]))


class VideoMAE(Objective):
    """``encoder(visible tubes) -> decoder(+ mask tokens) -> normalised pixels of the masked tubes``."""

    def __init__(self, encoder: nn.Module, target: TubePixelTarget, loss: Loss, masking: TubeMasking, *,
                 dim: int, depth: int, heads: int, mlp_ratio: float):
        grid = encoder.patch_embed.grid_size
        super().__init__(encoder, target, loss, grid, encoder.patch_embed.patch_size, masking)
        self.encoder_to_decoder = nn.Linear(int(encoder.num_features), dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_table(encoder.patch_embed.num_patches, dim), persistent=False)
        self.decoder = VideoMAEDecoder(dim, depth, heads, mlp_ratio, target.dim)
        self._init_decoder()

    def _init_decoder(self) -> None:
        """The official init: xavier-uniform linears, zero biases, a truncated-normal mask token."""
        for m in [self.encoder_to_decoder, *self.decoder.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward_encoder(self, clips: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Encoder tokens of the visible tubes ``[N, K, D]`` (positions ``visible [N, K]``)."""
        x = take_rows(self.encoder.embed(clips), visible)
        return self.encoder.norm(self.encoder.blocks(x))

    def decoder_tokens(self, latent: torch.Tensor, visible: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """``[visible tokens + their positions, mask tokens + the masked positions]`` ``[N, K+M, d]``."""
        x = self.encoder_to_decoder(latent)  # [N, K, d]
        pos = self.pos_embed.to(x.dtype).expand(x.shape[0], -1, -1)
        mask = self.mask_token.to(x.dtype) + take_rows(pos, masked)  # [N, M, d]
        return torch.cat([x + take_rows(pos, visible), mask], dim=1)

    def forward(self, clips: torch.Tensor, masks: MaskBatch, denom: float | None = None) -> torch.Tensor:
        visible, masked = _positions(masks)
        latent = self.forward_encoder(clips, visible)  # [N, K, D]
        pred = self.decoder(self.decoder_tokens(latent, visible, masked), masked.shape[1])  # [N, M, out]
        target = take_rows(self.target(clips), masked)  # [N, M, out]
        return masked_loss(per_position(pred, target, self.loss_spec), None, denom)

    def predict(self, clips: torch.Tensor, masks: MaskBatch) -> torch.Tensor:
        """Predictions of every tube ``[N, L, out]`` (the decoder's output at visible ones too, for pictures)."""
        visible, masked = _positions(masks)
        latent = self.forward_encoder(clips, visible)
        out = self.decoder(self.decoder_tokens(latent, visible, masked))  # [N, K+M, out]
        order = torch.cat([visible, masked], dim=1)  # token i sits at position order[:, i]
        return torch.empty_like(out).scatter_(1, order.unsqueeze(-1).expand_as(out), out)


@torch.compiler.disable
def _positions(masks: MaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
    return row_index(masks.visible), row_index(masks.mask)


def build_videomae(recipe: object, encoder: object) -> VideoMAE:
    """The VideoMAE objective of ``recipe`` around a mimzoo video :class:`~mimzoo.encoders.encoder.Encoder`."""
    from ...encoders.video import VideoViT

    model, pp = encoder.model, encoder.preprocess
    if not isinstance(model, VideoViT):
        raise RecipeError(f"the videomae recipe trains a video encoder (arch video_vit), not {type(model).__name__}; "
                          "pass --arch videomae-vit-test or another videomae model")
    if recipe.target.kind not in ("pixels", "normalized-pixels"):
        raise RecipeError(f"decoder.kind=videomae predicts pixels; target.kind '{recipe.target.kind}' is not "
                          "supported: use normalized-pixels or pixels")
    emb, dec = model.patch_embed, recipe.decoder
    target = TubePixelTarget(emb.tubelet_size, emb.patch_size, pp.mean, pp.std,
                             normalize=recipe.target.kind == "normalized-pixels")
    masking = TubeMasking(emb.grid_size, recipe.masking.ratio)
    return VideoMAE(model, target, recipe.loss, masking, dim=dec.dim, depth=dec.depth, heads=dec.heads,
                    mlp_ratio=dec.mlp_ratio)
