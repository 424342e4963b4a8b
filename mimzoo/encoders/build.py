"""Building encoders from timm architectures."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._deps import require
from ..errors import MimzooError, PluginError
from ..registry.contract import Method, Preprocess, Variant


# timm.create_model keyword arguments that load files, reach the network or change what is built beyond the
# architecture: a model folder's config.json (possibly from a stranger's Hub repo) must not set them
_NOT_ARCHITECTURE = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path", "cache_dir",
    "features_only", "feature_cfg", "feature_cls", "out_indices", "scriptable", "exportable", "no_jit", "weights_only",
    "num_classes", "global_pool",
})


def check_model_args(model_args: Any, where: str) -> dict[str, Any]:
    """`model_args` from a config.json, refused in one line unless every key is an architecture keyword
    (depth, embed_dim, patch_size, ...) with a plain JSON value: no checkpoint paths, pretrained configs,
    cache folders or downloads (``pretrained=True``) chosen by the file.

    >>> check_model_args({"depth": 6, "checkpoint_path": "/etc/passwd"}, "acme/x config.json")
    Traceback (most recent call last):
    mimzoo.errors.MimzooError: acme/x config.json: model_args 'checkpoint_path' is not an architecture argument (a model folder may not choose files, downloads or pretrained configs); remove it from model_args
    """
    if model_args is None:
        return {}
    if not isinstance(model_args, Mapping):
        raise MimzooError(f"{where}: model_args must be an object of architecture arguments, not "
                          f"{type(model_args).__name__}; fix model_args")
    for key, value in model_args.items():
        bad_key = not isinstance(key, str) or not key.isidentifier() or key.startswith("_")
        if bad_key or key in _NOT_ARCHITECTURE or key.startswith("pretrained"):
            raise MimzooError(f"{where}: model_args {key!r} is not an architecture argument (a model folder may not "
                              "choose files, downloads or pretrained configs); remove it from model_args")
        if not _plain(value):
            raise MimzooError(f"{where}: model_args {key!r} has a value of type {type(value).__name__}; architecture "
                              "arguments are numbers, strings, booleans, null or lists of them: fix model_args")
    return dict(model_args)


def _plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return depth < 2 and isinstance(value, (list, tuple)) and all(_plain(v, depth + 1) for v in value)


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
        pooling: timm `global_pool` value ("token", "avg", ...), or "token-avg" (see encoders/pooling.py).
        model_kwargs: extra constructor kwargs (depth, patch size, ...).
        img_size: input size for architectures with fixed position embeddings; ignored by
            architectures that take any input size.
    """
    check_img_size(arch, model_kwargs, img_size)
    timm = require("timm")
    from .pooling import apply_pooling, timm_global_pool

    kwargs = dict(model_kwargs or {})
    kwargs.update(num_classes=0, global_pool=timm_global_pool(pooling))  # "token-avg" is pooled by mimzoo
    if img_size is not None:
        kwargs["img_size"] = img_size
    if arch == "video_vit":  # mimzoo's own video ViT (VideoMAE); see mimzoo/encoders/video.py
        from .video import build_video_vit

        try:
            return build_video_vit(**kwargs)
        except (TypeError, ValueError) as e:
            raise MimzooError(f"cannot build video_vit with {sorted(kwargs)} ({e}); check the model arguments") from e
    try:
        return apply_pooling(timm.create_model(arch, pretrained=False, **kwargs), pooling)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "Invalid pretrained tag" in str(e):
            raise PluginError(f"timm {timm.__version__} has no architecture '{arch}'; upgrade timm") from e
        raise
    except TypeError as e:
        if img_size is not None and "img_size" in str(e):
            kwargs.pop("img_size")  # convnets and other size-agnostic encoders
            return apply_pooling(timm.create_model(arch, pretrained=False, **kwargs), pooling)
        raise MimzooError(f"cannot build '{arch}' with {sorted(kwargs)} ({e}); check the model arguments") from e


_PATCH_IN_NAME = re.compile(r"patch(\d+)")


def patch_size_of(arch: str, model_kwargs: Mapping[str, Any] | None = None) -> int | None:
    """The patch side of a patch-embedding architecture (its kwargs, else its timm name), None if unknown."""
    patch = (model_kwargs or {}).get("patch_size")
    if patch is None:
        m = _PATCH_IN_NAME.search(arch)
        patch = int(m.group(1)) if m else None
    if isinstance(patch, (tuple, list)):
        patch = patch[0]
    return patch if isinstance(patch, int) and patch > 0 else None


def check_img_size(arch: str, model_kwargs: Mapping[str, Any] | None, img_size: Any, owner: str | None = None) -> None:
    """Refuse an input size that cannot work: not a positive whole number, smaller than one patch, or
    not a multiple of the patch (the border pixels would be dropped without a word).

    >>> check_img_size("vit_base_patch16_224", None, 230)
    Traceback (most recent call last):
    mimzoo.errors.MimzooError: img_size 230 is not a multiple of the patch size 16 of vit_base_patch16_224 (the last 6 pixels would be dropped); use 224 or 240
    """
    if img_size is None:
        return
    sides = list(img_size) if isinstance(img_size, (tuple, list)) else [img_size]
    for side in sides:
        if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
            raise MimzooError(f"img_size {img_size!r} must be a positive whole number of pixels, e.g. 224")
    patch = patch_size_of(arch, model_kwargs)
    if patch is None:
        return
    who = owner or arch
    for side in sides:
        if side < patch:
            raise MimzooError(f"img_size {side} is smaller than one patch of {who} ({patch} px); "
                              f"use a multiple of {patch}, at least {patch}")
        if side % patch:
            lower, upper = side - side % patch, side - side % patch + patch
            raise MimzooError(f"img_size {side} is not a multiple of the patch size {patch} of {who} (the last "
                              f"{side % patch} pixels would be dropped); use {lower} or {upper}")


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
