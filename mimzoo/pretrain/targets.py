"""Targets: what the model predicts at each patch, as ``[N, L, D]`` (or class ids ``[N, L]``).

- :class:`PixelTarget`: patch pixels, optionally normalised per patch (MAE's ``norm_pix_loss``);
- :class:`HOGTarget`: histograms of oriented gradients per patch (MaskFeat);
- :class:`EMATeacher`: features of a momentum copy of the encoder (data2vec, I-JEPA);
- :class:`FrozenTeacher`: features of any model :func:`mimzoo.load` accepts (EVA / MILAN style);
- :class:`TokenizerTarget`: discrete ids from a registered tokenizer (BEiT style).

Targets are computed without gradients. Images arrive normalised with the student's
preprocessing (mean/std); targets that need other pixels convert them.
"""

from __future__ import annotations

import copy
import importlib.metadata
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry.contract import Preprocess
from .models.vit import token_features
from .recipe import RecipeError, Target


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, L, p*p*C]``, each patch in (row, column, channel) order (MAE's)."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, p: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[N, L, p*p*C]`` -> ``[N, C, H, W]``."""
    n = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(n, gh, gw, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, gh * p, gw * p)


class TargetBase(nn.Module):
    """A target: ``target(images) -> [N, L, dim]``; ``dim`` sizes the prediction head."""

    dim: int = 0
    is_pixels = False

    def update(self, student: nn.Module, progress: float) -> None:
        """Called after each optimiser step (EMA teachers move towards the student)."""


class PixelTarget(TargetBase):
    """Patch pixels ``[N, L, p*p*C]``; with ``normalize`` each patch has zero mean and unit variance."""

    is_pixels = True

    def __init__(self, patch: int, channels: int, normalize: bool):
        super().__init__()
        self.patch, self.channels, self.normalize = patch, channels, normalize
        self.dim = patch * patch * channels

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        target = patchify(images.float(), self.patch)
        if self.normalize:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def to_pixels(self, pred: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Predictions back to image space; normalised predictions take each true patch's mean/std."""
        if self.normalize:
            true = patchify(images.float(), self.patch)
            pred = pred.float() * (true.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5 + true.mean(dim=-1, keepdim=True)
        grid = (images.shape[2] // self.patch, images.shape[3] // self.patch)
        return unpatchify(pred.float(), self.patch, grid, self.channels)


class HOGTarget(TargetBase):
    """Per-patch HOG: ``bins`` unsigned orientations per ``cell x cell`` cell and channel, each
    cell histogram L2-normalised; a patch's vector holds its cells in raster order."""

    def __init__(self, patch: int, channels: int, bins: int = 9, cell: int = 8):
        super().__init__()
        self.cells = max(1, patch // cell)  # cells per patch side
        if patch % self.cells:
            raise RecipeError(f"HOG cells of {cell} px do not tile {patch} px patches; set target.hog_cell")
        self.patch, self.cell, self.bins, self.channels = patch, patch // self.cells, bins, channels
        self.dim = channels * bins * self.cells * self.cells
        kx = torch.tensor([[-1.0, 0.0, 1.0]]).view(1, 1, 1, 3)
        self.register_buffer("kx", kx.repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("ky", kx.view(1, 1, 3, 1).repeat(channels, 1, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        n, c, h, w = x.shape
        gx = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), self.kx, groups=c)
        gy = F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), self.ky, groups=c)
        mag = torch.sqrt(gx * gx + gy * gy)
        angle = torch.remainder(torch.atan2(gy, gx), math.pi)  # unsigned orientation in [0, pi)
        idx = (angle / math.pi * self.bins).long().clamp_(max=self.bins - 1)
        hist = torch.zeros(n, c, self.bins, h, w, device=x.device).scatter_(2, idx.unsqueeze(2), mag.unsqueeze(2))
        hist = F.avg_pool2d(hist.view(n, c * self.bins, h, w), self.cell) * self.cell**2  # sums per cell
        gh, gw = h // self.cell, w // self.cell
        hist = F.normalize(hist.view(n, c, self.bins, gh, gw), dim=2)
        k = self.cells  # [N, C, bins, H/p, k, W/p, k] -> [N, L, k*k*C*bins]
        hist = hist.view(n, c, self.bins, gh // k, k, gw // k, k).permute(0, 3, 5, 4, 6, 1, 2)
        return hist.reshape(n, (gh // k) * (gw // k), self.dim)


class EMATeacher(TargetBase):
    """Features of a momentum copy of the encoder; momentum goes linearly from ``ema[0]`` to ``ema[1]``."""

    def __init__(self, student: nn.Module, spec: Target):
        super().__init__()
        self.teacher = copy.deepcopy(student).requires_grad_(False).eval()
        self.spec = spec
        self.dim = int(student.num_features)

    def train(self, mode: bool = True) -> EMATeacher:  # the teacher never trains (no dropout, fixed norms)
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = token_features(self.teacher, images, self.spec.layers, self.spec.layer_norm)
        return F.layer_norm(feats.float(), feats.shape[-1:]) if self.spec.final_norm else feats

    @torch.no_grad()
    def update(self, student: nn.Module, progress: float) -> None:
        start, end = self.spec.ema
        m = start + (end - start) * min(max(progress, 0.0), 1.0)
        for t, s in zip(self.teacher.parameters(), student.parameters()):
            t.mul_(m).add_(s.detach().to(t.dtype), alpha=1.0 - m)
        for t, s in zip(self.teacher.buffers(), student.buffers()):
            t.copy_(s)


class FrozenTeacher(TargetBase):
    """Patch features of a frozen model (``mimzoo.load(name)``), resampled to the student's grid."""

    def __init__(self, name: str, spec: Target, student_pp: Preprocess, grid: tuple[int, int]):
        super().__init__()
        import mimzoo

        enc = mimzoo.load(name)
        self.teacher = enc.model.requires_grad_(False).eval()
        self.spec, self.grid = spec, grid
        self.src_pp, self.dst_pp = student_pp, enc.preprocess
        self.dim = int(enc.token_dim)  # the width of its tokens (a token-avg embedding is twice that)

    def train(self, mode: bool = True) -> FrozenTeacher:
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _renormalise(images.float(), self.src_pp, self.dst_pp)
        feats = token_features(self.teacher, x, self.spec.layers, self.spec.layer_norm).float()  # [N, Lt, D]
        side = int(math.isqrt(feats.shape[1]))
        if (side, side) != self.grid:
            fmap = feats.transpose(1, 2).reshape(feats.shape[0], -1, side, side)
            fmap = F.interpolate(fmap, size=self.grid, mode="bilinear", align_corners=False)
            feats = fmap.flatten(2).transpose(1, 2)
        return F.layer_norm(feats, feats.shape[-1:]) if self.spec.final_norm else feats


def _renormalise(x: torch.Tensor, src: Preprocess, dst: Preprocess) -> torch.Tensor:
    """Images normalised for ``src`` -> normalised (and resized) for ``dst``."""
    def stat(v: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(v, device=x.device).view(1, -1, 1, 1)

    x = (x * stat(src.std) + stat(src.mean) - stat(dst.mean)) / stat(dst.std)
    size = tuple(dst.input_size[1:])
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    return x


class TokenizerTarget(TargetBase):
    """Class ids ``[N, L]`` from the registered tokenizer named ``ref`` (see :func:`register_tokenizer`).

    The tokenizer maps the normalised images to ids on the student's patch grid and tells its
    vocabulary size as ``vocab_size``. A factory taking ``patch_size`` receives the student's.
    """

    def __init__(self, ref: str, patch: int, length: int):
        super().__init__()
        self.tokenizer = _resolve(ref, patch).requires_grad_(False).eval()
        self.dim = int(getattr(self.tokenizer, "vocab_size", 0))
        if self.dim <= 0:
            raise RecipeError(f"tokenizer '{ref}' has no positive vocab_size attribute")
        self.length = length

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ids = self.tokenizer(images)
        if ids.shape[1:] != (self.length,):
            raise RecipeError(f"the tokenizer gave ids of shape {tuple(ids.shape)}; "
                              f"the encoder has {self.length} patches")
        return ids.long()


# Tokenizers are found by name only, never by a module path: a recipe may come from a file (a model
# folder's pretrain.safetensors, a Hub repo), and nothing read from a file may choose code to import.
TOKENIZER_GROUP = "mimzoo.tokenizers"  # entry-point group of installed packages' tokenizers
_TOKENIZERS: dict[str, Callable[..., nn.Module]] = {}  # built-in and register_tokenizer() ones
# the spelling recipes used before tokenizers were registered by name
_ALIASES = {"mimzoo.pretrain.targets:MeanColorTokenizer": "mean-color"}


def register_tokenizer(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``target.teacher=<name>`` build ``factory()`` (or ``factory(patch_size=p)``).

    Installed packages can instead declare an entry point in the ``mimzoo.tokenizers`` group.

    >>> register_tokenizer("my-vq", MyVQTokenizer)  # doctest: +SKIP
    """
    if name in _TOKENIZERS and _TOKENIZERS[name] is not factory:
        raise RecipeError(f"tokenizer '{name}' is already registered; pick another name")
    _TOKENIZERS[name] = factory


def tokenizer_names() -> list[str]:
    """Registered tokenizer names (entry points listed from metadata, nothing imported)."""
    eps = {ep.name for ep in importlib.metadata.entry_points(group=TOKENIZER_GROUP)}
    return sorted(set(_TOKENIZERS) | eps)


def _find_tokenizer(name: str) -> Callable[..., nn.Module] | None:
    if name in _TOKENIZERS:
        return _TOKENIZERS[name]
    for ep in importlib.metadata.entry_points(group=TOKENIZER_GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as e:  # noqa: BLE001 - a broken plugin is reported, not raised raw
                raise RecipeError(f"tokenizer '{name}' (entry point {ep.value}) failed to import: {e}; "
                                  "reinstall the package that provides it") from e
    return None


def _resolve(ref: str, patch: int) -> nn.Module:
    factory = _find_tokenizer(_ALIASES.get(ref, ref))
    if factory is None:
        raise RecipeError(f"target.teacher '{ref}' is not a registered tokenizer (known: "
                          f"{', '.join(tokenizer_names())}); tokenizers are never imported from a module path: "
                          f"register yours with register_tokenizer() or the '{TOKENIZER_GROUP}' entry-point group")
    takes_patch = "patch_size" in inspect.signature(factory).parameters
    return factory(patch_size=patch) if takes_patch else factory()


class MeanColorTokenizer(nn.Module):
    """A tiny reference tokenizer: the mean colour of each patch, each channel quantised to
    ``levels`` bins (boundaries at the standard normal's quantiles): ``levels ** C`` ids.

    Registered as ``mean-color``. Real BEiT uses a dVAE / VQ-KD tokenizer; register one with
    :func:`register_tokenizer` (or the ``mimzoo.tokenizers`` entry-point group) and name it in
    ``target.teacher``.
    """

    def __init__(self, patch_size: int = 16, levels: int = 4, channels: int = 3):
        super().__init__()
        self.patch_size, self.levels, self.channels = patch_size, levels, channels
        self.vocab_size = levels**channels
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.arange(1, levels) / levels)
        self.register_buffer("bounds", q, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        means = F.avg_pool2d(images.float(), self.patch_size).flatten(2).transpose(1, 2)  # [N, L, C]
        digits = torch.bucketize(means.contiguous(), self.bounds)  # [N, L, C] in [0, levels)
        weights = self.levels ** torch.arange(self.channels, device=images.device)
        return (digits * weights).sum(dim=-1)


_TOKENIZERS["mean-color"] = MeanColorTokenizer


def build_target(spec: Target, *, encoder: nn.Module, preprocess: Preprocess, patch: int,
                 grid: tuple[int, int]) -> TargetBase:
    """The target module a recipe asks for.

    Args:
        spec: the recipe's :class:`~mimzoo.pretrain.recipe.Target`.
        encoder: the student encoder (timm model), copied by EMA teachers.
        preprocess: the student's preprocessing (teachers may need other normalisation).
        patch: pixels per target patch (the encoder's patch, or its total stride for convnets).
        grid: ``(h, w)`` target patches.
    """
    channels = preprocess.input_size[0]
    if spec.kind in ("pixels", "normalized-pixels"):
        return PixelTarget(patch, channels, normalize=spec.kind == "normalized-pixels")
    if spec.kind == "hog":
        return HOGTarget(patch, channels, spec.hog_bins, spec.hog_cell)
    if spec.kind == "ema-features":
        return EMATeacher(encoder, spec)
    if spec.kind == "teacher-features":
        return FrozenTeacher(str(spec.teacher), spec, preprocess, grid)
    if spec.kind == "discrete-tokens":
        return TokenizerTarget(str(spec.teacher), patch, grid[0] * grid[1])
    raise RecipeError(f"unknown target '{spec.kind}'")


def describe(target: Any) -> str:
    return f"{type(target).__name__}(dim={target.dim})"
