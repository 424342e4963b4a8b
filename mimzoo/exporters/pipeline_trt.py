"""The TensorRT branch of an export: build the engine from the verified ONNX graph, then verify it.

The engine records the sha256 of model.onnx as it is when built; mimzoo embeds the export report into
that file afterwards, which onnx_sha256 ignores (see metadata.ONNX_FIELDS_IGNORED), so the recorded hash
still matches the final file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .spec import ExportSpec, Tolerances
from .verify import Outputs, VerifyInputs, collect, report


def default_cache_dir() -> Path:
    """Where timing and calibration caches live: $MIMZOO_CACHE/tensorrt or ~/.cache/mimzoo/tensorrt."""
    root = os.environ.get("MIMZOO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mimzoo")
    return Path(root) / "tensorrt"


def build_and_verify(spec: ExportSpec, onnx_path: Path, ref: Outputs, inputs: VerifyInputs, tol: Tolerances,
                     calib_x: np.ndarray | None, say: Callable[[str], None],
                     cache_dir: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build ``model.engine`` (+ engine.json) beside `onnx_path` and compare it with PyTorch."""
    import tensorrt as trt

    from .tensorrt import (
        ENGINE_NAME,
        BuildConfig,
        CalibrationBatches,
        calibration_cache_path,
        onnx_sha256,
        profile_for,
        timing_cache_path,
    )
    from .trt_build import build_engine, compute_capability
    from .trt_runner import EngineRunner

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    profile = profile_for(spec, inputs.random[0].shape[1:])
    calibration = None
    if spec.precision == "int8" and calib_x is not None:
        calibration = CalibrationBatches(calib_x, spec.batch if isinstance(spec.batch, int) else spec.opt_batch)
    cfg = BuildConfig(
        spec.precision, profile, timing_cache=timing_cache_path(cache, trt.__version__, compute_capability(trt)),
        calibration_cache=calibration_cache_path(cache, onnx_sha=onnx_sha256(onnx_path), calibration=calibration.fingerprint())
        if calibration else None,
    )
    say(f"building a TensorRT {trt.__version__} {spec.precision} engine (profile {profile.to_dict()})")
    engine = onnx_path.with_name(ENGINE_NAME)
    meta = build_engine(onnx_path, engine, cfg, calibration=calibration)
    say("verifying the engine")
    runner = EngineRunner(engine, onnx_path=onnx_path)
    rep = report(ref, collect(runner.run, inputs), inputs, tol)
    keys = ("tensorrt_version", "compute_capability", "gpu", "precision", "source_onnx_sha256", "profile", "cache_key")
    return rep, {"tensorrt": {k: meta[k] for k in keys}}
