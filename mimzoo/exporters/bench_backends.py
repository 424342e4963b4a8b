"""The backends `mimzoo bench` can time, and the exports they run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
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
        from .tensorrt import unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise Skip(f"{reason}: pip install 'mimzoo[gpu]' on a GPU machine")
        if not _trt_on_host():
            _require_gpu(cfg, "TensorRT")
    if name in cfg.exports:
        info = read_export_folder(cfg.exports[name])
        # TensorRT: an engine of any precision (the note says which); onnxruntime: the backend's precision
        wanted = info.format == fmt and (fmt == "tensorrt" or info.precision == precision)
        if not wanted or not info.meta["verification"].get("passed"):
            what = f"{fmt} export" if fmt == "tensorrt" else f"{fmt} {precision} export"
            raise Skip(f"{cfg.exports[name]} is not a verified {what}")
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
            and list(meta["inputs"]["pixel_values"][1:]) == list(encoder.preprocess.batch_shape(1)[1:]))


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
    if name.startswith("openvino"):
        return _openvino_backend(name, cfg, folder)
    return _ort_backend(name, cfg, folder)


def _openvino_backend(name: str, cfg: BenchConfig, folder: Path | None) -> Backend:
    """OpenVINO on the CPU with the inference precision its export was verified with, cfg.threads threads."""
    from .runtime import ExportedOpenVinoModel

    assert folder is not None  # ensure_export ran first (run_bench's order)
    if cfg.device != "cpu":
        raise Skip("mimzoo's OpenVINO backends run on the CPU; pass --device cpu")
    model = ExportedOpenVinoModel(folder, threads=cfg.threads)
    hint = model.meta["openvino"]["inference_precision"]
    threads = lambda: int(model.compiled.get_property("INFERENCE_NUM_THREADS"))  # noqa: E731 - as compiled
    return Backend(name, lambda a: np.ascontiguousarray(a, dtype=np.float32), model.request.infer,
                   f"{folder.name}; OpenVINO CPU, {hint}", timing="numpy in, outputs in the request (infer)",
                   threads=threads)


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

    where = "on the GPU, synchronised after each call" if cfg.device != "cpu" else "CPU tensors"
    return Backend(name, lambda a: torch.from_numpy(a).to(device=cfg.device, dtype=dtype), call, note,
                   timing=f"input and outputs {where}", threads=torch.get_num_threads)


def _half_copy(encoder: Any, device: str) -> Any:
    import copy

    return copy.deepcopy(encoder).to(device=device).half()


def _compiled(module: Any) -> tuple[Any, str]:
    """torch.compile, checked once so a missing compiler is a skip (compile time shows in the note)."""
    import torch

    compiled = torch.compile(module)
    x = torch.zeros(*module.preprocess.batch_shape(1), device=next(module.parameters()).device)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            compiled(x)
    except Exception as e:  # inductor raises backend-specific errors (no C++ compiler, ...)
        raise Skip(f"torch.compile failed here ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from e
    return compiled, f"compiled in {time.perf_counter() - t0:.0f} s (batch 1; each new batch size recompiles)"


CUDA_PROVIDER = "CUDAExecutionProvider"
ORT_GPU_FIX = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"


def _ort_backend(name: str, cfg: BenchConfig, folder: Path | None) -> Backend:
    """onnxruntime on the provider its session really uses: the CPU as it is (numpy in and out), CUDA with
    IO binding on device buffers (like torch and TensorRT, no host copies timed)."""
    assert folder is not None  # ensure_export ran first (run_bench's order)
    providers = ["CPUExecutionProvider"] if cfg.device == "cpu" else [CUDA_PROVIDER]
    model = BenchSession.open(folder / "model.onnx", providers, cfg.threads)
    used = model.session.get_providers()[0]  # what the session runs on, not what is installed
    note = f"{folder.name}; {used.replace('ExecutionProvider', '')}"
    threads = lambda: model.session.get_session_options().intra_op_num_threads  # noqa: E731 - as the session has it
    if cfg.device == "cpu":
        outputs = model.output_names

        def call(x: np.ndarray) -> Any:
            return model.session.run(outputs, {model.input_name: x})

        return Backend(name, lambda a: a.astype(model.input_dtype), call, note, timing="numpy in and out (session.run)",
                       threads=threads)
    if used != CUDA_PROVIDER:
        raise Skip(f"onnxruntime fell back to {used} (its CUDA provider did not load: onnxruntime-gpu missing, "
                   f"or CUDA/cuDNN libraries it needs); {ORT_GPU_FIX}")
    prepare, call = io_binding(model, "cuda")
    return Backend(name, prepare, call, note, timing="IO binding, input and outputs on the GPU", threads=threads)


@dataclass(frozen=True)
class BenchSession:
    """An onnxruntime session with bench's thread settings: `threads` intra-op threads (the number torch
    gets), one inter-op thread, sequential execution. Same attributes as runtime.OnnxModel."""

    session: Any  # onnxruntime.InferenceSession
    input_name: str
    input_dtype: Any  # numpy dtype of the input
    output_names: list[str]

    @classmethod
    def open(cls, onnx_file: Path, providers: list[str], threads: int | None, optimization: str = "all") -> BenchSession:
        import onnxruntime as ort

        from .runtime import ExportRuntimeError, session_options

        if not onnx_file.is_file():
            raise ExportRuntimeError(f"{onnx_file} is missing; copy the whole export folder")
        so = session_options(threads, optimization)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(str(onnx_file), so, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ExportRuntimeError(f"onnxruntime cannot load {onnx_file} ({str(e).splitlines()[0][:300]}); "
                                     "the file is corrupt or incomplete: export again") from e
        feed = session.get_inputs()[0]
        return cls(session, feed.name, np.float16 if "float16" in feed.type else np.float32,
                   [o.name for o in session.get_outputs()])


def io_binding(model: Any, device: str, device_id: int = 0) -> tuple[Callable[[np.ndarray], Any], Callable[[Any], Any]]:
    """(prepare, call) running `model` (an OnnxModel) with IO binding: the input is copied to `device` once
    in prepare, and each call binds it and leaves the outputs on `device` ("cuda" or "cpu")."""
    import onnxruntime as ort

    outputs = model.output_names

    def prepare(a: np.ndarray) -> Any:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a, dtype=model.input_dtype), device, device_id)

    def call(x: Any) -> Any:
        binding = model.session.io_binding()
        binding.bind_ortvalue_input(model.input_name, x)
        for out in outputs:
            binding.bind_output(out, device, device_id)
        model.session.run_with_iobinding(binding)
        return binding.get_outputs()

    return prepare, call


def _trt_on_host() -> bool:
    """The host-memory test double of tensorrt is what imports here (tests only; see tensorrt.runs_on_host)."""
    import tensorrt as trt

    from .tensorrt import runs_on_host

    return runs_on_host(trt)


def _tensorrt_backend(folder: Path | None) -> Backend:
    import torch

    from .tensorrt import ENGINE_NAME
    from .trt_runner import EngineRunner

    assert folder is not None
    runner = EngineRunner(folder / ENGINE_NAME, onnx_path=folder / "model.onnx")
    where = "on the GPU, execute_async_v3 on its own CUDA stream" if runner.device == "cuda" else \
        "in host memory (the CPU test double of tensorrt)"
    return Backend("tensorrt", lambda a: torch.from_numpy(a).to(runner.device), runner.run_torch,
                   f"{folder.name}; {runner.meta['precision']} engine", timing=f"input and outputs {where}")
