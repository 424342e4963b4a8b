"""The export report (``export.json``), its copy in the ONNX metadata, and reading an export back.

The report tells a deployer with only onnxruntime how to feed the model (``preprocess``), where it
comes from (``provenance``) and how closely it matched PyTorch (``verification``). The very same
JSON is stored in the ONNX model's ``metadata_props`` under the key ``mimzoo_export``, so a lone
``model.onnx`` still carries it. Provenance also records how to rebuild the PyTorch model for
``mimzoo verify DIR`` (``init_seed``, ``weights_tag``, ``img_size``) and a digest of its tensors
(``state_sha256``), so a verify against other weights is refused instead of silently failing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_file
from .._deps import require, version_of
from .._outputs import MARKER, read_marker
from .._version import __version__
from .spec import ExportError

EXPORT_JSON = "export.json"
ONNX_NAME = "model.onnx"
META_KEY = "mimzoo_export"  # metadata_props key holding the JSON report
FORMAT_VERSION = 1


class CorruptExportError(ExportError):
    """An export folder is incomplete, corrupt, or mixes files of different exports."""


def state_sha256(encoder: Any) -> str:
    """sha256 over the encoder's tensors (names, dtypes, shapes, bytes): which weights were exported."""
    torch = require("torch")
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())  # raw bytes: bf16/fp16 too
    return h.hexdigest()


# ModelProto fields mimzoo itself rewrites after a build (embed_in_onnx, publishing): not the model
ONNX_FIELDS_IGNORED = ("metadata_props", "producer_name", "producer_version")


def artifact_sha256(onnx_path: Path) -> str:
    """sha256 of an ONNX model's graph and weights (external data included), ignoring what is rewritten
    after verification: ``metadata_props`` (the report, made public on publish) and the producer fields.

    Recorded in export.json as ``artifact_sha256``: `verify` and `publish` refuse a model changed since.
    """
    onnx = require("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    for name in ONNX_FIELDS_IGNORED:
        model.ClearField(name)
    h = hashlib.sha256(hashlib.sha256(model.SerializeToString()).hexdigest().encode())
    for extra in sorted(onnx_path.parent.glob(onnx_path.name + ".data*")):
        h.update(file_sha256(extra).encode())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of one file, read in 1 MiB blocks (exports, IR files and head files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_artifact(folder: Path, meta: dict[str, Any], *, marker_required: bool = True) -> None:
    """Refuse an export whose model.onnx (or its weights) changed after it was verified, or that lacks the
    marker of a complete, verified export (an interrupted run, or one made before mimzoo recorded it).

    With ``marker_required=False`` (verify, which re-measures everything against PyTorch) a folder with no
    marker at all, such as an export downloaded from a published Hub repo, passes when its files match the
    ``artifact_sha256`` export.json records: the digest proves the files are complete, the re-measuring
    proves them right. A marker that is there but does not claim a verified export is refused either way.
    """
    if not marker_required and read_marker(folder) is None:
        recorded = meta.get("artifact_sha256")
        if not recorded:
            raise CorruptExportError(f"{folder} has neither mimzoo's {MARKER} nor an artifact_sha256 in {EXPORT_JSON}, "
                                     "so nothing shows its files are complete; export again")
        if artifact_sha256(folder / ONNX_NAME) != recorded:
            raise CorruptExportError(f"{folder}/{ONNX_NAME} (or its weights) does not match the artifact_sha256 in "
                                     f"{EXPORT_JSON}: incomplete or changed; download or export it again")
        return
    marker = read_marker(folder) or {}
    if marker.get("kind") != "export" or marker.get("verified") is not True:
        raise CorruptExportError(f"{folder} is not a complete, verified mimzoo export (no {MARKER} saying so: an "
                                 "interrupted export, or one made by an older mimzoo); export it again")
    recorded = meta.get("artifact_sha256")
    if not recorded or marker.get("artifact_sha256") != recorded:
        raise CorruptExportError(f"{folder}/{EXPORT_JSON} records no weights digest matching its marker; export again")
    if artifact_sha256(folder / ONNX_NAME) != recorded:
        raise CorruptExportError(f"{folder}/{ONNX_NAME} differs from the model verified at export (weights digest "
                                 "mismatch): it was changed afterwards; export again")


def provenance(encoder: Any, *, model: str, init_seed: int | None, weights_tag: str | None,
               img_size: int | None) -> dict[str, Any]:
    """Where the exported weights come from, and how `mimzoo verify` rebuilds the same encoder."""
    info = encoder.info
    report = info.weights
    return {
        "model": model,
        "method": info.method,
        "variant": info.variant,
        "license": info.license,
        "weights_source": report.source if report else None,
        "weights_sha256": report.sha256 if report else None,
        "mimzoo_version": __version__,
        "torch_version": version_of("torch"),
        "init_seed": init_seed,
        "weights_tag": weights_tag,
        "img_size": img_size,
        "state_sha256": state_sha256(encoder),
    }


def build_meta(*, fmt: str, precision: str, opset: int, batch: int | str, input_shape: list[Any],
               outputs: dict[str, list[Any]], preprocess: dict[str, Any], prov: dict[str, Any],
               verification: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The export report in the shared format (issue 5 writes it, `mimzoo publish` reads it)."""
    meta = {
        "mimzoo_export": FORMAT_VERSION,
        "format": fmt,
        "precision": precision,
        "opset": opset,
        "batch": batch,
        "inputs": {"pixel_values": input_shape},
        "outputs": outputs,
        "preprocess": preprocess,
        "provenance": prov,
        "verification": verification,
    }
    meta.update(extra or {})
    return meta


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def embed_in_onnx(onnx_path: Path, meta: dict[str, Any]) -> None:
    """Store `meta` in the ONNX model's metadata_props (the graph is rewritten, external data untouched)."""
    onnx = require("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props if p.key != META_KEY}
    props[META_KEY] = json.dumps(meta)
    props["preprocess"] = json.dumps(meta["preprocess"])  # the one key a deployer needs, readable alone
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "mimzoo"
    model.producer_version = __version__
    with atomic_file(onnx_path) as tmp:
        tmp.write_bytes(model.SerializeToString())


@dataclass(frozen=True)
class ExportFolderInfo:
    """An export folder read back and checked to be whole."""

    path: Path  # the folder
    meta: dict[str, Any]  # export.json
    external_files: tuple[str, ...]  # weight files model.onnx references, relative to `path`

    @property
    def precision(self) -> str:
        return str(self.meta["precision"])

    @property
    def format(self) -> str:
        return str(self.meta["format"])


def read_export_folder(folder: str | Path, *, marker_required: bool = True) -> ExportFolderInfo:
    """Read an export folder and check it is whole and consistent; raise CorruptExportError if not
    (``marker_required``: see :func:`check_artifact`).

    Checks: export.json is a mimzoo report; model.onnx parses and passes the ONNX checker; its external
    weight files exist; its metadata equals export.json; its input/output names match the report.
    """
    folder = Path(folder)
    meta = _read_report(folder)
    if meta["format"] == "openvino":  # an IR folder: its own checks (files, marker, digest, inference precision)
        from .openvino import check_folder

        return ExportFolderInfo(folder, meta, check_folder(folder, meta, marker_required=marker_required))
    onnx = require("onnx")
    path = folder / ONNX_NAME
    if not path.is_file():
        raise CorruptExportError(f"{path} is missing; copy the whole export folder or export again")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise CorruptExportError(f"{path} is not a readable ONNX model ({type(e).__name__}); export again") from e
    external = _external_files(onnx, model, folder)
    try:
        onnx.checker.check_model(str(path))  # by path: checks external data too
    except Exception as e:
        raise CorruptExportError(f"{path} fails the ONNX checker ({str(e).splitlines()[0][:200]}); export again") from e
    _check_consistent(model, meta, path)
    check_artifact(folder, meta, marker_required=marker_required)
    return ExportFolderInfo(folder, meta, external)


def _read_report(folder: Path) -> dict[str, Any]:
    path = folder / EXPORT_JSON
    if not folder.is_dir():
        raise CorruptExportError(f"no export folder at {folder}; run `mimzoo export MODEL -o {folder}` first")
    if not path.is_file():
        raise CorruptExportError(f"{folder} has no {EXPORT_JSON}: not a mimzoo export (or an interrupted one); export again")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptExportError(f"{path} is not valid JSON ({e}); export again") from e
    if not isinstance(meta, dict) or meta.get("mimzoo_export") != FORMAT_VERSION:
        raise CorruptExportError(f"{path} is not a mimzoo export report (mimzoo_export: 1); export again")
    missing = [k for k in ("format", "precision", "inputs", "outputs", "preprocess", "provenance") if k not in meta]
    if missing:
        raise CorruptExportError(f"{path} lacks {', '.join(missing)}; export again")
    return meta


def _external_files(onnx: Any, model: Any, folder: Path) -> tuple[str, ...]:
    locations = {
        {e.key: e.value for e in t.external_data}.get("location", "")
        for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    }
    for loc in sorted(locations):
        target = (folder / loc).resolve()
        if folder.resolve() not in target.parents:
            raise CorruptExportError(f"{folder}/{ONNX_NAME} references weights {loc!r} outside its folder; export again")
        if not target.is_file():
            raise CorruptExportError(f"{folder}/{ONNX_NAME} needs {loc}, which is missing; "
                                     "copy the whole export folder (the .onnx.data travels with the .onnx)")
    return tuple(sorted(locations))


def _check_consistent(model: Any, meta: dict[str, Any], path: Path) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise CorruptExportError(f"{path} carries no mimzoo metadata: it was not written by `mimzoo export`; export again")
    try:
        inner = json.loads(props[META_KEY])
    except ValueError as e:
        raise CorruptExportError(f"{path} has unreadable mimzoo metadata; export again") from e
    if inner != meta:
        raise CorruptExportError(f"export.json and the metadata inside {path.name} disagree: the folder mixes files "
                                 "of two exports; export again")
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = [o.name for o in model.graph.output]
    if inputs != list(meta["inputs"]) or outputs != list(meta["outputs"]):
        raise CorruptExportError(f"{path} has inputs {inputs} / outputs {outputs}, export.json says "
                                 f"{list(meta['inputs'])} / {list(meta['outputs'])}; export again")
