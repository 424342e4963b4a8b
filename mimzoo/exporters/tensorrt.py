"""TensorRT engines from the ONNX export: the plain-Python parts, which need neither TensorRT nor a GPU.

Optimisation profiles, precision flags, cache keys, the engine metadata and the compatibility
rule, calibration batching, the ``trtexec`` equivalent and the supported-version rule live here and
are unit-tested everywhere. The calls into ``tensorrt`` live in ``trt_build`` (builder) and
``trt_runner`` (runtime), which use these types:

    builder -> network (ONNX parser) -> config (memory pool, precision flags, TF32 off for fp32,
    LayerNorm/softmax kept FP32, profile, timing cache, INT8 entropy calibrator) -> serialized engine

Beside every ``model.engine`` lies ``engine.json``: TensorRT version, GPU and compute capability,
precision, profile and the source ONNX's sha256. An engine only runs on the GPU architecture and
TensorRT version that built it, so :func:`check_compatible` refuses any other (see trt_runner).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .spec import ExportError, ExportSpec

log = logging.getLogger(__name__)

ENGINE_NAME = "model.engine"
ENGINE_JSON = "engine.json"
INPUT = "pixel_values"
# TensorRT layer types kept in FP32 inside FP16/INT8 engines: ViT LayerNorm and softmax overflow in FP16
FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX")
INSTALL_HINT = "pip install 'mimzoo[gpu]'"
# The TensorRT majors whose Python API mimzoo drives (10.x: BuilderFlag.FP16/INT8, IInt8EntropyCalibrator2,
# per-layer precision). TensorRT 11 removed those (strongly typed networks only).
SUPPORTED_TRT_MAJORS = (10,)
# What the `gpu` extra pins: TensorRT 10 for torch's CUDA major (torch 2.14 wheels are CUDA 13 builds; the
# first cu13 TensorRT wheel is 10.13.2).
SUPPORTED_TRT_RANGE = "tensorrt-cu13>=10.13.2,<11"


def version_problem(version: str) -> str | None:
    """Why this TensorRT version cannot be driven by mimzoo (None when it can).

    >>> version_problem("10.13.3.9") is None, version_problem("11.0.0")[:26]
    (True, 'TensorRT 11.0.0 is not sup')
    """
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        return f"TensorRT reports an unreadable version {version!r}; install {SUPPORTED_TRT_RANGE}"
    if major not in SUPPORTED_TRT_MAJORS:
        return (f"TensorRT {version} is not supported (mimzoo drives TensorRT "
                f"{', '.join(f'{m}.x' for m in SUPPORTED_TRT_MAJORS)}); pip install '{SUPPORTED_TRT_RANGE}'")
    return None


class TensorRTUnavailableError(ExportError):
    """TensorRT or a CUDA GPU is missing."""


class EngineMismatchError(ExportError):
    """An engine was built for another GPU, TensorRT version or ONNX model."""


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile for the input: the shapes it accepts and tunes for."""

    min: tuple[int, ...]  # smallest input shape
    opt: tuple[int, ...]  # shape the kernels are tuned for
    max: tuple[int, ...]  # largest input shape

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def trtexec_args(self, name: str = INPUT) -> list[str]:
        dims = {k: "x".join(str(d) for d in v) for k, v in (("min", self.min), ("opt", self.opt), ("max", self.max))}
        return [f"--minShapes={name}:{dims['min']}", f"--optShapes={name}:{dims['opt']}", f"--maxShapes={name}:{dims['max']}"]


def profile_for(spec: ExportSpec, input_size: Sequence[int]) -> Profile:
    """The profile of an export: batch (1, opt_batch, max_batch) when dynamic, (N, N, N) when fixed; the
    other dimensions are the input's, ``(C, H, W)`` or, for a video encoder, ``(C, T, H, W)``.

    >>> profile_for(ExportSpec(batch="dynamic", opt_batch=8, max_batch=32), (3, 224, 224)).opt
    (8, 3, 224, 224)
    >>> profile_for(ExportSpec(batch="dynamic", opt_batch=8, max_batch=32), (3, 16, 224, 224)).max
    (32, 3, 16, 224, 224)

    A video export with ``min_frames`` covers T too: from ``min_frames`` (min shape) to the model's T
    (opt and max shapes, where the kernels are tuned).

    >>> profile_for(ExportSpec(min_frames=8), (3, 16, 224, 224)).min
    (1, 3, 8, 224, 224)
    """
    lo, opt, hi = spec.batch_range()
    dims = tuple(int(v) for v in input_size)
    short = dims
    if spec.min_frames is not None and len(dims) == 4:  # (C, T, H, W)
        short = (dims[0], int(spec.min_frames), *dims[2:])
    return Profile((lo, *short), (opt, *dims), (hi, *dims))


def precision_flags(precision: str) -> tuple[str, ...]:
    """Names of the ``tensorrt.BuilderFlag`` members a precision sets.

    FP16 and INT8 engines obey per-layer precision constraints (so the FP32 layers stay FP32); INT8
    engines also allow FP16 for the layers TensorRT cannot run in INT8.

    >>> precision_flags("int8")
    ('INT8', 'FP16', 'OBEY_PRECISION_CONSTRAINTS')
    """
    flags = {"fp32": (), "fp16": ("FP16", "OBEY_PRECISION_CONSTRAINTS"),
             "int8": ("INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS")}
    if precision not in flags:
        raise ExportError(f"unknown precision '{precision}' for TensorRT; use fp32, fp16 or int8")
    return flags[precision]


def fp32_layer_types(precision: str) -> tuple[str, ...]:
    """``tensorrt.LayerType`` names pinned to FP32 in an engine of this precision."""
    return () if precision == "fp32" else FP32_LAYER_TYPES


def onnx_sha256(onnx_path: Path) -> str:
    """sha256 of an ONNX model's graph and weights, ignoring what mimzoo writes around them.

    The export report is embedded after the engine is built (metadata_props, producer_name and
    producer_version: see metadata.embed_in_onnx) and rewritten again when an export is published,
    so the engine's source hash must not depend on any of metadata.ONNX_FIELDS_IGNORED. It is the
    same digest as the export's ``artifact_sha256``.
    """
    from .metadata import artifact_sha256

    return artifact_sha256(onnx_path)


def engine_cache_key(*, onnx_sha: str, precision: str, profile: Profile, trt_version: str, compute_capability: str,
                     calibration: str | None = None) -> str:
    """Key naming one engine: it changes when anything the engine depends on changes.

    >>> len(engine_cache_key(onnx_sha="0" * 64, precision="fp16", profile=Profile((1,), (1,), (1,)),
    ...                      trt_version="10.9", compute_capability="9.0"))
    16
    """
    parts = {"onnx": onnx_sha, "precision": precision, "profile": profile.to_dict(), "trt": trt_version,
             "sm": compute_capability, "calibration": calibration}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def timing_cache_path(cache_dir: Path, trt_version: str, compute_capability: str) -> Path:
    """Timing-cache file for one TensorRT version and GPU architecture (timings do not transfer)."""
    return Path(cache_dir) / f"timing-trt{trt_version}-sm{compute_capability.replace('.', '')}.cache"


def calibration_cache_path(cache_dir: Path, *, onnx_sha: str, calibration: str) -> Path:
    """INT8 calibration table for one model's weights (its ONNX sha) and one set of images.

    The cache folder is shared by every build: keyed by the images alone, a second model of the same
    architecture would reuse the first one's scales.

    >>> calibration_cache_path(Path("c"), onnx_sha="a" * 64, calibration="b" * 16).name
    'calibration-aaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb.cache'
    """
    return Path(cache_dir) / f"calibration-{onnx_sha[:16]}-{calibration}.cache"


def engine_metadata(*, trt_version: str, compute_capability: str, gpu: str, precision: str, onnx_sha: str,
                    profile: Profile, outputs: Sequence[str], cache_key: str) -> dict[str, Any]:
    """engine.json: what the engine was built from, for and with."""
    return {"tensorrt_version": trt_version, "compute_capability": compute_capability, "gpu": gpu,
            "precision": precision, "source_onnx_sha256": onnx_sha, "profile": profile.to_dict(),
            "input": INPUT, "outputs": list(outputs), "fp32_layer_types": list(fp32_layer_types(precision)),
            "cache_key": cache_key, "mimzoo_version": __version__,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def check_compatible(meta: dict[str, Any], *, trt_version: str, compute_capability: str,
                     onnx_sha: str | None = None) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture (or another ONNX).

    >>> check_compatible({"tensorrt_version": "10.9.0", "compute_capability": "9.0"},
    ...                  trt_version="10.9.0", compute_capability="9.0")  # same GPU and version: accepted
    """
    built_trt, built_sm = meta.get("tensorrt_version"), meta.get("compute_capability")
    if built_trt is None or built_sm is None:
        raise EngineMismatchError("engine.json does not say which TensorRT and GPU built the engine; rebuild it with "
                                  "`mimzoo export MODEL --trt`")
    if str(built_trt) != str(trt_version):
        raise EngineMismatchError(f"this engine was built with TensorRT {built_trt}, this machine has {trt_version}; "
                                  "rebuild it here with `mimzoo export MODEL --trt`")
    if str(built_sm) != str(compute_capability):
        raise EngineMismatchError(f"this engine was built for compute capability {built_sm} ({meta.get('gpu', '?')}), "
                                  f"this GPU is {compute_capability}; rebuild it here with `mimzoo export MODEL --trt`")
    if onnx_sha is not None and meta.get("source_onnx_sha256") != onnx_sha:
        raise EngineMismatchError("the engine was built from another model.onnx than the one beside it; "
                                  "rebuild it with `mimzoo export MODEL --trt`")


@dataclass(frozen=True)
class CalibrationBatches:
    """Real images cut into the fixed-size batches an INT8 calibrator hands to TensorRT."""

    images: np.ndarray  # [N, C, H, W] float32, preprocessed like the model's inputs
    batch_size: int  # images per batch (TensorRT asks get_batch_size() once)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or len(self.images) < self.batch_size:
            raise ExportError(f"INT8 calibration needs at least one batch of {self.batch_size} images, got "
                              f"{len(self.images)}; pass more with --calibration-images")

    def __len__(self) -> int:
        return len(self.images) // self.batch_size  # a partial last batch would skew the histograms: dropped

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield np.ascontiguousarray(self.images[i * self.batch_size:(i + 1) * self.batch_size], dtype=np.float32)

    def fingerprint(self) -> str:
        """Digest of the calibration data: part of the calibration-cache and engine keys."""
        h = hashlib.sha256(f"{self.images.shape}:{self.batch_size}".encode())
        h.update(np.ascontiguousarray(self.images[: len(self) * self.batch_size], dtype=np.float32).tobytes())
        return h.hexdigest()[:16]


def trtexec_command(model: str, spec: ExportSpec, input_size: Sequence[int]) -> str:
    """The `mimzoo export` + `trtexec` commands that build the same engine without TensorRT's Python API.

    >>> trtexec_command("mae-vit-b", ExportSpec(format="tensorrt", precision="fp16"), (3, 224, 224))[:45]
    'mimzoo export mae-vit-b -o mae-vit-b-onnx && '
    """
    folder = f"{Path(model).name or 'model'}-onnx"
    prof = profile_for(spec, input_size)
    batch = "" if spec.dynamic else f" --batch {spec.batch}"
    flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[spec.precision]
    args = [f"--onnx={folder}/model.onnx", f"--saveEngine={folder}/model.engine", *flags, *prof.trtexec_args(),
            f"--timingCacheFile={folder}/timing.cache"]
    return f"mimzoo export {model} -o {folder}{batch} && trtexec {' '.join(args)}"


def runs_on_host(trt: Any) -> bool:
    """True only for mimzoo's CPU test double of ``tensorrt`` (tests/trt_double), whose "device" pointers are
    host memory; the real module has no such attribute, so on a GPU every path below is the CUDA one."""
    return getattr(trt, "HOST_MEMORY_DOUBLE", False) is True


def unavailable_reason() -> str | None:
    """Why TensorRT engines cannot be built or run here (None when they can)."""
    from .._deps import is_available

    if not is_available("tensorrt"):
        return "tensorrt is not installed"
    try:
        import tensorrt as trt
    except Exception as e:  # the PyPI stub raises plain exceptions, not ImportError
        return f"tensorrt does not import ({type(e).__name__})"
    problem = version_problem(getattr(trt, "__version__", "?"))
    if problem:
        return problem
    if runs_on_host(trt):
        return None
    if not is_available("torch"):
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def require_tensorrt(model: str, spec: ExportSpec, input_size: Sequence[int]) -> None:
    """Raise one line naming the install and the trtexec equivalent when TensorRT cannot run here."""
    reason = unavailable_reason()
    if reason and reason.startswith("TensorRT "):  # installed, but a version mimzoo cannot drive
        raise TensorRTUnavailableError(reason)
    if reason:
        raise TensorRTUnavailableError(f"TensorRT engines need TensorRT and an NVIDIA GPU ({reason}): "
                                       f"{INSTALL_HINT} on a GPU machine, or run: "
                                       f"{trtexec_command(model, spec, input_size)}")


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one engine build."""

    precision: str  # "fp32", "fp16" or "int8"
    profile: Profile  # input shapes
    workspace_mib: int = 4096  # builder scratch memory limit
    timing_cache: Path | None = None  # read before and written after the build (shared between builds)
    calibration_cache: Path | None = None  # INT8: calibration table, reused for the same weights and images

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d, "profile": self.profile.to_dict(), "timing_cache": str(self.timing_cache or ""),
                "calibration_cache": str(self.calibration_cache or "")}
