"""Run a TensorRT engine (for ``mimzoo verify`` and ``mimzoo bench``), refusing foreign engines.

Input and output buffers are torch CUDA tensors, so no pycuda/cuda-python is needed; the engine
runs with ``execute_async_v3`` (TensorRT 10 API) on a CUDA stream of its own (TensorRT adds
device-wide synchronisations on the default stream), which first waits for the work already queued
on torch's current stream. The one seam for CPU tests: with mimzoo's host-memory test double of
``tensorrt`` (:func:`~mimzoo.exporters.tensorrt.runs_on_host`) the buffers are CPU tensors and there
is no stream; nothing else differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .spec import ExportError
from .tensorrt import ENGINE_JSON, EngineMismatchError, check_compatible, onnx_sha256, unavailable_reason


class EngineShapeError(ExportError):
    """A batch the engine's optimisation profile does not accept."""


def read_engine_meta(engine_path: Path) -> dict[str, Any]:
    meta_file = engine_path.with_name(ENGINE_JSON)
    if not meta_file.is_file():
        raise EngineMismatchError(f"{engine_path} has no {ENGINE_JSON} beside it, so nothing says which GPU and "
                                  "TensorRT built it; rebuild it with `mimzoo export MODEL --trt`")
    try:
        return json.loads(meta_file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise EngineMismatchError(f"{meta_file} is not valid JSON ({e}); rebuild the engine") from e


class EngineRunner:
    """A deserialised engine and one execution context, checked against this GPU and TensorRT."""

    def __init__(self, engine_path: str | Path, *, onnx_path: str | Path | None = None):
        from .tensorrt import TensorRTUnavailableError

        reason = unavailable_reason()
        if reason and reason.startswith("TensorRT "):  # installed, but a version mimzoo cannot drive
            raise TensorRTUnavailableError(f"cannot run {engine_path}: {reason}")
        if reason:
            raise TensorRTUnavailableError(f"running a TensorRT engine needs TensorRT and a GPU ({reason}); "
                                           "pip install 'mimzoo[gpu]' on a GPU machine")
        import tensorrt as trt
        import torch

        from .trt_build import compute_capability, device_of

        self.path = Path(engine_path)
        self.meta = read_engine_meta(self.path)
        sha = onnx_sha256(Path(onnx_path)) if onnx_path else None
        check_compatible(self.meta, trt_version=trt.__version__, compute_capability=compute_capability(trt), onnx_sha=sha)
        self._trt, self._torch = trt, torch
        self.device = device_of(trt)
        self._stream = torch.cuda.Stream() if self.device == "cuda" else None  # non-default: no implicit syncs
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineMismatchError(f"TensorRT could not deserialise {self.path}; rebuild it with `mimzoo export --trt`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = [n for n in names if n != self.input]
        self.max_batch = int(self.meta["profile"]["max"][0])
        self.min_batch = int(self.meta["profile"]["min"][0])

    def _dtype(self, name: str) -> Any:
        trt, torch = self._trt, self._torch
        return {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32,
                trt.int64: torch.int64}[self.engine.get_tensor_dtype(name)]  # int: a task model's mask

    def _set_input(self, x: Any) -> None:
        if not self.context.set_input_shape(self.input, tuple(x.shape)):
            n, lo, hi = int(x.shape[0]), self.min_batch, self.max_batch
            raise EngineShapeError(f"batch {n} is outside the engine's profile (batch {lo} to {hi}); re-export with "
                                   f"`mimzoo export MODEL --trt --max-batch {max(n, hi)}` or feed batches of {lo} to {hi}")
        self._address(self.input, x)

    def _address(self, name: str, t: Any) -> None:
        if not self.context.set_tensor_address(name, int(t.data_ptr())):
            raise RuntimeError(f"TensorRT refused the buffer of '{name}' in {self.path} (set_tensor_address failed)")

    def run_torch(self, x: Any) -> dict[str, Any]:
        """One batch already on the engine's device (a torch tensor within the profile) -> output tensors there."""
        torch = self._torch
        x = x.to(dtype=self._dtype(self.input)).contiguous()
        self._set_input(x)
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=self._dtype(name), device=x.device)
            self._address(name, outs[name])
        if self._stream is None:  # host-memory test double: runs synchronously on the CPU
            ok = self.context.execute_async_v3(0)
        else:
            self._stream.wait_stream(torch.cuda.current_stream())  # x and the outputs were made there
            ok = self.context.execute_async_v3(self._stream.cuda_stream)
            self._stream.synchronize()
        if not ok:
            raise RuntimeError(f"TensorRT failed to run {self.path}")
        return outs

    def run(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        """Numpy in, numpy out; batches beyond the profile's max are split, below its min padded."""
        torch = self._torch
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.outputs}
        for i in range(0, len(pixel_values), self.max_batch):
            chunk = pixel_values[i:i + self.max_batch]
            n = len(chunk)
            if n < self.min_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.min_batch - n, axis=0)])
            outs = self.run_torch(torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device))
            for name, t in outs.items():
                parts[name].append((t[:n] if not t.is_floating_point() else t[:n].float()).cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}
