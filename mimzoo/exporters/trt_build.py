"""The parts of a TensorRT build that talk to ``tensorrt`` and CUDA (run only where both exist).

Written against TensorRT 10's documented Python API (``tensorrt.Builder``, ``OnnxParser``,
``IBuilderConfig``, ``IInt8EntropyCalibrator2``); TensorRT 8.6/9 work too (explicit-batch flag).
The module object ``trt`` is passed in, so nothing here imports tensorrt at module level.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .._atomic import atomic_file
from .spec import ExportError
from .tensorrt import BuildConfig, CalibrationBatches, fp32_layer_types, precision_flags

log = logging.getLogger(__name__)


def compute_capability() -> str:
    """"major.minor" of the current CUDA device, e.g. "9.0" for an H100."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def gpu_name() -> str:
    import torch

    return str(torch.cuda.get_device_name())


def parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    """(network, parser): an explicit-batch network parsed from the ONNX file (external weights read
    from beside it). Keep the parser alive as long as the network: it owns weights the network uses."""
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
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
    """An ``IInt8EntropyCalibrator2`` feeding `batches` from GPU memory, with an on-disk cache."""
    import torch

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
            self._device = torch.from_numpy(x).cuda()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                with atomic_file(cache) as tmp:
                    tmp.write_bytes(bytes(data))

    return _Calibrator()
