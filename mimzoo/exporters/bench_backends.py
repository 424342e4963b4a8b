"""The backends `mimzoo bench` can time, and the exports they run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .bench import EXPORTS, Backend, BenchConfig, Skip

log = logging.getLogger(__name__)


def sync_for(device: str) -> Callable[[], None]:
    """What to call after each timed call so the time covers the work (CUDA runs asynchronously)."""
    if device == "cpu":
        return lambda: None
    import torch

    return torch.cuda.synchronize


def device_memory(device: str, *, reset: bool) -> int:
    """Bytes in use on the GPU (all allocators: torch, onnxruntime, TensorRT); 0 on the CPU."""
    if device == "cpu":
        return 0
    import torch

    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return int(total - free)


def ensure_export(name: str, encoder: Any, model: Any, cfg: BenchConfig, workdir: Path, say: Callable[[str], None]) -> Path:
    """The verified export folder backend `name` runs: the one given in cfg.exports, or a new one.

    `model` is the name the encoder was loaded from (exported by name, with cfg.export_options' load
    options, so the export's provenance can rebuild it) or the encoder itself.
    """
    from ..api.export import export
    from .metadata import read_export_folder

    fmt, precision = EXPORTS[name]
    if fmt == "tensorrt":
        _require_gpu(cfg, "TensorRT")
        from .tensorrt import unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise Skip(f"{reason}: pip install 'mimzoo[gpu]' on a GPU machine")
    if name in cfg.exports:
        info = read_export_folder(cfg.exports[name])
        if (info.format, info.precision) != (fmt, precision) or not info.meta["verification"].get("passed"):
            raise Skip(f"{cfg.exports[name]} is not a verified {fmt} {precision} export")
        return info.path
    out = workdir / f"{name}"
    if out.exists() and _reusable(out, fmt, precision, encoder):
        say(f"  reusing {out}")
        return out
    say(f"  exporting {fmt} {precision} (verified) into {out}")
    options = {**cfg.export_options}
    result = export(model if isinstance(model, str) else encoder, out, format=fmt, precision=precision, overwrite=True, progress=lambda line: say(f"    {line}"),
                    **options)
    return result.path


def _reusable(folder: Path, fmt: str, precision: str, encoder: Any) -> bool:
    """An earlier bench export of the very same weights, verified."""
    from .metadata import CorruptExportError, read_export_folder, state_sha256

    try:
        meta = read_export_folder(folder).meta
    except CorruptExportError:
        return False
    return ((meta["format"], meta["precision"]) == (fmt, precision) and bool(meta["verification"].get("passed"))
            and meta["provenance"].get("state_sha256") == state_sha256(encoder)
            and list(meta["inputs"]["pixel_values"][1:]) == list(encoder.preprocess.input_size))


def _require_gpu(cfg: BenchConfig, what: str) -> None:
    if cfg.device == "cpu":
        raise Skip(f"{what} runs on a GPU; pass --device cuda on a GPU machine")
    import torch

    if not torch.cuda.is_available():
        raise Skip("no CUDA GPU is visible")


def load_backend(name: str, encoder: Any, cfg: BenchConfig, folder: Path | None) -> Backend:
    """Load backend `name` (its export folder already built) on cfg.device."""
    if name in ("torch", "torch-fp16", "torch-compile"):
        return _torch_backend(name, encoder, cfg)
    if name == "tensorrt":
        return _tensorrt_backend(folder)
    return _ort_backend(name, cfg, folder)


def _torch_backend(name: str, encoder: Any, cfg: BenchConfig) -> Backend:
    import torch

    dtype = torch.float32
    if name == "torch-fp16":
        _require_gpu(cfg, "fp16 PyTorch")
        dtype = torch.float16
    if cfg.device != "cpu" and not torch.cuda.is_available():
        raise Skip("no CUDA GPU is visible")
    module = encoder.to(device=cfg.device) if dtype == torch.float32 else _half_copy(encoder, cfg.device)
    note = ""
    if name == "torch-compile":
        module, note = _compiled(module)

    def call(x: Any) -> Any:
        with torch.inference_mode():
            return module(x)

    return Backend(name, lambda a: torch.from_numpy(a).to(device=cfg.device, dtype=dtype), call, note)


def _half_copy(encoder: Any, device: str) -> Any:
    import copy

    return copy.deepcopy(encoder).to(device=device).half()


def _compiled(module: Any) -> tuple[Any, str]:
    """torch.compile, checked once so a missing compiler is a skip (compile time shows in the note)."""
    import torch

    compiled = torch.compile(module)
    x = torch.zeros(1, *module.preprocess.input_size, device=next(module.parameters()).device)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            compiled(x)
    except Exception as e:  # inductor raises backend-specific errors (no C++ compiler, ...)
        raise Skip(f"torch.compile failed here ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from e
    return compiled, f"compiled in {time.perf_counter() - t0:.0f} s (batch 1; each new batch size recompiles)"


def _ort_backend(name: str, cfg: BenchConfig, folder: Path | None) -> Backend:
    import onnxruntime as ort

    from .runtime import OnnxModel

    assert folder is not None  # ensure_export ran first (run_bench's order)
    providers = ["CPUExecutionProvider"]
    if cfg.device != "cpu":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Skip("onnxruntime has no CUDA provider here: pip install onnxruntime-gpu")
        providers = ["CUDAExecutionProvider"]
    model = OnnxModel(folder / "model.onnx", providers=providers, threads=cfg.threads)
    outputs = model.output_names

    def call(x: np.ndarray) -> Any:
        return model.session.run(outputs, {model.input_name: x})

    note = f"{folder.name}; {model.session.get_providers()[0].replace('ExecutionProvider', '')}"
    return Backend(name, lambda a: a.astype(model.input_dtype), call, note)


def _tensorrt_backend(folder: Path | None) -> Backend:
    import torch

    from .tensorrt import ENGINE_NAME
    from .trt_runner import EngineRunner

    assert folder is not None
    runner = EngineRunner(folder / ENGINE_NAME, onnx_path=folder / "model.onnx")
    return Backend("tensorrt", lambda a: torch.from_numpy(a).cuda(), runner.run_torch, f"{runner.meta['precision']} engine")
