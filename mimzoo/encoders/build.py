"""Building encoders from timm architectures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._deps import require
from ..errors import MimzooError, PluginError
from ..registry.contract import Method, Preprocess, Variant


def build_timm(
    arch: str,
    *,
    pooling: str,
    model_kwargs: Mapping[str, Any] | None = None,
    img_size: int | tuple[int, int] | None = None,
) -> Any:
    """A headless timm model (`num_classes=0`) pooling with `pooling`, randomly initialised.

    Args:
        arch: timm architecture name, e.g. "vit_base_patch16_224".
        pooling: timm `global_pool` value ("token", "avg", ...).
        model_kwargs: extra constructor kwargs (depth, patch size, ...).
        img_size: input size for architectures with fixed position embeddings; ignored by
            architectures that take any input size.
    """
    timm = require("timm")
    kwargs = dict(model_kwargs or {})
    kwargs.update(num_classes=0, global_pool=pooling)
    if img_size is not None:
        kwargs["img_size"] = img_size
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "Invalid pretrained tag" in str(e):
            raise PluginError(f"timm {timm.__version__} has no architecture '{arch}'; upgrade timm") from e
        raise
    except TypeError as e:
        if img_size is not None and "img_size" in str(e):
            kwargs.pop("img_size")  # convnets and other size-agnostic encoders
            return timm.create_model(arch, pretrained=False, **kwargs)
        raise MimzooError(f"cannot build '{arch}' with {sorted(kwargs)} ({e}); check the model arguments") from e


def set_pretrained_cfg(model: Any, preprocess: Preprocess, **fields: Any) -> None:
    """Replace timm's default pretrained_cfg (which describes some other tag's weights) with ours."""
    old = dict(getattr(model, "pretrained_cfg", {}) or {})
    cfg = {k: old[k] for k in ("architecture", "first_conv", "classifier", "fixed_input_size") if k in old}
    cfg.update(preprocess.to_timm())
    cfg["num_classes"] = 0
    cfg.update({k: v for k, v in fields.items() if v is not None})
    model.pretrained_cfg = cfg
    if hasattr(model, "default_cfg"):
        model.default_cfg = cfg


def build_variant(method: Method, variant: Variant, img_size: int | tuple[int, int] | None = None) -> Any:
    """A randomly initialised :class:`~mimzoo.encoders.encoder.Encoder` for a zoo variant.

    Works under ``with torch.device("meta")`` too, which is how tests check the largest
    variants' shapes and parameter counts without allocating them.
    """
    from .encoder import Encoder, EncoderInfo

    preprocess = variant.preprocess.with_size(img_size)
    model = build_timm(variant.arch, pooling=variant.pooling, model_kwargs=variant.model_kwargs, img_size=img_size)
    set_pretrained_cfg(model, preprocess, license=variant.license_for(method), tag=variant.name)
    info = EncoderInfo(
        name=variant.name, arch=variant.arch, model_args=dict(variant.model_kwargs), pooling=variant.pooling,
        method=method.name, variant=variant.name, license=variant.license_for(method),
    )
    return Encoder(model, preprocess, info)
