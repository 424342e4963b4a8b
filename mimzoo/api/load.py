"""`mimzoo.load`: a zoo name, a Hub repo or a local folder -> a ready encoder."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import HubFileNotFoundError, MimzooError, ModelFolderError, WeightsError
from ..registry import ModelEntry, get_registry
from ..weights import LoadReport, convert_and_load, hub_download, load_strict, read_checkpoint, sha256_of
from ..weights.convert import resample_pos_embed

log = logging.getLogger(__name__)

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
# org/name as the Hub allows it; no "..", no leading separators: names that become paths
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
           "half": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def load(
    name: str,
    pretrained: bool = True,
    weights: str | Path | None = None,
    device: Any = None,
    dtype: Any = None,
    img_size: int | tuple[int, int] | None = None,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> Any:
    """Load a MIM encoder, in eval mode, with masking off.

    Args:
        name: a zoo name (``"mae-vit-b"``, see ``mimzoo list``), ``"hf-hub:org/repo[@revision]"``,
            or a local model folder (``config.json`` + ``model.safetensors``).
        pretrained: load the variant's default pretrained weights (zoo names only); False gives
            a randomly initialised encoder.
        weights: a checkpoint file in any layout the variant knows (official, HF transformers,
            timm; detected from its keys), or the tag of one of the variant's weight sources.
        device: torch device to move the encoder to.
        dtype: torch dtype or one of "fp32", "fp16", "bf16".
        img_size: input size other than the pretraining size; position embeddings are interpolated.
        endpoint: Hugging Face Hub URL for private hubs and mirrors (default: HF_ENDPOINT).
        cache_dir: huggingface_hub cache folder (default: its own). Weight sources that are a plain URL
            download into ``$MIMZOO_CACHE/weights`` (default ``~/.cache/mimzoo/weights``) instead.

    Returns:
        An :class:`~mimzoo.encoders.encoder.Encoder`: ``encoder(x)`` -> ``[N, D]``,
        ``encoder.forward_features(x)`` -> tokens, ``encoder.num_features``, ``encoder.transform``.

    >>> enc = mimzoo.load("mae-vit-b")  # doctest: +SKIP
    >>> enc(torch.randn(1, 3, 224, 224)).shape  # doctest: +SKIP
    torch.Size([1, 768])
    """
    from ..encoders.device import check_device

    if not isinstance(name, str) or not name:
        raise MimzooError("model name must be a non-empty string such as 'mae-vit-b'")
    check_device(device, "device")
    hub = dict(endpoint=endpoint, cache_dir=cache_dir)
    if name.startswith(HF_PREFIX):
        repo_id, revision = _parse_hub_name(name)
        folder = _fetch_hub_folder(repo_id, revision, **hub)
        encoder = _load_folder(folder, img_size=img_size, source=name, weights=weights)
    elif name.startswith(LOCAL_PREFIX) or _looks_like_path(name):
        folder = Path(name.removeprefix(LOCAL_PREFIX)).expanduser()
        if not folder.is_dir():
            hint = f"; for a Hub repo use 'hf-hub:{name}'" if _REPO_RE.match(name) else ""
            raise ModelFolderError(f"no model folder at '{folder}'{hint}")
        encoder = _load_folder(folder, img_size=img_size, source=str(folder), weights=weights)
    else:
        entry = get_registry().model(name)
        encoder = _load_variant(entry, pretrained=pretrained, weights=weights, img_size=img_size, **hub)
    return _finish(encoder, device, dtype)


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~")) or (
        Path(name).is_dir() and name not in get_registry()
    )


def _parse_hub_name(name: str) -> tuple[str, str | None]:
    spec = name[len(HF_PREFIX):]
    repo_id, _, revision = spec.partition("@")
    if not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise MimzooError(f"'{repo_id}' is not a Hub repo id; use 'hf-hub:org/name[@revision]'")
    if "@" in spec and (not revision or ".." in revision):
        raise MimzooError(f"'{name}' has an empty or invalid revision; use 'hf-hub:org/name@revision'")
    return repo_id, revision or None


def _fetch_hub_folder(repo_id: str, revision: str | None, **hub: Any) -> Path:
    cfg = hub_download(repo_id, "config.json", revision=revision, **hub)
    try:
        hub_download(repo_id, "model.safetensors", revision=revision, **hub)
    except HubFileNotFoundError:  # older repos ship only the pickle (read weights-only)
        hub_download(repo_id, "pytorch_model.bin", revision=revision, **hub)
    return cfg.parent


def _load_variant(entry: ModelEntry, *, pretrained: bool, weights: Any, img_size: Any, **hub: Any) -> Any:
    from ..encoders.build import build_variant, check_img_size

    v = entry.variant
    owner = f"'{v.name}'"
    check_img_size(v.arch, v.model_kwargs, img_size, owner=v.name)  # before a download
    # weights first: a missing download or a refused file fails before a large model is built
    found = _weights_file(entry, pretrained=pretrained, weights=weights, **hub)
    state = read_checkpoint(found[0]) if found else None
    encoder = build_variant(entry.method, v, img_size)
    if found is None:
        report = LoadReport(source="random init", layout="none", tensors=0)
    else:
        _, where, layout, digest = found
        report = convert_and_load(encoder.model, state, v.layouts, source=where, owner=owner,
                                  expected_layout=layout, sha256=digest)
    encoder.info = replace(encoder.info, weights=report)
    return encoder


def _weights_file(entry: ModelEntry, *, pretrained: bool, weights: Any,
                  **hub: Any) -> tuple[Path, str, str | None, str | None] | None:
    """(local file, public name, expected layout, verified sha256) of the weights to load, or None
    for random init: `weights` as a checkpoint path or source tag, else the default source."""
    v = entry.variant
    owner = f"'{v.name}'"
    source = v.weight_source(weights) if isinstance(weights, str) and not _is_file_like(weights) else None
    if isinstance(weights, str) and source is None and not _is_file_like(weights):
        tags = ", ".join(w.name for w in v.weights) or "none"
        raise WeightsError(f"weights='{weights}' is neither a file nor a weight source of {owner} (sources: {tags}); "
                           "pass a checkpoint path or one of those tags")
    if weights is not None and source is None:  # a local checkpoint file
        return Path(weights), str(weights), None, None
    if not pretrained and source is None:
        return None
    source = source or v.weight_source()
    if source is None:
        raise WeightsError(f"{owner} has no pretrained weights; pass pretrained=False for random init or weights=PATH")
    path, where, digest = _source_file(source, entry, **hub)
    return path, where, source.layout, digest


def _source_file(source: Any, entry: ModelEntry | None = None, **hub: Any) -> tuple[Path, str, str | None]:
    """(local path, public name, verified sha256 or None) of a weight source's file: shipped with the
    plugin, through the Hub cache, or downloaded from its URL into mimzoo's cache."""
    if source.bundled:
        path = _bundled_file(entry, source.bundled)
        return path, f"bundled:{source.bundled}", _verify_sha256(path, source.sha256, "reinstall the plugin")
    if source.repo_id:
        hint = "pass weights=PATH to a local copy" + (f" of {source.url}" if source.url else "")
        path = hub_download(source.repo_id, source.filename, revision=source.revision, provide_hint=hint, **hub)
        where = f"hf-hub:{source.repo_id}/{source.filename}"
        return path, where, _verify_sha256(path, source.sha256, "delete it from the Hugging Face cache and retry")
    from ..weights.url_download import url_download

    path = url_download(source.url, sha256=source.sha256)  # verifies the digest itself
    return path, source.url, source.sha256.lower() if source.sha256 else None


def _bundled_file(entry: ModelEntry | None, bundled: str) -> Path:
    """A bundled file: in the folder of the plugin's entry-point module first, then in mimzoo's package."""
    roots = [*(_plugin_dirs(entry) if entry is not None else []), Path(__file__).resolve().parents[1]]
    for root in roots:
        if (root / bundled).is_file():
            return root / bundled
    dist = entry.distribution if entry is not None else "mimzoo"
    raise WeightsError(f"bundled weights {bundled} are missing from the install of {dist} "
                       f"(looked in {', '.join(str(r) for r in roots)}); reinstall {dist}")


def _plugin_dirs(entry: ModelEntry) -> list[Path]:
    """The folder of the module named by the entry point that registered `entry`'s method."""
    import importlib

    for info in get_registry().plugins:
        if info.method is entry.method:
            module = importlib.import_module(info.value.partition(":")[0].strip())
            return [Path(module.__file__).resolve().parent] if getattr(module, "__file__", None) else []
    return []


def _is_file_like(weights: str) -> bool:
    return "/" in weights or "\\" in weights or "." in weights or Path(weights).exists()


def _verify_sha256(path: Path, expected: str | None, fix: str) -> str | None:
    if expected is None:
        return None
    digest = sha256_of(path)
    if digest != expected.lower():
        raise WeightsError(
            f"{path} has sha256 {digest[:12]}..., expected {expected[:12]}...; the download is corrupt or "
            f"was replaced: {fix}"
        )
    return digest


def _load_folder(folder: Path, *, img_size: Any, source: str, weights: Any) -> Any:
    from ..encoders.build import build_timm, check_img_size, set_pretrained_cfg
    from ..encoders.encoder import Encoder, EncoderInfo
    from ..hub.folder import read_config, weights_file

    cfg = read_config(folder)
    _check_arch(cfg.arch, source)
    _check_preprocess(cfg.preprocess, source)
    check_img_size(cfg.arch, cfg.model_args, img_size, owner=source)
    wfile = Path(weights) if weights is not None else weights_file(folder)
    preprocess = cfg.preprocess.with_size(img_size)
    model = build_timm(cfg.arch, pooling=cfg.pooling, model_kwargs=cfg.model_args, img_size=img_size)
    set_pretrained_cfg(model, preprocess, license=cfg.mimzoo.get("license"))
    sd = read_checkpoint(wfile)
    if cfg.num_classes:  # a timm classifier repo used as an encoder: its head is not part of it
        sd = {k: t for k, t in sd.items() if not k.startswith("head.")}
        log.info("dropped the %d-class head of %s", cfg.num_classes, source)
    n = load_strict(model, resample_pos_embed(sd, model), source=str(wfile), owner=f"'{source}' ({cfg.arch})")
    block = cfg.mimzoo
    info = EncoderInfo(
        name=source, arch=cfg.arch, model_args=cfg.model_args, pooling=cfg.pooling, method=block.get("method"),
        variant=block.get("variant"), license=block.get("license"),
        weights=LoadReport(source=source, layout="timm", tensors=n),
        extra=_carried_extra(block),
    )
    return Encoder(model, preprocess, info)


def _check_arch(arch: str, source: str) -> None:
    """Refuse a config naming an architecture this timm does not have: the config is at fault, unless the
    name belongs to a family timm knows (then a newer timm may have added it)."""
    from .._deps import require

    from ..hub.folder import OWN_ARCHS

    timm = require("timm")
    if not isinstance(arch, str) or not arch or arch in OWN_ARCHS or timm.is_model(arch):
        return
    family = arch.split(".")[0].split("_")[0]
    known = bool(family) and bool(timm.list_models(f"{family}*"))
    hint = (f"if it is a newer {family} model, upgrade timm (pip install -U timm); otherwise fix 'architecture' "
            "in that config.json" if known else "fix 'architecture' in that config.json (e.g. vit_base_patch16_224)")
    raise ModelFolderError(f"config.json of {source} names architecture '{arch}' that timm {timm.__version__} does "
                           f"not have; {hint}")


def _check_preprocess(pp: Any, source: str) -> None:
    """Refuse a config whose normalisation cannot be right: a NaN, infinite or zero std, a NaN or infinite
    mean (every image would come out as garbage, and results at chance level without a word)."""
    import math

    problems = []
    for name, values in (("mean", pp.mean), ("std", pp.std)):
        values = list(values)
        if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            problems.append(f"{name} {values} is not finite")
        elif name == "std" and any(v <= 0 for v in values):
            problems.append(f"std {values} has a value <= 0")
    if problems:
        raise ModelFolderError(f"config.json of {source}: {'; '.join(problems)}; the images would be normalised "
                               "to garbage: fix pretrained_cfg.mean/std in that config.json (ImageNet's are "
                               "mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225])")


def _carried_extra(block: dict[str, Any]) -> dict[str, Any]:
    """What a folder's mimzoo block hands on through save -> load -> save chains: the first source of
    the weights, and the pretraining recipe and run of models trained with `mimzoo pretrain`."""
    extra = {"origin_weights": block.get("origin_weights", block.get("weights"))} if "weights" in block else {}
    extra.update({k: block[k] for k in ("recipe", "pretrain") if k in block})
    return extra


def _finish(encoder: Any, device: Any, dtype: Any) -> Any:
    import torch

    if isinstance(dtype, str):
        key = _DTYPES.get(dtype.lower())
        if key is None:
            raise MimzooError(f"unknown dtype '{dtype}'; use one of fp32, fp16, bf16")
        dtype = getattr(torch, key)
    if device is not None or dtype is not None:
        encoder = encoder.to(device=device, dtype=dtype)
    return encoder.eval()
