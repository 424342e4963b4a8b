"""Export -> verify -> write, atomically; and verifying an existing export folder.

Everything is written into a hidden temporary folder beside the target (``.NAME.tmp-PID-XXXXXXXX``);
it takes the target's name only after verification passed, with mimzoo's marker
(``.mimzoo-output.json``: kind "export", verified, the ONNX digest) written last. A failed
verification, an error, an interrupt or a SIGKILL leaves nothing under the target name: no artifact
that looks valid. The output is locked while it is written (a second export to it fails at once);
the next export to it removes what a killed one left. `verify` accepts folders with the marker and an
unchanged ONNX, and unmarked ones (an export downloaded from a published Hub repo) whose files match the
artifact_sha256 of their export.json; it gates them all with mimzoo's own tolerances, never the folder's.
`publish` still requires the marker.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir
from .._lock import output_lock
from .._outputs import check_replaceable, sweep_stale
from .images import VIDEO_SPECS, ImageSet, load_clips, load_images
from .metadata import (
    EXPORT_JSON,
    ONNX_NAME,
    artifact_sha256,
    CorruptExportError,
    build_meta,
    embed_in_onnx,
    provenance,
    read_export_folder,
    state_sha256,
    write_json,
)
from .onnx import OnnxExport, export_onnx, frame_range, output_names, to_fp16
from .spec import ExportError, ExportSpec, Tolerances, VerificationError
from .verify import Outputs, VerifyInputs, collect, make_inputs, report, summary, torch_runner

log = logging.getLogger(__name__)
Say = Callable[[str], None]

DEFAULT_IMAGES = {"fp32": 128, "fp16": 128, "bf16": 128, "int8": 512}  # real images compared (int8: fine k-NN steps)
REAL_BATCH = 16  # real images per batch for a dynamic-batch export


@dataclass(frozen=True)
class VerifyData:
    """Which inputs verification (and INT8 calibration) uses."""

    data: str | None = "digits"  # real images: "digits", an image folder, or None for random inputs only
    images: int | None = None  # real images to compare (None: DEFAULT_IMAGES of the precision)
    calibration_images: int = 64  # extra, disjoint real images for static INT8 / TensorRT INT8 calibration
    seed: int = 0  # picks the images and the random batches


@dataclass(frozen=True)
class ExportResult:
    """A verified export folder."""

    path: Path  # the folder written
    meta: dict[str, Any]  # its export.json

    @property
    def verification(self) -> dict[str, Any]:
        return dict(self.meta["verification"])


@dataclass(frozen=True)
class Source:
    """The encoder being exported and how `mimzoo verify` can rebuild it."""

    encoder: Any  # the mimzoo Encoder (eval mode, CPU)
    model: str  # name `mimzoo.load` takes to rebuild it (zoo name, folder, hf-hub:...)
    init_seed: int | None = None  # torch seed of a random-init encoder
    weights_tag: str | None = None  # weight-source tag it was loaded with
    img_size: int | None = None  # img_size it was loaded with
    backbone: Any = None  # task exports: the backbone the head was trained on (encoder is then the TaskModel)
    head_dir: Path | None = None  # task exports: the head folder (mimzoo.tasks), copied into the export

    @property
    def task(self) -> str | None:
        """"classification" / "segmentation" for a task export, None for a backbone."""
        return self.encoder.spec.task if self.head_dir is not None else None


def _inputs(encoder: Any, spec: ExportSpec, images: ImageSet, seed: int) -> VerifyInputs:
    fixed = spec.batch if isinstance(spec.batch, int) else None
    sizes = (fixed, fixed) if fixed else (1, 3)  # two sizes: the batch axis really is dynamic
    inputs = make_inputs(encoder, images, random_sizes=sizes, batch_size=fixed or REAL_BATCH, seed=seed)
    if spec.min_frames is None:
        return inputs
    import numpy as np

    n, c, _, h, w = inputs.random[-1].shape  # and the T axis: a batch of the shortest clips it accepts
    short = np.random.default_rng(seed + 1).standard_normal((n, c, spec.min_frames, h, w)).astype(np.float32)
    return replace(inputs, random=(*inputs.random, short))


def check_frames(spec: ExportSpec, encoder: Any) -> None:
    """A dynamic-T export (``min_frames``) needs a video encoder and a multiple of its tubelet up to its T."""
    if spec.min_frames is None:
        return
    pp = encoder.preprocess
    if not pp.is_video:
        raise ExportError("--min-frames is for video encoders (a dynamic T axis); drop it for this image model")
    t = int(encoder.model.patch_embed.tubelet_size)
    if spec.min_frames % t or not t <= spec.min_frames <= pp.num_frames:
        ok = ", ".join(str(k) for k in range(t, pp.num_frames + 1, t))
        raise ExportError(f"--min-frames {spec.min_frames} does not fit this model (tubelet {t}, {pp.num_frames} "
                          f"frames); pass one of {ok}")


def _load_data(spec: ExportSpec, tol: Tolerances, data: VerifyData, calibrate: bool,
               video: bool = False, task: Any = None) -> tuple[ImageSet, ImageSet]:
    """(calibration images, verification images): disjoint sets from one seeded draw. The verification
    images come first, so `mimzoo verify` (which draws no calibration images) sees the same ones. A video
    encoder verifies on clips: the default "digits" becomes "moving-digits" (its test clips)."""
    n_verify = data.images if data.images is not None else DEFAULT_IMAGES[spec.precision]
    n_calib = data.calibration_images if calibrate else 0
    source = data.data
    if video and source == "digits":
        source = "moving-digits"
    if source is not None and video != str(source).startswith(VIDEO_SPECS):
        what = "clips: pass --data moving-digits or video-folder:PATH" if video else \
            "images: pass --data digits or an image folder"
        raise ExportError(f"--data {source} does not fit this model, which takes {what}")
    if task is not None:  # a task model: held-out labelled images (or scenes and masks), mimzoo.exporters.task
        from .task import load_task_images

        calib, verify_set = load_task_images(task, data.data, n_verify, n_calib, seed=data.seed)
    elif video:  # clips: verify on the eval split, calibrate on the train split (the eval split may be all used)
        verify_set = load_images(source, n_verify, seed=data.seed)
        calib = load_clips(str(source), n_calib, seed=data.seed, split="train") if n_calib else ImageSet(source, (), None)
    else:
        verify_set, calib = load_images(source, n_verify + n_calib, seed=data.seed).split(n_verify)
    if tol.needs_labels and (verify_set.labels is None or len(verify_set) < 3):
        check = "k-NN" if tol.needs_knn else ("mIoU" if tol.miou_drop is not None else "top-1")
        raise ExportError(f"the {spec.precision} gate includes a {check} check that needs labelled real images; "
                          "pass --data digits or a folder with one sub-folder per class")
    return calib, verify_set


def run_export(src: Source, out: Path, spec: ExportSpec, *, tolerances: dict[str, float] | None = None,
               data: VerifyData = VerifyData(), overwrite: bool = False, say: Say = log.info,
               cache_dir: Path | None = None) -> ExportResult:
    """Export `src.encoder` as `spec` says into `out`, verified; see :func:`mimzoo.export`."""
    with output_lock(out):  # one writer per -o; a killed one's lock is gone, its temp folders go here
        check_output(out, overwrite)
        return _export_locked(src, out, spec, tolerances, data, say, cache_dir)


def check_output(out: Path, overwrite: bool) -> None:
    """Before any work (with the output's lock held): clean up after killed runs, refuse what may not be replaced."""
    sweep_stale(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass --overwrite (overwrite=True) or choose another -o")
    check_replaceable(out, "export")


def _export_locked(src: Source, out: Path, spec: ExportSpec, tolerances: dict[str, float] | None, data: VerifyData,
                   say: Say, cache_dir: Path | None) -> ExportResult:
    tol = Tolerances.for_precision(spec.precision).for_task(src.task).updated(tolerances)
    check_frames(spec, src.encoder)
    if src.head_dir is not None and spec.min_frames is not None:
        raise ExportError("--min-frames applies to encoder exports; drop it with --head")
    if src.head_dir is not None:
        from .task import check_labels, seg_data

        data = replace(data, data=seg_data(src.encoder.spec, data.data))
        check_labels(src.encoder.spec, data.data)
    calibrate = spec.precision == "int8" and (spec.format in ("tensorrt", "openvino") or spec.int8_method != "dynamic")
    calib, verify_set = _load_data(spec, tol, data, calibrate, video=src.encoder.preprocess.is_video,
                                   task=src.encoder if src.head_dir is not None else None)
    inputs = _inputs(src.encoder, spec, verify_set, data.seed)
    say(f"running PyTorch on {inputs.batches} batches ({len(verify_set)} real images from {verify_set.name})")
    ref = collect(torch_runner(src.encoder, spec.tokens), inputs)
    calib_x = _inputs(src.encoder, spec, calib, data.seed).real if len(calib) else None
    marker: dict[str, Any] = {"format": spec.format, "precision": spec.precision}  # completed below
    with atomic_dir(out, overwrite=True, kind="export", info=marker) as tmp:
        scratch = tmp / ".fp32"
        scratch.mkdir()
        say(f"exporting ONNX (opset {spec.opset}, batch {spec.batch})")
        info = export_onnx(src.encoder, scratch / ONNX_NAME, spec)
        if info.fallback_reason:
            say(f"the dynamo exporter failed ({info.fallback_reason}); used the TorchScript exporter")
        rep, extra = _build(spec, scratch / ONNX_NAME, tmp, ref, inputs, tol, calib_x, say, cache_dir,
                            preprocess=src.encoder.preprocess.to_timm())
        shutil.rmtree(scratch)
        if src.head_dir is not None:  # the head travels with the model, for verify and publish
            from .task import copy_head

            extra["task"] = copy_head(src.head_dir, tmp, src.encoder)
        if not rep["passed"]:
            tried = len(extra.get("int8", {}).get("attempts", []))
            plans_note = f" with each of {tried} INT8 plans; the last" if tried > 1 else ""
            raise VerificationError(f"{spec.format} {spec.precision} export of {src.model} failed verification"
                                    f"{plans_note} ({'; '.join(rep['failures'])}); nothing was written to {out}", rep)
        digest = _artifact_digest(spec, tmp)  # what was verified; the report goes into its metadata next
        if spec.min_frames is not None:  # the T axis is dynamic: which clip lengths the export takes
            lo, hi, t = frame_range(src.encoder, spec)
            extra["frames"] = {"min": lo, "max": hi, "multiple": t}
        meta = _meta(src, spec, info, rep, {**extra, "artifact_sha256": digest})
        if spec.format != "openvino":  # an IR keeps only the preprocessing (rt_info, verified with it)
            embed_in_onnx(tmp / ONNX_NAME, meta)
        write_json(tmp / EXPORT_JSON, meta)
        marker.update(verified=True, artifact_sha256=digest)  # the marker, written last, says: complete and verified
    say(f"verified: {summary(rep)}")
    return ExportResult(out, meta)


def _artifact_digest(spec: ExportSpec, tmp: Path) -> str:
    if spec.format == "openvino":
        from .openvino import artifact_sha256 as ir_sha256

        return ir_sha256(tmp)
    return artifact_sha256(tmp / ONNX_NAME)


def _build(spec: ExportSpec, fp32: Path, tmp: Path, ref: Outputs, inputs: VerifyInputs, tol: Tolerances,
           calib_x: Any, say: Say, cache_dir: Path | None, preprocess: dict[str, Any] | None = None,
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Make the final model in `tmp` from the fp32 ONNX and verify it: (report, extra export.json keys)."""
    from .runtime import OnnxModel

    def evaluate(path: Path) -> dict[str, Any]:
        return report(ref, collect(OnnxModel(path).run, inputs), inputs, tol)

    if spec.format == "openvino":
        from .openvino import build_and_verify as build_ir

        return build_ir(spec, fp32, tmp, preprocess or {}, lambda run: report(ref, collect(run, inputs), inputs, tol),
                        calib_x, say)
    target = tmp / ONNX_NAME
    if spec.format == "tensorrt":
        from .pipeline_trt import build_and_verify

        for f in fp32.parent.iterdir():  # the engine's source ONNX stays in the folder
            shutil.move(str(f), str(tmp / f.name))
        return build_and_verify(spec, target, ref, inputs, tol, calib_x, say, cache_dir)
    if spec.precision == "fp32":
        for f in fp32.parent.iterdir():
            shutil.move(str(f), str(tmp / f.name))
        say("verifying with onnxruntime")
        return evaluate(target), {}
    if spec.precision == "fp16":
        to_fp16(fp32, target)
        say("verifying the fp16 model with onnxruntime")
        return evaluate(target), {}
    from .quantize import calibration_batches, plans, search

    batches = calibration_batches(calib_x, spec.batch) if calib_x is not None else []
    plan, rep, attempts = search(fp32, target, plans(spec.int8_method), evaluate, calibration=batches, say=say)
    return rep, {"int8": {**plan.to_dict(), "attempts": attempts, "calibration_images": 0 if calib_x is None else len(calib_x)}}


def _meta(src: Source, spec: ExportSpec, info: OnnxExport, rep: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    enc = src.encoder if src.backbone is None else src.backbone  # provenance: the backbone verify rebuilds
    n = spec.batch if isinstance(spec.batch, int) else "N"
    outputs = {"embedding": [n, enc.num_features]}
    if spec.tokens:
        outputs["tokens"] = [n, _num_tokens(enc), enc.token_dim]  # 2 x narrower than the embedding for token-avg
    if src.head_dir is not None:
        from .task import outputs_meta

        outputs = outputs_meta(src.encoder, n)
    prov = provenance(enc, model=src.model, init_seed=src.init_seed, weights_tag=src.weights_tag, img_size=src.img_size)
    return build_meta(fmt=spec.format, precision=spec.precision, opset=info.opset, batch=spec.batch,
                      input_shape=list(enc.preprocess.batch_shape(n)), outputs=outputs,
                      preprocess=src.encoder.preprocess.to_timm(), prov=prov,  # a seg task model's: squash
                      verification=rep, extra={"exporter": info.to_dict(), **extra})


def _num_tokens(encoder: Any) -> int:
    import torch

    with torch.inference_mode():
        return int(encoder.forward_features(torch.zeros(*encoder.preprocess.batch_shape(1))).shape[1])


def rebuild_encoder(meta: dict[str, Any]) -> Any:
    """The PyTorch encoder an export was made from, rebuilt from its provenance and checked by digest."""
    import torch

    from ..api.load import load

    prov = meta["provenance"]
    model, source, size = prov.get("model"), prov.get("weights_source"), prov.get("img_size")
    if not model:
        raise CorruptExportError("export.json names no provenance.model; pass the model with --model")
    if source == "random init":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(prov.get("init_seed") or 0))
            encoder = load(model, pretrained=False, img_size=size)
    elif prov.get("weights_tag"):
        encoder = load(model, weights=prov["weights_tag"], img_size=size)
    elif source and source != model and Path(source).is_file():
        encoder = load(model, weights=source, img_size=size)
    else:
        encoder = load(model, img_size=size)
    expected = prov.get("state_sha256")
    if not expected:
        raise CorruptExportError("export.json records no digest of the exported weights (provenance.state_sha256); "
                                 "pass the exported model with --model, or export again")
    if state_sha256(encoder) != expected:
        raise CorruptExportError(f"'{model}' now loads other weights than the ones exported (weights digest differs); "
                                 "pass the exported model with --model")
    return encoder


def _min_frames(meta: dict[str, Any], folder: Path) -> int | None:
    """The shortest clip a dynamic-T export says it takes (checked against the model before use)."""
    frames = meta.get("frames")
    if frames is None:
        return None
    try:
        return int(frames["min"])
    except (TypeError, KeyError, ValueError):
        raise CorruptExportError(f"{folder}/export.json has an unreadable 'frames' entry; export again") from None


def verify_folder(folder: Path, *, encoder: Any = None, tolerances: dict[str, float] | None = None,
                  data: VerifyData = VerifyData(), say: Say = log.info) -> dict[str, Any]:
    """Verify an existing export folder against PyTorch; return the report (``passed`` says the verdict)."""
    info = read_export_folder(folder, marker_required=False)  # re-measured below: the digest shows it complete
    meta = info.meta
    spec = ExportSpec(format=meta["format"], precision=meta["precision"], batch=meta["batch"],
                      opset=max(int(meta.get("opset") or 17), 17), tokens="tokens" in meta["outputs"],
                      min_frames=_min_frames(meta, folder))
    task = ((meta.get("task") or {}).get("head") or {}).get("task") if "task" in meta else None
    # mimzoo's own gate for the precision (and the caller's explicit overrides), never the folder's
    tol = Tolerances.for_precision(spec.precision).for_task(task).updated(tolerances)
    if encoder is None:
        say(f"rebuilding {meta['provenance'].get('model')} from the export's provenance")
        encoder = rebuild_encoder(meta)
    if "task" in meta:  # the task model: the export's own head/ on that backbone
        from .task import check_labels, load_exported_task, seg_data

        encoder = load_exported_task(info.path, meta, encoder)
        data = replace(data, data=seg_data(encoder.spec, data.data))
        check_labels(encoder.spec, data.data)
    _check_shapes(meta, encoder, folder)
    try:
        check_frames(spec, encoder)
    except ExportError as e:
        raise CorruptExportError(f"{folder}/export.json 'frames' does not fit the model ({e}); export again") from None
    _, verify_set = _load_data(spec, tol, data, calibrate=False, video=encoder.preprocess.is_video,
                               task=encoder if "task" in meta else None)
    inputs = _inputs(encoder, spec, verify_set, data.seed)
    say(f"running PyTorch and the {spec.format} model on {inputs.batches} batches")
    ref = collect(torch_runner(encoder, spec.tokens), inputs)
    got = collect(_runner(info.path, spec), inputs)
    try:
        rep = report(ref, got, inputs, tol)
    except ValueError as e:  # an output missing or of another shape
        raise CorruptExportError(f"{folder} does not match the model: {e}; export again") from e
    recorded = recorded_failures(meta, tol)
    rep["failures"] = [*rep["failures"], *recorded]
    rep["passed"] = not rep["failures"]
    return rep


def recorded_failures(meta: dict[str, Any], tol: Tolerances) -> list[str]:
    """The figures export.json records, checked against `tol` (a report claiming more than it measured fails)."""
    stored = meta.get("verification") or {}
    if stored.get("passed") is not True:
        return ["export.json records a failed verification"]
    figures = {k: v for k, v in stored.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return [f"export.json records {f}" for f in tol.failures(figures) if "not measured" not in f]


def _runner(folder: Path, spec: ExportSpec) -> Callable[[Any], Any]:
    if spec.format == "tensorrt":
        from .tensorrt import ENGINE_NAME
        from .trt_runner import EngineRunner

        return EngineRunner(folder / ENGINE_NAME, onnx_path=folder / ONNX_NAME).run
    from .runtime import ExportedOpenVinoModel, ExportRuntimeError, OnnxModel

    try:
        if spec.format == "openvino":  # as a deployer runs it: the inference precision export.json records
            return ExportedOpenVinoModel(folder).run
        return OnnxModel(folder / ONNX_NAME).run
    except ExportRuntimeError as e:
        raise CorruptExportError(str(e)) from e


def _check_shapes(meta: dict[str, Any], encoder: Any, folder: Path) -> None:
    shape = list(meta["inputs"].get("pixel_values") or [])
    want = [int(v) for v in encoder.preprocess.batch_shape(1)[1:]]  # [C, H, W], or [C, T, H, W] for video
    if [int(v) for v in shape[1:]] != want:
        raise CorruptExportError(f"{folder} takes input {shape[1:]}, the model {want}: it is an export of another "
                                 "model; pass the right one with --model or export again")
    if "task" in meta:
        from .task import outputs_meta

        want_out = outputs_meta(encoder, "N")
        if {k: v[1:] for k, v in meta["outputs"].items()} != {k: v[1:] for k, v in want_out.items()}:
            raise CorruptExportError(f"{folder} gives {meta['outputs']}, its head {want_out}: export again")
        return
    names = output_names("tokens" in meta["outputs"])
    dims = meta["outputs"]["embedding"]
    if list(meta["outputs"]) != names or int(dims[-1]) != encoder.num_features:
        raise CorruptExportError(f"{folder} gives {meta['outputs']}, the model [N, {encoder.num_features}] embeddings: "
                                 "it is an export of another model; export again")
