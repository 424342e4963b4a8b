"""Reading an export folder (written by ``mimzoo export``) for publishing, and re-checking it.

An export folder holds ``model.onnx`` (+ its external weights, usually ``model.onnx.data``) and
``export.json`` (format, precision, opset, shapes, preprocessing, provenance and the verification
report). Only ONNX exports whose verification passed are published; before they are, the ONNX model
is run once more with onnxruntime against the very PyTorch encoder being published, so an export
of other weights can never ship beside them.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._deps import require
from .._atomic import atomic_file
from ..errors import MimzooError
from .public import public_export_meta
from .repo_id import RepoIdError, validate_repo_path

log = logging.getLogger(__name__)

EXPORT_JSON = "export.json"
ONNX_NAME = "model.onnx"
PRECISIONS = ("fp32", "fp16", "int8")
OPENVINO_PRECISIONS = ("fp32", "bf16", "int8")  # OpenVINO IR folders (model.xml + model.bin), shipped as openvino/<precision>/
OPENVINO_FILES = ("model.xml", "model.bin")
# cosine between ONNX and PyTorch embeddings required at publish time, whatever export.json says
# (a folder's own limits could be loosened); weights of another model score far below these
DEFAULT_COSINE = {"fp32": 0.9999, "fp16": 0.999, "bf16": 0.999, "int8": 0.99}


class ExportFolderError(MimzooError):
    """An export folder cannot be published."""


@dataclass(frozen=True)
class ExportFolder:
    """An ONNX export folder checked for publishing."""

    path: Path  # the folder
    meta: dict[str, Any]  # export.json as written by `mimzoo export`
    files: tuple[str, ...]  # model.onnx and the external-data files it references, relative to `path`

    @property
    def precision(self) -> str:
        return str(self.meta["precision"])

    @property
    def format(self) -> str:
        return str(self.meta.get("format") or "onnx")

    @property
    def subdir(self) -> str:
        """Where it ships in the repo: ``onnx/<precision>`` or ``openvino/<precision>``; a task export
        (backbone + head) under ``task-<kind>/``."""
        head = (self.meta.get("task") or {}).get("head")
        return f"task-{head['kind']}/{self.format}/{self.precision}" if head else f"{self.format}/{self.precision}"

    @property
    def verification(self) -> dict[str, Any]:
        return dict(self.meta.get("verification") or {})

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.meta.get("provenance") or {})


def is_export_folder(path: str | Path) -> bool:
    return (Path(path) / EXPORT_JSON).is_file()


def read_export(path: str | Path) -> ExportFolder:
    """Read and check an export folder: an ONNX export whose verification passed.

    Args:
        path: the folder `mimzoo export` wrote.

    >>> read_export("exports/out/mae-vit-b-fp32").precision  # doctest: +SKIP
    'fp32'
    """
    folder = Path(path)
    meta = _read_meta(folder)
    fmt = meta.get("format")
    if fmt not in ("onnx", "openvino"):
        raise ExportFolderError(
            f"{folder} is a {fmt} export; only ONNX exports are published, and OpenVINO IR folders (TensorRT "
            "engines are built for one GPU and TensorRT version: build them where they run)"
        )
    allowed = OPENVINO_PRECISIONS if fmt == "openvino" else PRECISIONS
    if meta.get("precision") not in allowed:
        raise ExportFolderError(f"{folder}/{EXPORT_JSON} has precision {meta.get('precision')!r}, not one of {allowed}")
    check = meta.get("verification") or {}
    if check.get("passed") is not True:
        figures = ", ".join(f"{k}={check.get(k)}" for k in ("max_abs", "max_rel", "cosine_min") if k in check)
        raise ExportFolderError(
            f"the export in {folder} did not pass its verification ({figures or 'no report'}); nothing is published: "
            "fix the export and re-run `mimzoo export` until `mimzoo verify` passes"
        )
    files = OPENVINO_FILES if fmt == "openvino" else (ONNX_NAME, *_external_files(folder))
    from ..exporters.task import head_files

    files = (*files, *head_files(folder, meta))  # a task export's head/ ships with it
    _check_unchanged(folder, meta)
    return ExportFolder(folder, meta, files)


def _check_unchanged(folder: Path, meta: dict[str, Any]) -> None:
    """The export is complete and verified (its marker) and model.onnx is the very file that was verified."""
    from ..exporters.metadata import CorruptExportError, check_artifact

    try:
        if meta.get("format") == "openvino":
            from ..exporters.openvino import check_folder

            check_folder(folder, meta)
            return
        check_artifact(folder, meta)
    except CorruptExportError as e:
        raise ExportFolderError(f"{e}; nothing is published") from e


def _read_meta(folder: Path) -> dict[str, Any]:
    meta_file = folder / EXPORT_JSON
    if not meta_file.is_file() or not ((folder / ONNX_NAME).is_file() or (folder / OPENVINO_FILES[0]).is_file()):
        raise ExportFolderError(f"{folder} is not an export folder (needs {ONNX_NAME} or {OPENVINO_FILES[0]}, and "
                                f"{EXPORT_JSON}); run `mimzoo export`")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportFolderError(f"{meta_file} is not valid JSON ({e}); re-run `mimzoo export`") from e
    if not isinstance(meta, dict) or meta.get("mimzoo_export") != 1:
        raise ExportFolderError(f"{meta_file} is not a mimzoo export report (mimzoo_export: 1); re-run `mimzoo export`")
    return meta


def _external_files(folder: Path) -> list[str]:
    """External-data files the ONNX graph references, each checked to stay inside the folder."""
    onnx = require("onnx")
    try:
        model = onnx.load(str(folder / ONNX_NAME), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends: a truncated or damaged file
        raise ExportFolderError(f"{folder / ONNX_NAME} is not a readable ONNX model ({type(e).__name__}); the file is "
                                "damaged or incomplete: re-run `mimzoo export`; nothing is published") from e
    locations: set[str] = set()
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            locations.add(entries.get("location", ""))
    for loc in sorted(locations):
        try:
            validate_repo_path(loc)
        except RepoIdError as e:
            raise ExportFolderError(f"{folder}/{ONNX_NAME} references external data {loc!r} outside its folder; "
                                    "re-export it with the weights beside the model") from e
        if not (folder / loc).is_file():
            raise ExportFolderError(f"{folder}/{ONNX_NAME} needs {loc}, which is missing; copy the whole export folder")
    return sorted(locations)


def _all_tensors(graph: Any) -> list[Any]:
    """Initializers of a graph and of its subgraphs (If/Loop bodies)."""
    out = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            subgraphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
            for sub in subgraphs:
                out += _all_tensors(sub)
    return out


def stage_export(export: ExportFolder, dest: Path) -> ExportFolder:
    """Copy an export into the repo folder with the exporting machine's paths removed from its report.

    The graph and weights are copied byte for byte; export.json and the same report in the ONNX
    model's metadata_props are rewritten with local paths reduced to names (public_export_meta).
    """
    dest.mkdir(parents=True)
    for name in export.files:
        if not name.startswith("head/"):  # a task export's head: staged below, with public names
            shutil.copyfile(export.path / name, dest / name)
    meta = public_export_meta(export.meta)
    if "task" in meta:
        from ..exporters.task import stage_head

        meta = stage_head(export.path, dest, meta)
    with atomic_file(dest / EXPORT_JSON) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if export.format == "openvino":  # the IR carries only the preprocessing: nothing local to rewrite
        return replace(export, path=dest, meta=meta)
    onnx = require("onnx")
    model = onnx.load(str(dest / ONNX_NAME), load_external_data=False)
    for prop in model.metadata_props:
        report = _json_or_none(prop.value)
        if isinstance(report, dict) and "mimzoo_export" in report:
            prop.value = json.dumps(meta if "task" in meta else public_export_meta(report))
    with atomic_file(dest / ONNX_NAME) as tmp:  # serialised as is: external data stays untouched
        tmp.write_bytes(model.SerializeToString())
    return replace(export, path=dest, meta=meta)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def check_against(export: ExportFolder, encoder: Any, *, batch: int = 2, seed: int = 0) -> float:
    """Run the ONNX model and `encoder` on the same input; return the lowest per-image cosine.

    Raises ExportFolderError when the export was made at another input size or its embeddings do not
    match the encoder's (other weights, other model).
    """
    import numpy as np

    torch = require("torch")
    ort = require("onnxruntime")
    c, h, w = encoder.preprocess.input_size
    frames = getattr(encoder.preprocess, "num_frames", None)  # a video encoder takes [N, C, T, H, W]
    dims = [c, h, w] if frames is None else [c, int(frames), h, w]
    shape = (export.meta.get("inputs") or {}).get("pixel_values") or [batch, *dims]
    if [int(s) for s in shape[1:]] != dims:
        raise ExportFolderError(f"{export.path} was exported for input {shape[1:]}, the model takes {dims}; "
                                "export this model again")
    n = int(shape[0]) if isinstance(shape[0], int) else batch
    x = np.random.default_rng(seed).standard_normal((n, *dims)).astype(np.float32)
    if "task" in export.meta:  # backbone + head: the logits against these weights and the export's head/
        from ..exporters.runtime import ExportedOpenVinoModel, OnnxModel
        from ..exporters.task import recheck_cosine

        run = ExportedOpenVinoModel(export.path).run if export.format == "openvino" else \
            OnnxModel(export.path / ONNX_NAME).run
        worst = recheck_cosine(export.path, export.meta, encoder, x, run)
        if not worst >= DEFAULT_COSINE[export.precision]:
            raise ExportFolderError(f"the task model in {export.path} does not match the model being published (logit "
                                    f"cosine {worst:.4f}); it was exported from other weights: export this model again")
        return worst
    if export.format == "openvino":  # as a deployer runs it: the runtime, with the precision export.json records
        from ..exporters.runtime import ExportedOpenVinoModel

        got = ExportedOpenVinoModel(export.path).run(x)["embedding"].astype(np.float64)
    else:
        session = ort.InferenceSession(str(export.path / ONNX_NAME), providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0]
        dtype = np.float16 if "float16" in feed.type else np.float32
        names = [o.name for o in session.get_outputs()]
        got = session.run([names[names.index("embedding")] if "embedding" in names else names[0]],
                          {feed.name: x.astype(dtype)})[0].astype(np.float64)
    p = next(encoder.parameters())
    with torch.inference_mode():
        ref = encoder(torch.from_numpy(x).to(device=p.device, dtype=p.dtype)).double().cpu().numpy()
    if got.shape != ref.shape:
        raise ExportFolderError(f"{export.path} gives embeddings {got.shape}, the model {ref.shape}; export this model again")
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    need = DEFAULT_COSINE[export.precision]  # mimzoo's own limit: never one the folder states
    worst = float(cos.min())
    log.info("ONNX %s vs PyTorch: lowest cosine %.6f (need %.6f)", export.path, worst, need)
    if not worst >= need:
        raise ExportFolderError(
            f"the ONNX model in {export.path} does not match the model being published (cosine {worst:.4f} < {need}); "
            "it was exported from other weights: export this model again"
        )
    return worst
