"""Pretraining objectives: an encoder, what it sees, what predicts, a target and a loss.

Four shapes of model cover the methods (the recipe's ``decoder.kind``):

- :class:`MaskedAutoencoder` (``mae``): visible-only ViT + transformer decoder (MAE; with other
  targets, MILAN-style feature or HOG regression);
- :class:`MaskTokenModel` (``mask-token``): the full sequence with mask tokens + a linear head
  (SimMIM, MaskFeat, BEiT, data2vec, EVA);
- :class:`JointEmbeddingPredictive` (``predictor``): visible context + predictor of target-block
  features (I-JEPA);
- :class:`FCMAE` (``fcmae``): dense masked ConvNeXt + convolutional decoder (ConvNeXt V2).

``objective(images, masks, denom)`` returns the loss: the sum over predicted positions divided
by ``denom`` (default: their count). Module names follow MAE: one method per stage.
"""

from __future__ import annotations

import torch
from torch import nn

from ..losses import masked_loss, per_position
from ..masking import MaskBatch, MaskGenerator
from ..recipe import Loss, RecipeError
from ..targets import TargetBase
from .fcmae import FCMAEDecoder, forward_dense_masked
from .mae import MAEDecoder
from .predictor import Predictor
from .vit import equal_rows, forward_mask_tokens, forward_visible, num_prefix_tokens, row_index, take_rows


class Objective(nn.Module):
    """Base class: holds the encoder (``self.encoder``, a timm model), target and loss."""

    def __init__(self, encoder: nn.Module, target: TargetBase, loss: Loss, grid: tuple[int, int], patch: int,
                 masking: MaskGenerator):
        super().__init__()
        self.encoder = encoder
        self.target = target
        self.loss_spec = loss
        self.grid, self.patch = grid, patch
        self.masking = masking  # draws the MaskBatch of each step

    def predict(self, images: torch.Tensor, masks: MaskBatch) -> torch.Tensor:
        """Predictions ``[N, L, D]`` for every position of the grid."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, masks: MaskBatch, denom: float | None = None) -> torch.Tensor:
        pred = self.predict(images, masks)  # [N, L, D]
        target = self.target(images)  # [N, L, D] or ids [N, L]
        return masked_loss(per_position(pred, target, self.loss_spec), masks.mask, denom)

    def after_step(self, progress: float) -> None:
        """Called after every optimiser step with the share of training done (EMA teachers)."""
        self.target.update(self.encoder, progress)

    def set_schedule(self, steps_per_epoch: int, total_steps: int) -> None:
        """Told once, before training, how steps fall into epochs (objectives with per-epoch schedules)."""

    def before_optimizer_step(self) -> None:
        """Called after the gradients are complete (and unscaled), before clipping and the optimiser step."""

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, masks: MaskBatch) -> torch.Tensor:
        """Predicted images ``[N, C, H, W]`` (pixel targets only)."""
        if not getattr(self.target, "is_pixels", False):
            raise RecipeError(f"a {type(self.target).__name__} target predicts no pixels; pictures need a pixel target")
        return self.target.to_pixels(self.predict(images, masks), images)


class MaskedAutoencoder(Objective):
    """MAE: ``encoder(visible patches) -> decoder(+ mask tokens) -> target of every patch``."""

    def __init__(self, encoder: nn.Module, target: TargetBase, loss: Loss, grid: tuple[int, int], patch: int,
                 masking: MaskGenerator, decoder: MAEDecoder):
        super().__init__(encoder, target, loss, grid, patch, masking)
        self.decoder = decoder

    def predict(self, images: torch.Tensor, masks: MaskBatch) -> torch.Tensor:
        latent = forward_visible(self.encoder, images, masks.visible)  # [N, P+K, D]
        return self.decoder(latent, masks.visible)  # [N, L, out]

    def forward(self, images: torch.Tensor, masks: MaskBatch, denom: float | None = None) -> torch.Tensor:
        """The loss, predicting only the masked patches (same value and gradients as predicting all)."""
        visible, masked = _positions(masks)
        if masked is None:  # mask counts differ between images (multi-block targets): predict all, then mask
            return super().forward(images, masks, denom)
        latent = forward_visible(self.encoder, images, visible)  # [N, P+K, D]
        pred = self.decoder(latent, visible, masked)  # [N, M, out]
        target = take_rows(self.target(images), masked)  # [N, M, out]
        return masked_loss(per_position(pred, target, self.loss_spec), None, denom)


class MaskTokenModel(Objective):
    """SimMIM-style: ``encoder(patches with mask tokens) -> linear head per patch token``."""

    def __init__(self, encoder: nn.Module, target: TargetBase, loss: Loss, grid: tuple[int, int], patch: int,
                 masking: MaskGenerator):
        super().__init__(encoder, target, loss, grid, patch, masking)
        dim = int(encoder.num_features)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(dim, target.dim)
        self.prefix = num_prefix_tokens(encoder)

    def predict(self, images: torch.Tensor, masks: MaskBatch) -> torch.Tensor:
        tokens = forward_mask_tokens(self.encoder, images, masks.mask, self.mask_token)  # [N, P+L, D]
        return self.head(tokens[:, self.prefix :])  # [N, L, out]


class JointEmbeddingPredictive(Objective):
    """I-JEPA: ``predictor(encoder(context), target positions) ~ teacher features of the target blocks``."""

    def __init__(self, encoder: nn.Module, target: TargetBase, loss: Loss, grid: tuple[int, int], patch: int,
                 masking: MaskGenerator, predictor: Predictor):
        super().__init__(encoder, target, loss, grid, patch, masking)
        self.predictor = predictor
        self.prefix = num_prefix_tokens(encoder)

    def forward(self, images: torch.Tensor, masks: MaskBatch, denom: float | None = None) -> torch.Tensor:
        context = forward_visible(self.encoder, images, masks.visible)[:, self.prefix :]  # [N, K, D]
        preds = self.predictor(context, masks.visible, masks.targets)  # list of [N, T_i, D]
        feats = self.target(images)  # [N, L, D]
        n, d = feats.shape[0], feats.shape[-1]
        targets = [feats[t].view(n, -1, d) for t in masks.targets]
        values = per_position(torch.cat(preds, dim=1), torch.cat(targets, dim=1), self.loss_spec)
        return masked_loss(values, None, denom)


class FCMAE(Objective):
    """ConvNeXt V2: ``dense-masked ConvNeXt(image) -> conv decoder -> pixels of every 32 px cell``."""

    def __init__(self, encoder: nn.Module, target: TargetBase, loss: Loss, grid: tuple[int, int], patch: int,
                 masking: MaskGenerator, decoder: FCMAEDecoder):
        super().__init__(encoder, target, loss, grid, patch, masking)
        self.decoder = decoder

    def predict(self, images: torch.Tensor, masks: MaskBatch) -> torch.Tensor:
        feats = forward_dense_masked(self.encoder, images, masks.mask, self.grid)  # [N, C, h, w]
        return self.decoder(feats, masks.mask)  # [N, L, out]


@torch.compiler.disable
def _positions(masks: MaskBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Visible and masked positions ``[N, K]``, ``[N, M]`` (None where mask counts differ per image).

    Data-dependent (a count check, ``nonzero``), so it runs outside ``torch.compile``: the rest of
    the step then traces as one graph.
    """
    return row_index(masks.visible), (row_index(masks.mask) if equal_rows(masks.mask) else None)
