"""The model folder layout shared by timm, the Hub and mimzoo.

    config.json         {architecture, num_classes, num_features, global_pool, model_args,
                         pretrained_cfg: {input_size, mean, std, interpolation, crop_pct, ...},
                         mimzoo: {name, method, variant, license, weights, version,
                                  + family, taxonomy, paper, recipe, exports when published}}
    model.safetensors   the encoder's state dict in timm's key layout

timm's own `hf-hub:` / `local-dir:` loaders read the same folder; the `mimzoo` block is extra.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir
from .._deps import require
from .._version import __version__
from ..errors import ModelFolderError
from ..registry.contract import Preprocess

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"


@dataclass(frozen=True)
class FolderConfig:
    """What a model folder's config.json says about rebuilding its encoder."""

    arch: str  # timm architecture
    model_args: dict[str, Any]  # timm constructor kwargs
    pooling: str  # timm global_pool of the encoder
    num_classes: int  # classifier size of the saved model (0 for encoders)
    preprocess: Preprocess  # preprocessing from pretrained_cfg
    mimzoo: dict[str, Any] = field(default_factory=dict)  # the mimzoo block, empty for plain timm repos


def parse_config(raw: dict[str, Any], where: str) -> FolderConfig:
    """Read a timm/mimzoo config.json dict (also timm's older single-dict form)."""
    if not isinstance(raw, dict) or "architecture" not in raw:
        raise ModelFolderError(f"{where} has no 'architecture'; it is not a timm or mimzoo model folder")
    pcfg = raw.get("pretrained_cfg", raw)
    from ..encoders.build import check_model_args

    given = raw.get("model_args") or {}
    if isinstance(given, dict):  # timm writes these two beside the architecture arguments; mimzoo sets them itself
        given = {k: v for k, v in given.items() if k not in ("num_classes", "global_pool")}
    model_args = check_model_args(given, where)
    pooling = raw.get("global_pool") or (raw.get("model_args") or {}).get("global_pool") or "token"
    mimzoo = raw.get("mimzoo") or {}
    pooling = mimzoo.get("pooling", pooling)
    return FolderConfig(
        arch=str(raw["architecture"]),
        model_args=model_args,
        pooling=pooling,
        num_classes=int(raw.get("num_classes", pcfg.get("num_classes", 0)) or 0),
        preprocess=Preprocess.from_timm(pcfg),
        mimzoo=mimzoo,
    )


def read_config(path: str | Path) -> FolderConfig:
    """Parse `config.json` of a model folder (or the file itself)."""
    p = Path(path)
    cfg_file = p / CONFIG_NAME if p.is_dir() else p
    if not cfg_file.is_file():
        raise ModelFolderError(f"{cfg_file} not found; a model folder needs config.json and model.safetensors")
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFolderError(f"{cfg_file} is not valid JSON ({e}); re-save or re-download the folder") from e
    return parse_config(raw, str(cfg_file))


def weights_file(folder: str | Path) -> Path:
    """The weights file of a model folder, preferring safetensors."""
    folder = Path(folder)
    for name in (WEIGHTS_NAME, LEGACY_WEIGHTS_NAME):
        if (folder / name).is_file():
            return folder / name
    raise ModelFolderError(f"{folder} has no {WEIGHTS_NAME}; a model folder needs config.json and model.safetensors")


def mimzoo_block(encoder: Any, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `mimzoo` block of config.json for an encoder; `extra` adds or replaces fields (the Hub
    publisher adds taxonomy, recipe, exports and the sha256 of the source weights)."""
    info = encoder.info
    block: dict[str, Any] = {
        "format": 1,
        "name": info.name,
        "method": info.method,
        "variant": info.variant,
        "pooling": info.pooling,
        "license": info.license,
        "mimzoo_version": __version__,
    }
    if info.weights is not None:
        block["weights"] = {k: v for k, v in asdict(info.weights).items() if v is not None}
    block.update(info.extra)
    block.update(extra or {})
    return {k: v for k, v in block.items() if v is not None}


def save_folder(encoder: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    """Write `encoder` as a model folder, atomically: the folder appears complete or not at all.

    Args:
        encoder: an encoder returned by :func:`mimzoo.load`.
        path: the folder to write.
        overwrite: replace an existing folder (only once the new one is complete).

    >>> save_folder(mimzoo.load("mae-vit-b"), "out/mae-vit-b")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        with atomic_dir(path, overwrite=overwrite, kind="model") as tmp:
            write_folder(encoder, tmp)
    except FileExistsError as e:
        raise ModelFolderError(f"{path} already exists; pass --overwrite (overwrite=True) or choose another folder") from e
    return path


# mimzoo's own architectures (not timm models): their folders are written by _write_plain in timm's layout
OWN_ARCHS = ("video_vit",)


def write_folder(encoder: Any, directory: str | Path, *, extra_block: Mapping[str, Any] | None = None) -> None:
    """Write config.json + model.safetensors into an existing (temporary) folder; not atomic by itself."""
    if encoder.info.arch in OWN_ARCHS:
        _write_plain(encoder, Path(directory), mimzoo_block(encoder, extra_block))
        return
    from ..encoders.pooling import timm_global_pool

    timm_hub = require("timm.models")
    timm_hub.save_for_hf(
        encoder.model,
        str(directory),
        # timm reads global_pool; a pooling mimzoo computes itself ("token-avg") is written as the one timm builds
        # the model with, and the mimzoo block's "pooling" (read first by mimzoo) keeps the real one
        model_config={"mimzoo": mimzoo_block(encoder, extra_block),
                      "global_pool": timm_global_pool(encoder.info.pooling)},
        safe_serialization=True,
        data_config=encoder.preprocess.to_timm(),
    )


def _write_plain(encoder: Any, directory: Path, block: dict[str, Any]) -> None:
    """The same two files timm's save_for_hf writes, for a model timm did not build (``video_vit``): the
    config carries the video preprocessing (``num_frames``, ``frame_stride``) in ``pretrained_cfg``."""
    from safetensors.torch import save_file

    info, pp = encoder.info, encoder.preprocess
    config = {
        "architecture": info.arch,
        "num_classes": 0,
        "num_features": int(encoder.num_features),
        "global_pool": info.pooling,
        "model_args": dict(info.model_args),
        "pretrained_cfg": {**pp.to_timm(), "num_classes": 0},
        "mimzoo": block,
    }
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
