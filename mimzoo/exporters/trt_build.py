"""The parts of a TensorRT build that talk to ``tensorrt`` and the GPU.

Written against TensorRT 10's documented Python API (``tensorrt.Builder``, ``OnnxParser``,
``IBuilderConfig``, ``IInt8EntropyCalibrator2``); other majors are refused before anything is built
(:func:`~mimzoo.exporters.tensorrt.version_problem`). The module object ``trt`` is passed in, so
nothing here imports tensorrt at module level. The types and plain rules come from ``tensorrt.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .._atomic import atomic_file
from .spec import ExportError
from .tensorrt import (
    ENGINE_JSON,
    BuildConfig,
    CalibrationBatches,
    TensorRTUnavailableError,
    engine_cache_key,
    engine_metadata,
    fp32_layer_types,
    onnx_sha256,
    precision_flags,
    runs_on_host,
    version_problem,
)

log = logging.getLogger(__name__)


def compute_capability(trt: Any = None) -> str:
    """"major.minor" of the current CUDA device, e.g. "9.0" for an H100 (the test double's own on the CPU)."""
    if trt is not None and runs_on_host(trt):
        return str(trt.COMPUTE_CAPABILITY)
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def gpu_name(trt: Any = None) -> str:
    if trt is not None and runs_on_host(trt):
        return str(trt.DEVICE_NAME)
    import torch

    return str(torch.cuda.get_device_name())


def device_of(trt: Any) -> str:
    """torch device of the engine's buffers: "cuda", or "cpu" for the host-memory test double."""
    return "cpu" if runs_on_host(trt) else "cuda"


def parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    """(network, parser): a network parsed from the ONNX file (external weights read from beside it).
    Keep the parser alive as long as the network: it owns weights the network uses."""
    network = builder.create_network(0)  # TensorRT 10: explicit batch always (the flag is deprecated)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors[:500]}")
    return network, parser


def pin_fp32_layers(trt: Any, network: Any, precision: str) -> int:
    """Keep LayerNorm and softmax layers (and their outputs) in FP32; return how many were pinned."""
    types = {getattr(trt.LayerType, name) for name in fp32_layer_types(precision) if hasattr(trt.LayerType, name)}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in types:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    log.info("pinned %d LayerNorm/softmax layers to FP32", pinned)
    return pinned


def make_config(trt: Any, builder: Any, network: Any, cfg: BuildConfig, calibration: CalibrationBatches | None) -> Any:
    """Builder config: memory pool, precision flags, FP32 pins, the profile, timing cache, calibrator."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
    if cfg.precision == "fp32":  # TF32 is on by default and rounds matmul inputs to 10 mantissa bits
        config.clear_flag(trt.BuilderFlag.TF32)
    for flag in precision_flags(cfg.precision):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    pin_fp32_layers(trt, network, cfg.precision)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, cfg.profile.min, cfg.profile.opt, cfg.profile.max)
    config.add_optimization_profile(profile)
    cache_bytes = cfg.timing_cache.read_bytes() if cfg.timing_cache and cfg.timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    if cfg.precision == "int8":
        if calibration is None:
            raise ExportError("an INT8 engine needs calibration images; pass --data digits or an image folder")
        config.int8_calibrator = entropy_calibrator(trt, calibration, cfg.calibration_cache)
        config.set_calibration_profile(profile)
    return config


def save_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return
    with atomic_file(path) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))


def entropy_calibrator(trt: Any, batches: CalibrationBatches, cache: Path | None) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding `batches` from device memory, with an on-disk cache."""
    import torch

    device = device_of(trt)

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._it = iter(batches)
            self._device: Any = None  # the batch TensorRT reads; kept alive until the next one

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            x = next(self._it, None)
            if x is None:
                return None
            self._device = torch.from_numpy(x).to(device)
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                with atomic_file(cache) as tmp:
                    tmp.write_bytes(bytes(data))

    return _Calibrator()


def build_engine(onnx_path: Path, engine_path: Path, cfg: BuildConfig, *,
                 calibration: CalibrationBatches | None = None) -> dict[str, Any]:
    """Build a TensorRT engine from `onnx_path`; write it and engine.json beside it; return the metadata.

    `onnx_path` must be final: its hash (which ignores the metadata mimzoo embeds later) is recorded.

    >>> build_engine(Path("out/model.onnx"), Path("out/model.engine"),
    ...              BuildConfig("fp16", profile_for(ExportSpec(), (3, 224, 224))))  # doctest: +SKIP
    """
    import tensorrt as trt

    problem = version_problem(trt.__version__)
    if problem:  # 11.x removed the precision flags and the calibrator this builder uses
        raise TensorRTUnavailableError(problem)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network, _parser = parse_onnx(trt, builder, trt_logger, onnx_path)
    config = make_config(trt, builder, network, cfg, calibration)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    save_timing_cache(config, cfg.timing_cache)
    sm = compute_capability(trt)
    onnx_sha = onnx_sha256(onnx_path)
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    key = engine_cache_key(onnx_sha=onnx_sha, precision=cfg.precision, profile=cfg.profile, trt_version=trt.__version__,
                           compute_capability=sm, calibration=calibration.fingerprint() if calibration else None)
    meta = engine_metadata(trt_version=trt.__version__, compute_capability=sm, gpu=gpu_name(trt),
                           precision=cfg.precision, onnx_sha=onnx_sha, profile=cfg.profile, outputs=outputs, cache_key=key)
    with atomic_file(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_file(engine_path.with_name(ENGINE_JSON)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
