"""``--arch``: the randomly initialised encoder a pretraining run starts from.

Accepted, in this order:

1. a zoo model name (``mae-vit-b``, ``mae-vit-test``): its timm architecture, kwargs and preprocessing;
2. ``module:attr`` naming a :class:`~mimzoo.registry.Variant` (a variant not registered yet);
3. a timm architecture name (``vit_small_patch16_224``), with ImageNet preprocessing at ``img_size``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MimzooError, UnknownModelError
from ..registry import Variant, get_registry
from ..registry.contract import Preprocess


class ArchError(MimzooError):
    """``--arch`` names nothing buildable."""


def resolve_variant(arch: str) -> tuple[Variant | None, str | None]:
    """The zoo variant ``arch`` names and its method (None, None for a plain timm architecture)."""
    registry = get_registry()
    if arch in registry:
        entry = registry.model(arch)
        return entry.variant, entry.method.name
    ref = arch
    if ":" in ref:
        module, _, attr = ref.partition(":")
        try:
            variant = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ArchError(f"cannot import '{ref}' ({e}); --arch takes a zoo name, module:VARIANT "
                            "or a timm architecture") from e
        if not isinstance(variant, Variant):
            raise ArchError(f"'{ref}' is a {type(variant).__name__}, not a mimzoo.registry.Variant")
        return variant, None
    return None, None


def build_encoder(arch: str, method: str, img_size: int | None = None) -> Any:
    """A randomly initialised :class:`~mimzoo.encoders.encoder.Encoder` for ``--arch``.

    Args:
        arch: zoo name, ``module:VARIANT`` or timm architecture (see the module docstring).
        method: the method being pretrained (recorded in the encoder's provenance).
        img_size: input size other than the architecture's default.

    >>> build_encoder("mae-vit-test", "mae").num_features  # doctest: +SKIP
    32
    """
    from ..encoders.build import build_timm, set_pretrained_cfg
    from ..encoders.encoder import Encoder, EncoderInfo

    variant, _ = resolve_variant(arch)
    if variant is not None:
        pp = variant.preprocess.with_size(img_size)
        model = build_timm(variant.arch, pooling=variant.pooling, model_kwargs=variant.model_kwargs, img_size=img_size)
        info = EncoderInfo(name=variant.name, arch=variant.arch, model_args=dict(variant.model_kwargs),
                           pooling=variant.pooling, method=method)
    else:
        pp = Preprocess().with_size(img_size)
        try:
            model = build_timm(arch, pooling="token", img_size=img_size)
        except MimzooError as e:
            known = [e.name for e in get_registry().models(include_test=True)]
            raise UnknownModelError(arch, known) from e
        pool = "token" if getattr(model, "cls_token", None) is not None else "avg"
        if pool != "token":
            model = build_timm(arch, pooling=pool, img_size=img_size)
        pp = pp.with_size(img_size or _default_size(model))
        args = {"img_size": img_size} if img_size else {}
        info = EncoderInfo(name=arch, arch=arch, model_args=args, pooling=pool, method=method)
    set_pretrained_cfg(model, pp)
    return Encoder(model, pp, info)


def _default_size(model: Any) -> int:
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))
    return int(size[-1])
