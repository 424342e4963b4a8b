"""What to export and how closely it must match PyTorch: plain data, no heavy imports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import MimzooError

FORMATS = ("onnx", "tensorrt", "openvino")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# precisions each format can be built in (bf16: OpenVINO's INFERENCE_PRECISION_HINT on CPUs with bf16 units)
FORMAT_PRECISIONS = {"onnx": ("fp32", "fp16", "int8"), "tensorrt": ("fp32", "fp16", "int8"),
                     "openvino": ("fp32", "bf16", "int8")}
INT8_METHODS = ("auto", "dynamic", "static")
MIN_OPSET = 17  # LayerNorm is one LayerNormalization node from opset 17 on (TensorRT FP16 needs that)
DEFAULT_OPSET = 18  # the dynamo exporter's own opset: no version conversion step
TASK_FP32_MAX_REL = 1e-3  # fp32 task exports: |export - torch| / the image's largest |logit|
TASK_FP32_COSINE_MIN = 0.99999  # fp32 task exports: per-image cosine of the logits
MAX_OPSET = 23  # 23 adds a fused Attention op; onnxruntime 1.32 runs it, older runtimes may not


class ExportError(MimzooError):
    """An export cannot be made as asked (bad option, unsupported model, missing backend)."""


class VerificationError(ExportError):
    """The exported model does not match PyTorch within the tolerances; nothing was written."""

    def __init__(self, message: str, report: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.report = dict(report or {})


@dataclass(frozen=True)
class Tolerances:
    """Verification limits; None leaves a figure reported but not gated."""

    max_abs: float | None = None  # largest |export - torch| over every embedding value
    max_rel: float | None = None  # largest |export - torch| / max(|torch|) per image
    cosine_min: float | None = None  # lowest per-image cosine between export and torch embeddings
    knn_top1_agreement: float | None = None  # lowest share (0..1) of k-NN predictions both models agree on
    knn_top1_drop: float | None = None  # most k-NN top-1 points the export may lose against torch
    top1_drop: float | None = None  # task exports (classification): most top-1 points lost on labelled images
    miou_drop: float | None = None  # task exports (segmentation): most mIoU points lost on labelled masks

    @classmethod
    def for_precision(cls, precision: str) -> Tolerances:
        """The default gate of a precision: fp32 abs <= 1e-4; fp16 and bf16 cosine >= 0.999; int8 cosine >= 0.99
        and at most 0.5 k-NN top-1 points lost.

        >>> Tolerances.for_precision("int8").knn_top1_drop
        0.5
        """
        defaults = {
            "fp32": cls(max_abs=1e-4),
            "fp16": cls(cosine_min=0.999),
            "bf16": cls(cosine_min=0.999),
            "int8": cls(cosine_min=0.99, knn_top1_drop=0.5),
        }
        if precision not in defaults:
            raise ExportError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
        return defaults[precision]

    def updated(self, values: Mapping[str, Any] | None) -> Tolerances:
        """These tolerances with some replaced (e.g. from a release recipe); unknown keys are errors."""
        if not values:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ExportError(f"unknown tolerance {', '.join(unknown)}; use {', '.join(sorted(known))}")
        clean = {k: None if v is None else float(v) for k, v in values.items()}
        for k, v in clean.items():
            if v is not None and (math.isnan(v) or v < 0):
                raise ExportError(f"tolerance {k} must be a number >= 0, got {values[k]!r}")
        return replace(self, **clean)

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def needs_knn(self) -> bool:
        return self.knn_top1_agreement is not None or self.knn_top1_drop is not None

    @property
    def needs_labels(self) -> bool:
        return self.needs_knn or self.top1_drop is not None or self.miou_drop is not None

    def for_task(self, task: str | None) -> Tolerances:
        """The gate of a task export (mimzoo.exporters.task): the k-NN drop becomes the top-1 drop
        (classification) or the mIoU drop (segmentation); None: these tolerances unchanged."""
        if task is None:
            return self
        drop = self.knn_top1_drop
        out = replace(self, knn_top1_agreement=None, knn_top1_drop=None,
                      top1_drop=drop if task == "classification" else None,
                      miou_drop=drop if task == "segmentation" else None)
        if self.max_abs is not None:  # fp32: a head's logits have its own scale (seen: 30-170 on a BN probe),
            # so the absolute embedding limit becomes one relative to each image's largest logit
            out = replace(out, max_abs=None, max_rel=self.max_rel if self.max_rel is not None else TASK_FP32_MAX_REL,
                          cosine_min=self.cosine_min if self.cosine_min is not None else TASK_FP32_COSINE_MIN)
        return out

    def failures(self, figures: Mapping[str, Any]) -> list[str]:
        """Each limit the measured figures break, as 'name value > limit' (empty: passed)."""
        out = []
        checks = [("max_abs", "<="), ("max_rel", "<="), ("cosine_min", ">="), ("knn_top1_agreement", ">="),
                  ("knn_top1_drop", "<="), ("top1_drop", "<="), ("miou_drop", "<=")]
        for key, op in checks:
            limit = getattr(self, key)
            if limit is None:
                continue
            value = figures.get(key)
            if value is None:
                out.append(f"{key} not measured (needs labelled images: --data)")
            elif not (value <= limit if op == "<=" else value >= limit):  # NaN fails both ways
                out.append(f"{key} {value:.6g} {'>' if op == '<=' else '<'} {limit:g}")
        return out


@dataclass(frozen=True)
class ExportSpec:
    """One export to build: format, numeric precision, shapes and exporter settings."""

    format: str = "onnx"  # "onnx" (runs anywhere onnxruntime does), "tensorrt" (an engine for this GPU) or "openvino" (IR)
    precision: str = "fp32"  # "fp32", "fp16", "bf16" (OpenVINO only) or "int8"
    batch: int | str = "dynamic"  # "dynamic" (any batch) or a fixed batch size baked into the graph
    img_size: int | None = None  # input side other than the model's own (position embeddings resampled)
    opset: int = DEFAULT_OPSET  # ONNX opset, MIN_OPSET..MAX_OPSET
    tokens: bool = False  # also output the [N, L, D] tokens as "tokens"
    max_batch: int = 64  # largest batch a dynamic export is checked and profiled for (TensorRT max shape)
    opt_batch: int = 8  # batch TensorRT tunes its kernels for (profile "opt" shape)
    int8_method: str = "auto"  # onnxruntime INT8: "dynamic", "static" (QDQ calibrated) or "auto" (both)
    min_frames: int | None = None  # video: clips of min_frames..T frames are accepted (T axis dynamic); None: T fixed

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"unknown export format '{self.format}'; use one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ExportError(f"unknown precision '{self.precision}'; use one of {', '.join(PRECISIONS)}")
        if self.precision not in FORMAT_PRECISIONS[self.format]:
            fits = [f for f, ps in FORMAT_PRECISIONS.items() if self.precision in ps]
            raise ExportError(f"{self.format} exports have no {self.precision}; use --precision "
                              f"{'/'.join(FORMAT_PRECISIONS[self.format])}, or --format {' or '.join(fits)}")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ExportError(f"opset {self.opset} is not supported; use {MIN_OPSET}..{MAX_OPSET} "
                              f"({MIN_OPSET}+ keeps LayerNorm one node)")
        if self.int8_method not in INT8_METHODS:
            raise ExportError(f"unknown INT8 method '{self.int8_method}'; use one of {', '.join(INT8_METHODS)}")
        if self.int8_method != "auto" and (self.format, self.precision) != ("onnx", "int8"):
            how = {"openvino": "OpenVINO INT8 is NNCF's calibrated quantization",
                   "tensorrt": "TensorRT INT8 uses its own calibrator"}.get(self.format, "it only picks onnxruntime's")
            raise ExportError(f"--int8-method applies to ONNX INT8 exports only ({how}); drop --int8-method "
                              f"{self.int8_method} or use --format onnx --int8")
        object.__setattr__(self, "batch", parse_batch(self.batch))
        if self.min_frames is not None and self.min_frames < 1:
            raise ExportError(f"--min-frames {self.min_frames} must be at least 1 (a multiple of the tubelet size)")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ExportError(f"opt_batch {self.opt_batch} must lie in 1..max_batch ({self.max_batch})")

    @property
    def dynamic(self) -> bool:
        return self.batch == "dynamic"

    def batch_range(self) -> tuple[int, int, int]:
        """(min, opt, max) batch the model is built and checked for."""
        if isinstance(self.batch, int):
            return self.batch, self.batch, self.batch
        return 1, self.opt_batch, self.max_batch


def parse_batch(value: int | str) -> int | str:
    """ "dynamic" or a positive batch size, from the CLI's text or Python.

    >>> parse_batch("8"), parse_batch("dynamic")
    (8, 'dynamic')
    """
    if isinstance(value, str) and value.strip().lower() == "dynamic":
        return "dynamic"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (isinstance(value, float) and value != n):
        raise ExportError(f"batch must be 'dynamic' or a positive integer, got {value!r}")
    return n
