"""OpenVINO IR exports (``model.xml`` + ``model.bin``) made from mimzoo's verified ONNX, for CPUs.

Three precisions, each verified against PyTorch with mimzoo's gate for it:

- ``fp32``: the ONNX converted as it is (``openvino.convert_model``), weights kept in float32 and run
  with ``INFERENCE_PRECISION_HINT=f32`` (OpenVINO would otherwise pick bf16 on CPUs that have it);
- ``bf16``: the same IR, run with ``INFERENCE_PRECISION_HINT=bf16`` (the CPU's bf16 / AMX units);
- ``int8``: NNCF post-training quantization (``nncf.quantize``, transformer preset) calibrated on real
  images; when the gate fails, the next plan turns SmoothQuant off (on random-init ViT-B it moved the
  activation scales so far towards the calibration images that inputs unlike them lost cosine 0.93), then
  keeps the MLP output projections (the MatMuls fed by GELU), then also the first and last weight layers,
  in float.

The hint a folder needs is recorded in ``export.json`` (``openvino.inference_precision``), and
:mod:`.runtime` applies it, so what a deployer runs is what was verified. The folder's digest
(``artifact_sha256``) covers both IR files; `verify` refuses a folder changed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from .metadata import file_sha256
from .spec import ExportError

log = logging.getLogger(__name__)

XML_NAME = "model.xml"
BIN_NAME = "model.bin"
INSTALL_HINT = "pip install 'mimzoo[openvino]'"
# export precision -> the compiled model's INFERENCE_PRECISION_HINT (int8: what stays in float runs in f32)
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
CALIBRATION_BATCH = 8  # images per NNCF calibration item


def missing(precision: str = "fp32") -> str | None:
    """Why OpenVINO exports of `precision` cannot be made here (None: they can). Imports to find out: a
    package that is present but broken counts as missing."""
    for module, what in (("openvino", "OpenVINO"), *((("nncf", "NNCF (for INT8)"),) if precision == "int8" else ())):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{what} is not installed"
    return None


def require_openvino(precision: str = "fp32") -> None:
    """Fail in one line, before any work, when openvino (or nncf for INT8) is missing."""
    why = missing(precision)
    if why:
        raise ExportError(f"OpenVINO {precision} exports need it, but {why}; {INSTALL_HINT}")


@dataclass(frozen=True)
class Int8Plan:
    """One NNCF quantization setting tried in turn until the INT8 gate passes."""

    smooth_quant: bool = True  # NNCF's SmoothQuant (moves activation outliers into the weights)
    keep_float: tuple[str, ...] = ()  # "mlp_out" (MatMuls fed by GELU), "first", "last": weight layers left in float

    @property
    def name(self) -> str:
        sq = "SmoothQuant" if self.smooth_quant else "no SmoothQuant"
        return f"nncf transformer preset, {sq} (float: {'+'.join(self.keep_float) or 'nothing'})"

    def to_dict(self) -> dict[str, Any]:
        return {"method": "nncf", "preset": "transformer", "smooth_quant": self.smooth_quant,
                "keep_float": list(self.keep_float)}


PLANS = (Int8Plan(), Int8Plan(smooth_quant=False), Int8Plan(False, ("mlp_out",)),
         Int8Plan(False, ("mlp_out", "first", "last")))


def convert(onnx_file: Path, xml_file: Path, preprocess: dict[str, Any]) -> None:
    """The OpenVINO IR of an ONNX model, weights kept in float32; the preprocessing rides in its rt_info."""
    ov = require("openvino")
    model = ov.convert_model(str(onnx_file))
    model.set_rt_info(json.dumps(preprocess), ["mimzoo", "preprocess"])
    ov.save_model(model, str(xml_file), compress_to_fp16=False)  # the default would halve the weights


def weight_layers(model: Any, *, fed_by: str | None = None) -> list[str]:
    """Names of the MatMul / Convolution ops whose second input is a constant (the weight layers), in order;
    with `fed_by`, only those whose first input comes from an op of that type (e.g. "Gelu": MLP outputs)."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("MatMul", "Convolution") or op.get_input_size() < 2:
            continue
        src = op.input_value(1).get_node()
        while src.get_type_name() in ("Convert", "Reshape", "Transpose") and src.get_input_size():
            src = src.input_value(0).get_node()  # a weight may reach the product through a conversion
        if src.get_type_name() == "Constant" and (fed_by is None or op.input_value(0).get_node().get_type_name() == fed_by):
            names.append(op.get_friendly_name())
    return names


def quantize(xml_in: Path, xml_out: Path, calibration: list[np.ndarray], plan: Int8Plan) -> int:
    """NNCF post-training INT8 of the IR at `xml_in` into `xml_out`; returns the calibration images used."""
    ov = require("openvino")
    nncf = require("nncf")
    model = ov.Core().read_model(str(xml_in))
    layers = weight_layers(model)
    ignored = [layers[0]] * ("first" in plan.keep_float) + [layers[-1]] * ("last" in plan.keep_float) if layers else []
    if "mlp_out" in plan.keep_float:
        ignored += weight_layers(model, fed_by="Gelu")
    n_images = sum(len(b) for b in calibration)
    adv = require("nncf.quantization.advanced_parameters")
    advanced = adv.AdvancedQuantizationParameters(
        smooth_quant_alphas=adv.AdvancedSmoothQuantParameters(matmul=-1)) if not plan.smooth_quant else None
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars must not mix into stdout (--json)
        quantized = nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(calibration), advanced_parameters=advanced,
                                  ignored_scope=nncf.IgnoredScope(names=sorted(set(ignored)), validate=False))
    ov.save_model(quantized, str(xml_out), compress_to_fp16=False)
    return n_images


def calibration_batches(images: np.ndarray | None, batch: int | str) -> list[np.ndarray]:
    """Calibration inputs the IR accepts: batches of CALIBRATION_BATCH (a fixed batch: exactly that size)."""
    if images is None or not len(images):
        return []
    from .quantize import calibration_batches as batches

    return batches(images, batch, CALIBRATION_BATCH)


def artifact_sha256(folder: Path) -> str:
    """sha256 over the IR's two files: what was verified."""
    h = hashlib.sha256()
    for name in (XML_NAME, BIN_NAME):
        h.update(f"{name}:{file_sha256(folder / name)}\n".encode())
    return h.hexdigest()


def build_and_verify(spec: Any, fp32_onnx: Path, tmp: Path, preprocess: dict[str, Any],
                     evaluate: Callable[[Callable[[np.ndarray], dict[str, np.ndarray]]], dict[str, Any]],
                     calib_x: np.ndarray | None, say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Convert the fp32 ONNX to IR in `tmp` (INT8: quantize it) and verify it: (report, extra export.json keys).

    `evaluate` takes a runner (numpy batch -> outputs) and returns mimzoo's verification report.
    """
    from .runtime import OpenVinoModel

    ov = require("openvino")
    hint = INFERENCE_PRECISION[spec.precision]
    extra: dict[str, Any] = {"openvino": {"inference_precision": hint, "version": ov.get_version().split("-")[0]}}
    say(f"converting the ONNX to OpenVINO IR (openvino {extra['openvino']['version']})")
    if spec.precision != "int8":
        convert(fp32_onnx, tmp / XML_NAME, preprocess)
        say(f"verifying with OpenVINO (INFERENCE_PRECISION_HINT={hint})")
        model = OpenVinoModel(tmp / XML_NAME, inference_precision=hint)
        ran = model.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        extra["openvino"]["verified_on"] = {"inference_precision": ran, "cpu": _cpu_name()}
        if ran != hint:  # e.g. bf16 asked on a CPU without bf16 units: OpenVINO computes in f32 instead
            say(f"note: this CPU ran the {hint} hint as {ran}; the verification figures are {ran}'s")
        return evaluate(model.run), extra
    batches = calibration_batches(calib_x, spec.batch)
    if not batches:
        raise ExportError("OpenVINO INT8 is calibrated on real images; pass --data digits or an image folder, "
                          "and --calibration-images N (> 0)")
    float_ir = tmp / ".ov-fp32" / XML_NAME
    float_ir.parent.mkdir()
    convert(fp32_onnx, float_ir, preprocess)
    attempts: list[dict[str, Any]] = []
    rep: dict[str, Any] = {}
    try:
        for i, plan in enumerate(PLANS, 1):
            say(f"INT8 try {i}/{len(PLANS)}: {plan.name}, calibrated on {sum(len(b) for b in batches)} images")
            n_calib = quantize(float_ir, tmp / XML_NAME, batches, plan)
            rep = evaluate(OpenVinoModel(tmp / XML_NAME, inference_precision=hint).run)
            attempts.append({**plan.to_dict(), "passed": rep["passed"], "cosine_min": rep["cosine_min"],
                             "knn_top1_drop": rep.get("knn_top1_drop")})
            if rep["passed"]:
                extra["int8"] = {**plan.to_dict(), "attempts": attempts, "calibration_images": n_calib}
                return rep, extra
            say(f"  failed: {', '.join(rep['failures'])}")
    finally:
        shutil.rmtree(float_ir.parent, ignore_errors=True)
    extra["int8"] = {"attempts": attempts}
    return {**rep, "passed": False}, extra


def _cpu_name() -> str:
    import openvino as ov

    try:
        return str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # a plugin without the property: the name is information only
        return "?"


def check_folder(folder: Path, meta: dict[str, Any], *, marker_required: bool = True) -> tuple[str, ...]:
    """Check an OpenVINO export folder is whole and unchanged since verification; returns its model files.

    Raises CorruptExportError (one line naming the fix) otherwise. Without `marker_required` (verify, which
    re-measures against PyTorch) a folder with no marker at all, as a published Hub repo holds it, passes
    when both IR files match export.json's artifact_sha256 (as metadata.check_artifact does for ONNX).
    """
    from .._outputs import MARKER, read_marker
    from .metadata import CorruptExportError

    for name in (XML_NAME, BIN_NAME):
        if not (folder / name).is_file():
            raise CorruptExportError(f"{folder}/{name} is missing; copy the whole export folder or export again")
    recorded = meta.get("artifact_sha256")
    if not marker_required and read_marker(folder) is None:
        if not recorded or artifact_sha256(folder) != recorded:
            raise CorruptExportError(f"{folder}/{XML_NAME} or {BIN_NAME} does not match the artifact_sha256 in "
                                     "export.json: incomplete or changed; download or export it again")
        return _checked_hint(folder, meta)
    marker = read_marker(folder) or {}
    if marker.get("kind") != "export" or marker.get("verified") is not True:
        raise CorruptExportError(f"{folder} is not a complete, verified mimzoo export (no {MARKER} saying so: an "
                                 "interrupted export); export it again")
    if not recorded or marker.get("artifact_sha256") != recorded:
        raise CorruptExportError(f"{folder}/export.json records no IR digest matching its marker; export again")
    if artifact_sha256(folder) != recorded:
        raise CorruptExportError(f"{folder}/{XML_NAME} or {BIN_NAME} differs from the model verified at export "
                                 "(digest mismatch): it was changed afterwards; export again")
    return _checked_hint(folder, meta)


def _checked_hint(folder: Path, meta: dict[str, Any]) -> tuple[str, ...]:
    from .metadata import CorruptExportError

    hint = (meta.get("openvino") or {}).get("inference_precision")
    if hint != INFERENCE_PRECISION.get(str(meta.get("precision"))):
        raise CorruptExportError(f"{folder}/export.json records inference precision {hint!r} for a "
                                 f"{meta.get('precision')} export; export again")
    return XML_NAME, BIN_NAME
