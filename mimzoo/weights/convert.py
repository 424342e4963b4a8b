"""Turning a checkpoint in any known layout into the encoder's own weights, strictly.

Each variant lists the :class:`~mimzoo.registry.contract.CheckpointLayout` s it understands.
The layout of a file is detected from its keys, converted by the plugin, adapted to the
encoder's input size, and loaded with a full key and shape check: any missing, unexpected or
mis-shaped tensor fails the load and is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._deps import require
from ..errors import WeightsError
from ..registry.contract import CheckpointLayout, KeyShapes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    """What was loaded into an encoder, kept on it as provenance."""

    source: str  # file path, Hub location or "random init"
    layout: str  # detected or declared checkpoint layout
    tensors: int  # number of tensors loaded
    sha256: str | None = None  # sha256 of the source file when it was computed or verified


def key_shapes(sd: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def detect_layout(
    sd: Mapping[str, Any], layouts: Sequence[CheckpointLayout], *, expected: str | None = None, owner: str = ""
) -> CheckpointLayout:
    """The layout a flat checkpoint is in: `expected` when given, otherwise the first that matches."""
    if not layouts:
        raise WeightsError(f"{owner} declares no checkpoint layouts, so it cannot load a checkpoint file")
    if expected is not None:
        for layout in layouts:
            if layout.name == expected:
                return layout
        raise WeightsError(f"{owner} has no checkpoint layout '{expected}'; known: {', '.join(l.name for l in layouts)}")
    shapes: KeyShapes = key_shapes(sd)
    for layout in layouts:
        if layout.detect(shapes):
            return layout
    sample = ", ".join(sorted(shapes)[:4])
    raise WeightsError(
        f"checkpoint keys ({sample}, ...) match none of the layouts {owner} knows "
        f"({', '.join(l.name for l in layouts)}); pass a checkpoint of this model"
    )


def resample_pos_embed(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Interpolate a ViT absolute position embedding to the model's patch grid when they differ."""
    pe = sd.get("pos_embed")
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    own = getattr(model, "pos_embed", None)
    if pe is None or grid is None or own is None or pe.ndim != 3 or tuple(pe.shape) == tuple(own.shape):
        return sd
    layers = require("timm.layers")
    prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
    side = round((pe.shape[1] - prefix) ** 0.5)
    if side * side != pe.shape[1] - prefix:
        raise WeightsError(
            f"pos_embed {tuple(pe.shape)} is not a square patch grid plus {prefix} prefix token(s), so it cannot be "
            "interpolated to this img_size; load it at its own size (omit img_size) or pass a matching checkpoint"
        )
    log.info("resampling pos_embed %s -> grid %s", tuple(pe.shape), tuple(grid))
    sd = dict(sd)
    sd["pos_embed"] = layers.resample_abs_pos_embed(pe, new_size=list(grid), num_prefix_tokens=prefix)
    return sd


def _fmt(keys: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_strict(model: Any, sd: Mapping[str, Any], *, source: str, owner: str) -> int:
    """Load `sd` into `model`, failing with a report on any key or shape mismatch."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    wrong = sorted(
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_fmt(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_fmt(unexpected)})")
        if wrong:
            parts.append(f"{len(wrong)} with wrong shapes ({_fmt(wrong)})")
        raise WeightsError(
            f"{source} does not fit {owner}: {'; '.join(parts)}; pass a checkpoint made for this model"
        )
    check_finite(sd, source=source)
    model.load_state_dict(dict(sd), strict=True)
    return len(sd)


def check_finite(sd: Mapping[str, Any], *, source: str) -> None:
    """Refuse weights holding NaN or Inf: every embedding would come out NaN, silently.

    Refused rather than warned about: no trained encoder needs a non-finite weight, and a model that
    answers NaN passes shape checks, exports and even publishing unnoticed.
    """
    torch = require("torch")
    bad = []
    for key, t in sd.items():
        if isinstance(t, torch.Tensor) and not t.is_meta and (t.is_floating_point() or t.is_complex()):
            n = int(t.numel() - torch.isfinite(t).sum())
            if n:
                bad.append(f"{key}: {n} of {t.numel()} values")
    if bad:
        raise WeightsError(
            f"{source} holds NaN or Inf weights in {len(bad)} tensor(s) ({_fmt(bad, 2)}); the training run diverged "
            "or the file is corrupt: pass a checkpoint saved before the divergence"
        )


def convert_and_load(
    model: Any,
    sd: dict[str, Any],
    layouts: Sequence[CheckpointLayout],
    *,
    source: str,
    owner: str,
    expected_layout: str | None = None,
    sha256: str | None = None,
) -> LoadReport:
    """Detect the layout of `sd`, convert it, adapt it to `model`, and load it strictly."""
    layout = detect_layout(sd, layouts, expected=expected_layout, owner=owner)
    try:
        converted = layout.convert(sd, model)
    except WeightsError:
        raise
    except (KeyError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{source} looks like the '{layout.name}' layout but does not convert ({e}); "
                           f"pass a complete checkpoint of {owner}") from e
    converted = resample_pos_embed(converted, model)
    n = load_strict(model, converted, source=f"{source} ({layout.name} layout)", owner=owner)
    log.info("loaded %d tensors from %s (%s layout)", n, source, layout.name)
    return LoadReport(source=source, layout=layout.name, tensors=n, sha256=sha256)
