"""`mimzoo.publish`: a zoo model, a model folder or an export folder -> a checked Hub repo.

    SOURCE --load--> encoder --checks--> repo folder (model.safetensors, config.json, README.md,
                                          onnx/<precision>/...) --one commit--> org/name@branch

Checks before anything is written: the repo id and branch are valid, the encoder loads strictly and
gives finite embeddings of the right shape, each ONNX export passed its verification and still
matches these weights, the license is known (and kept: weights cannot be relicensed), eval results
belong to this model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import MimzooError, UnknownModelError
from ..hub.card import CardInfo, build_card, is_noncommercial
from ..hub.eval_results import read_eval_results
from ..hub.export_folder import (
    ExportFolder,
    ExportFolderError,
    check_against,
    is_export_folder,
    read_export,
    stage_export,
)
from ..hub.public import public_name, public_source
from ..hub.publish import PublishError, PublishResult, RepoFile, repo_folder, upload, write_repo
from ..hub.repo_id import validate_branch, validate_repo_id
from ..registry import get_registry
from ..weights import sha256_of

log = logging.getLogger(__name__)

_LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")
PathLike = str | Path


def publish(
    source: Any,
    repo: str,
    *,
    revision: str = "main",
    private: bool = False,
    with_onnx: PathLike | Sequence[PathLike] = (),
    eval_results: PathLike | None = None,
    license: str | None = None,  # noqa: A002 - the Hub's own word
    weights: PathLike | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    output: PathLike | None = None,
    overwrite: bool = False,
    commit_message: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PublishResult:
    """Publish a model to the Hugging Face Hub as a repo that mimzoo, timm and onnxruntime load.

    Args:
        source: a zoo name (loaded with its pretrained weights), a model folder, an export folder
            (the model it was exported from is published with it), or an encoder from `mimzoo.load`.
        repo: the Hub repo id, ``org/name``; created if missing.
        revision: the branch to commit to; created from ``main`` if missing.
        private: create the repo private (an existing public repo is refused).
        with_onnx: export folders (``mimzoo export``) to ship under ``onnx/<precision>/`` (OpenVINO ones under
            ``openvino/<precision>/``); each must
            have passed its verification and is re-checked against these weights.
        eval_results: a ``mimzoo eval -o`` JSON file; this model's records go into the card.
        license: license id for weights whose license is unknown (never overrides a known one).
        weights: checkpoint file or weight-source tag, for zoo-name sources.
        endpoint: Hub URL for private hubs and mirrors (default: ``HF_ENDPOINT`` or huggingface.co).
        token: Hub token (default: ``HF_TOKEN`` or the huggingface_hub login); never logged.
        dry_run: write the repo folder to `output` and upload nothing.
        output: folder to write the repo into (required with `dry_run`); written atomically.
        overwrite: replace an existing `output` folder.
        commit_message: the commit's summary (default: "Publish <source> with mimzoo <version>").
        progress: called with one line per step (the CLI prints them).

    Returns:
        A :class:`~mimzoo.hub.publish.PublishResult`: files, commit id, previous head, URL.

    >>> r = mimzoo.publish("runs/my-mae", "acme/my-mae", with_onnx="exports/my-mae-fp32")  # doctest: +SKIP
    >>> mimzoo.load(r.load_name)  # doctest: +SKIP
    """
    say = progress or log.info
    repo_id, branch = validate_repo_id(repo), validate_branch(revision)
    if dry_run and output is None:
        raise PublishError("a dry run writes the repo folder locally: pass output (-o DIR)")
    say(f"loading {_describe(source)}")
    encoder, exports, aliases = _resolve_source(source, weights=weights, endpoint=endpoint)
    exports += [read_export(p) for p in _as_list(with_onnx)]
    _check_exports_unique(exports)
    say("checking the encoder")
    _check_encoder(encoder)
    license_id = _license(encoder, license)
    records = read_eval_results(eval_results, aliases) if eval_results else []
    rerun = _rerun(source, repo_id, branch, private, with_onnx, eval_results, license, weights, endpoint)
    message = commit_message or f"Publish {_describe(source, public=True)} with mimzoo"
    common = dict(repo_id=repo_id, revision=branch, license=license_id, noncommercial=is_noncommercial(license_id),
                  folder=Path(output) if output is not None else None)
    with contextlib.ExitStack() as stack:
        if output is not None:  # kept on disk: written complete or not at all, before any upload
            with repo_folder(output, overwrite=overwrite) as tmp:
                say(f"writing the repo folder {output}")
                files = _write(tmp, encoder, repo_id, license_id, records, exports, say)
            folder = Path(output)
        else:
            folder = stack.enter_context(repo_folder(None))
            files = _write(folder, encoder, repo_id, license_id, records, exports, say)
        if dry_run:
            return PublishResult(dry_run=True, files=files, **common)
        say(f"uploading {len(files)} files ({sum(f.size for f in files) / 1e6:.1f} MB) to {repo_id}@{branch}")
        commit, previous, url = upload(folder, files, repo_id=repo_id, revision=branch, private=private,
                                       endpoint=endpoint, token=token, message=message, rerun=rerun)
    return PublishResult(dry_run=False, files=files, commit=commit, previous=previous, url=url, **common)


def _write(folder: Path, encoder: Any, repo_id: str, license_id: str, records: list[dict[str, Any]],
           exports: list[ExportFolder], say: Callable[[str], None]) -> tuple[RepoFile, ...]:
    """Stage the exports, re-check each against the encoder as staged, then write model, config and card."""
    staged, rechecks = [], []
    for export in exports:
        say(f"checking the {'OpenVINO' if export.format == 'openvino' else 'ONNX'} model of {export.path} against these weights")
        staged.append(stage_export(export, folder / export.subdir))
        rechecks.append(check_against(staged[-1], encoder))
    card_info, block = _describe_repo(encoder, repo_id, license_id, records, staged, rechecks)
    return write_repo(folder, encoder, block=block, card=build_card(card_info))


# -- the source ----------------------------------------------------------------------------------

def _resolve_source(source: Any, *, weights: Any, endpoint: str | None) -> tuple[Any, list[ExportFolder], list[str]]:
    """The encoder to publish, the export folders that come with it, and the names it is known by."""
    from ..encoders.encoder import Encoder
    from .load import load

    if isinstance(source, Encoder):
        return source, [], [source.info.name, source.info.variant or ""]
    text = str(source)
    if is_export_folder(text):
        export = read_export(text)
        model = _exported_model(export)
        if is_export_folder(model):
            raise ExportFolderError(f"{export.path} names another export folder as its model; publish the model folder")
        encoder, _, aliases = _resolve_source(model, weights=weights, endpoint=endpoint)
        return encoder, [export], [*aliases, text]
    try:
        encoder = load(text, weights=weights, endpoint=endpoint)
    except UnknownModelError as e:
        raise PublishError(f"{e}; SOURCE is a zoo name, a model folder or an export folder") from e
    return encoder, [], [text, encoder.info.name, encoder.info.variant or ""]


def _exported_model(export: ExportFolder) -> str:
    prov = export.provenance
    model = prov.get("model")
    if not isinstance(model, str) or not model:
        raise ExportFolderError(f"{export.path}/export.json names no provenance.model; publish the model folder "
                                f"with --with-onnx {export.path}")
    path = Path(model).expanduser()
    if path.exists() or path.is_absolute():
        return str(path)
    beside = export.path.parent / model  # a relative folder written next to the export
    return str(beside) if beside.exists() else model


def _as_list(value: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if value is None:
        return []
    return [value] if isinstance(value, (str, Path)) else list(value)


def _check_exports_unique(exports: list[ExportFolder]) -> None:
    seen: dict[str, Path] = {}
    for e in exports:
        if e.subdir in seen:
            raise ExportFolderError(f"{seen[e.subdir]} and {e.path} are both {e.format} {e.precision} exports; "
                                    "pass one per format and precision")
        seen[e.subdir] = e.path


def _check_encoder(encoder: Any) -> None:
    """A forward pass gives finite [N, D] embeddings; every weight is finite."""
    torch = require("torch")
    with torch.inference_mode():
        # a NaN or inf makes the float32 sum non-finite; the exact check confirms (sums can overflow)
        bad = [n for n, p in encoder.named_parameters()
               if not torch.isfinite(p.sum(dtype=torch.float32)) and not torch.isfinite(p).all()]
        if bad:
            raise PublishError(f"the weights hold NaN or inf values ({', '.join(bad[:3])}); publish a healthy checkpoint")
        p = next(encoder.parameters())
        c, h, w = encoder.preprocess.input_size
        frames = getattr(encoder.preprocess, "num_frames", None)  # a video encoder takes clips [N, C, T, H, W]
        shape = (2, c, h, w) if frames is None else (2, c, frames, h, w)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        y = encoder.eval()(x.to(device=p.device, dtype=p.dtype))
    if tuple(y.shape) != (2, encoder.num_features) or not torch.isfinite(y).all():
        raise PublishError(f"the encoder gives {tuple(y.shape)} embeddings with non-finite values or the wrong shape "
                           f"(expected (2, {encoder.num_features})); it cannot be published")


def _license(encoder: Any, override: str | None) -> str:
    known = encoder.info.license
    if override and known and override.lower() != known.lower():
        raise PublishError(f"these weights carry the license {known} from their source; they cannot be published as "
                           f"{override}: drop --license")
    license_id = (override or known or "").lower()
    if not license_id:
        raise PublishError("the license of these weights is unknown; pass --license ID (e.g. apache-2.0) for weights you own")
    if not _LICENSE_ID.match(license_id):
        raise PublishError(f"{license_id!r} is not a license id; use a Hub license id such as apache-2.0 or cc-by-nc-4.0")
    return license_id


# -- what the repo says about the model ----------------------------------------------------------

def _describe_repo(
    encoder: Any, repo_id: str, license_id: str, records: list[dict[str, Any]],
    exports: list[ExportFolder], rechecks: list[float],
) -> tuple[CardInfo, dict[str, Any]]:
    info = encoder.info
    method, variant = _plugin(info)
    variant = variant if _zoo_weights(info, variant) else None  # paper numbers describe the zoo's weights only
    source, sha, base = _weights_provenance(info)
    export_entries = [_export_entry(e, c) for e, c in zip(exports, rechecks)]
    weights = {k: v for k, v in dataclasses.asdict(info.weights).items() if v is not None} if info.weights else {}
    block: dict[str, Any] = {
        "name": repo_id,
        "license": license_id,
        "weights": {**weights, "source": source, "sha256": sha} if weights else None,
        "origin_weights": _public_report(info.extra.get("origin_weights")),
        "exports": export_entries or None,
    }
    if method is not None:
        block.update(family=method.family, taxonomy=_jsonable(method.taxonomy),
                     paper={"title": method.paper.title, "arxiv": method.paper.arxiv, "year": method.paper.year},
                     recipe=_jsonable(info.extra.get("recipe") or method.recipe))
    card = CardInfo(
        repo_id=repo_id, license=license_id, arch=info.arch, num_features=encoder.num_features,
        params_m=sum(p.numel() for p in encoder.parameters()) / 1e6, pooling=info.pooling,
        preprocess=encoder.preprocess, method=method, variant=variant, weights_source=source, weights_sha256=sha,
        base_model=base, eval_records=tuple(records), model_index=tuple(_model_index(records, repo_id)),
        exports=tuple(export_entries),
    )
    return card, block


def _plugin(info: Any) -> tuple[Any, Any]:
    registry = get_registry()
    try:
        method = registry.method(info.method) if info.method else None
        variant = registry.model(info.variant).variant if info.variant else None
    except MimzooError:  # a plugin that is not installed here: the card says less
        return None, None
    return method, variant


def _zoo_weights(info: Any, variant: Any) -> bool:
    """True when the weights are (a copy of) one of the zoo variant's own weight sources."""
    origin = info.extra.get("origin_weights")
    sources = [origin.get("source") if isinstance(origin, dict) else None, info.weights.source if info.weights else None]
    own = [f"hf-hub:{w.repo_id}/{w.filename}" if w.repo_id else w.url for w in (variant.weights if variant else ())]
    own += [f"bundled:{w.bundled}" for w in (variant.weights if variant else ()) if w.bundled]
    return any(s in own for s in sources if s)


def _weights_provenance(info: Any) -> tuple[str | None, str | None, str | None]:
    """(public source, sha256 of the source file, Hub repo it came from) of the loaded weights.

    The source is ``hf-hub:org/name/file``, ``bundled:path``, the URL of a URL-only weight source
    (no Hub repo: base is None), or ``local:<file name>`` for a file on this machine."""
    report = info.weights
    if report is None:
        return None, None, None
    source = report.source
    base = None
    if source.startswith("hf-hub:"):
        parts = source.removeprefix("hf-hub:").split("@")[0].split("/")
        base = "/".join(parts[:2])
    return public_source(source), report.sha256 or _local_sha256(source), base


def _public_report(report: Any) -> Any:
    if isinstance(report, dict) and isinstance(report.get("source"), str):
        return {**report, "source": public_source(report["source"])}
    return report


def _local_sha256(source: str) -> str | None:
    """sha256 of the file the weights were read from, when it is on this machine."""
    from ..hub.folder import weights_file

    if source.startswith("hf-hub:"):
        spec, _, rev = source.removeprefix("hf-hub:").partition("@")
        parts = spec.split("/")
        filename = "/".join(parts[2:]) or "model.safetensors"
        hf = require("huggingface_hub")
        cached = hf.try_to_load_from_cache("/".join(parts[:2]), filename, revision=rev or None)
        return sha256_of(cached) if isinstance(cached, str) else None
    if source.startswith(("http://", "https://")):  # a URL-only weight source: its copy in mimzoo's cache
        from ..weights.url_download import cached_url_file

        with contextlib.suppress(MimzooError, OSError):
            cached = cached_url_file(source)
            return sha256_of(cached) if cached.is_file() else None
        return None
    path = Path(source)
    with contextlib.suppress(MimzooError, OSError):
        path = weights_file(path) if path.is_dir() else path
        return sha256_of(path) if path.is_file() else None
    return None


def _export_entry(export: ExportFolder, recheck: float) -> dict[str, Any]:
    keep = ("passed", "max_abs", "max_rel", "cosine_min", "knn_top1_agreement", "batches", "tolerances",
            "top1_agreement", "top1_drop", "pixel_agreement", "miou_torch", "miou_export", "miou_drop")
    check = {k: v for k, v in export.verification.items() if k in keep or k == "data"}
    meta = export.meta
    from ..exporters.task import card_entry

    task = card_entry(meta)  # a task export (backbone + head): task, labels, the head's eval metrics
    return {"path": f"{export.subdir}/{export.files[0]}", "format": export.format, "precision": export.precision,
            "opset": meta.get("opset"), "batch": meta.get("batch"),
            "files": [f"{export.subdir}/{f}" for f in (*export.files, "export.json")],
            "verification": check, "recheck_cosine": round(recheck, 6), **({"task": task} if task else {})}


def _model_index(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The card's model-index (the eval module owns the record format)."""
    from ..eval.results import model_index

    return list(model_index(records, name)) if records else []


def _jsonable(obj: Any) -> Any:
    if obj is None:
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str))


# -- messages ------------------------------------------------------------------------------------

def _describe(source: Any, public: bool = False) -> str:
    from ..encoders.encoder import Encoder

    if isinstance(source, Encoder):
        return f"encoder {source.info.variant or source.info.arch}"
    return public_name(str(source)) if public else str(source)


def _rerun(source: Any, repo_id: str, branch: str, private: bool, with_onnx: Any, eval_results: Any,
           license_id: str | None, weights: Any, endpoint: str | None) -> str:
    """The command that repeats this publish (the token is never part of it)."""
    from ..encoders.encoder import Encoder

    if isinstance(source, Encoder):
        return f"mimzoo.publish(encoder, {repo_id!r}, ...) with the same arguments"
    args = ["mimzoo", "publish", str(source), "--repo", repo_id]
    args += ["--revision", branch] if branch != "main" else []
    args += ["--private"] if private else []
    for p in _as_list(with_onnx):
        args += ["--with-onnx", str(p)]
    for flag, value in (("--eval-results", eval_results), ("--license", license_id), ("--weights", weights),
                        ("--endpoint", endpoint)):
        args += [flag, str(value)] if value else []
    return " ".join(shlex.quote(a) for a in args)
