"""DINO / iBOT projection head: an MLP to a bottleneck, L2 normalisation, weight-normalised prototypes.

Key names follow bytedance/ibot ``models/head.py`` (``mlp.0``, ``mlp.2``, ``mlp.4``,
``last_layer.weight_g``, ``last_layer.weight_v``), so an official head could be read into it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """``x @ (g * v / ||v||).T`` without bias; ``g [out, 1]``, ``v [out, in]`` (``nn.utils.weight_norm``, dim 0)."""

    def __init__(self, in_dim: int, out_dim: int, fixed_norm: bool):
        super().__init__()
        v = torch.empty(out_dim, in_dim)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))  # nn.Linear's default, as the official head's last layer
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fixed_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return F.linear(x, weight)


class ProjectionHead(nn.Module):
    """``tokens [..., D] -> logits [..., K]`` over K prototypes; one head for [CLS] and patch tokens (iBOT's
    ``shared_head``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims, dims[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                mods.append(nn.GELU())
        self.mlp = nn.Sequential(*mods)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, fixed_norm=norm_last_layer)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)  # [..., bottleneck] on the unit sphere
        return self.last_layer(x)  # [..., K]
