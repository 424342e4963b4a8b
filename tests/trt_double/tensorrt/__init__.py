"""A CPU test double of the ``tensorrt`` Python module (TensorRT 10.x API), for mimzoo's CI.

It lets the whole TensorRT path (build, calibrate, deserialise, run) execute on a machine without a
GPU or TensorRT. Put ``tests/trt_double`` on ``sys.path`` (or PYTHONPATH for a subprocess) and
``import tensorrt`` gets this module. It "builds" an engine by serialising the parsed ONNX model,
the builder flags, the optimisation profile and the calibration table into the engine bytes, and
"runs" it with onnxruntime on the CPU. "Device" pointers are host addresses (``data_ptr()`` of CPU
torch tensors): the double reads and writes them with ctypes, so it sees exactly the addresses, shapes
and dtypes a program hands to the real bindings. It does NOT emulate reduced precision (an fp16 or
int8 "engine" computes in fp32), kernels, streams or timing.

The surface is taken from TensorRT 10's own bindings and docs, not from mimzoo's calls
(NVIDIA/TensorRT, branch release/10.13; cited per piece):

- ``Logger`` + severities, ``Builder`` (``create_network``, ``create_builder_config``,
  ``create_optimization_profile``, ``build_serialized_network`` returning ``IHostMemory`` or None),
  ``Runtime.deserialize_cuda_engine`` (None on bad bytes): python/src/infer/pyCore.cpp.
- ``NetworkDefinitionCreationFlag`` (EXPLICIT_BATCH is deprecated and ignored in 10.x; STRONGLY_TYPED),
  ``INetworkDefinition`` (num_layers/get_layer, num_inputs/get_input, num_outputs/get_output),
  ``ILayer`` (type, precision, set_output_type, num_outputs), ``LayerType``: python/src/infer/pyGraph.cpp.
- ``OnnxParser`` (parse_from_file -> bool, num_errors, get_error): python/src/parsers/pyOnnx.cpp.
- ``BuilderFlag`` (TF32 "Enabled by default": python/docstrings/infer/pyCoreDoc.h, include/NvInfer.h kTF32),
  ``MemoryPoolType``, ``IBuilderConfig`` (set_flag, clear_flag, get_flag, set_memory_pool_limit,
  add_optimization_profile, set_calibration_profile, int8_calibrator, create_timing_cache,
  set_timing_cache -> bool, get_timing_cache), ``IOptimizationProfile.set_shape(input, min, opt, max)``:
  python/src/infer/pyCore.cpp.
- ``IInt8EntropyCalibrator2`` (get_batch_size, get_batch(names) -> list of device pointers or None when
  done, read_calibration_cache -> bytes or None, write_calibration_cache): python/src/infer/pyInt8.cpp and
  python/docstrings/infer/pyInt8Doc.h. Like the real builder, a cache that reads back skips the batches.
- ``ICudaEngine`` (num_io_tensors, get_tensor_name, get_tensor_mode, get_tensor_dtype, get_tensor_shape,
  get_tensor_profile_shape(name, profile_index) -> [min, opt, max], create_execution_context),
  ``IExecutionContext`` (set_input_shape -> bool, set_tensor_address -> bool, get_tensor_shape,
  execute_async_v3(stream_handle) -> bool), ``TensorIOMode``, ``DataType`` and the aliases
  ``float32``/``float16``/``int8``: python/src/infer/pyCore.cpp, python/src/infer/pyFoundationalTypes.cpp.
  ``setInputShape`` returns false on error (include/NvInferRuntime.h), and a shape outside the active
  optimisation profile is such an error: the double returns False there too.

Version: ``TRT_DOUBLE_VERSION`` in the environment (read at import) makes it pretend to be another
release. From 11.0 it drops what TensorRT 11 removed (branch main: ``BuilderFlag.FP16``/``INT8``,
``IInt8EntropyCalibrator2``, ``ILayer.precision``/``set_output_type``; strongly typed networks only).
Any name the double lacks raises AttributeError naming it (see ``__getattr__``).
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
import struct
from typing import Any

import numpy as np

__version__ = os.environ.get("TRT_DOUBLE_VERSION", "10.13.3.9")
_MAJOR = int(__version__.split(".")[0])

# The seam mimzoo checks (mimzoo.exporters.tensorrt.runs_on_host): "device" memory is host memory here.
# The real module has no such attribute, so mimzoo's GPU code path is unchanged there.
HOST_MEMORY_DOUBLE = True
DEVICE_NAME = "CPU (tensorrt test double)"
COMPUTE_CAPABILITY = "0.0"

_MAGIC = b"MZTRTDBL"
# names TensorRT 11 removed, for a helpful AttributeError
_REMOVED_IN_11 = {"IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
                  "IInt8LegacyCalibrator", "IInt8Calibrator"}


def __getattr__(name: str) -> Any:
    if name in _REMOVED_IN_11 and _MAJOR >= 11:
        raise AttributeError(f"module 'tensorrt' has no attribute '{name}' (removed in TensorRT 11; this is {__version__})")
    raise AttributeError(f"module 'tensorrt' has no attribute '{name}' (not part of TensorRT {__version__}'s "
                         "Python API as implemented by mimzoo's test double)")


# ---- enums (pyCore.cpp / pyGraph.cpp / pyFoundationalTypes.cpp) ----------------------------------


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


float32, float16, int8, int32, bfloat16, int64 = (DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32,
                                                  DataType.BF16, DataType.INT64)
_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
       DataType.INT64: np.int64, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


_FLAGS_10 = ["FP16", "BF16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE",
             "EDITABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS",
             "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE",
             "EXCLUDE_LEAN_RUNTIME", "FP8", "ERROR_ON_TIMING_CACHE_MISS", "STRIP_PLAN", "REFIT_IDENTICAL",
             "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "FP4",
             "DISTRIBUTIVE_INDEPENDENCE"]
_REMOVED_FLAGS_11 = {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                     "PREFER_PRECISION_CONSTRAINTS"}
BuilderFlag = enum.IntEnum("BuilderFlag", [(n, i) for i, n in enumerate(_FLAGS_10)
                                           if _MAJOR < 11 or n not in _REMOVED_FLAGS_11])


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0  # deprecated and ignored since 10.0
    STRONGLY_TYPED = 1
    PREFER_JIT_PYTHON_PLUGINS = 2
    PREFER_AOT_PYTHON_PLUGINS = 3


class LayerType(enum.IntEnum):
    CONVOLUTION = 0
    CAST = 1
    ACTIVATION = 2
    POOLING = 3
    LRN = 4
    SCALE = 5
    SOFTMAX = 6
    DECONVOLUTION = 7
    CONCATENATION = 8
    ELEMENTWISE = 9
    PLUGIN = 10
    UNARY = 11
    PADDING = 12
    SHUFFLE = 13
    REDUCE = 14
    TOPK = 15
    GATHER = 16
    MATRIX_MULTIPLY = 17
    RAGGED_SOFTMAX = 18
    CONSTANT = 19
    IDENTITY = 20
    PLUGIN_V2 = 21
    SLICE = 22
    SHAPE = 23
    PARAMETRIC_RELU = 24
    RESIZE = 25
    NORMALIZATION = 35
    ATTENTION = 48


# ONNX op -> the layer TensorRT's parser makes of it (close enough for precision pinning)
_OP_LAYERS = {"Conv": LayerType.CONVOLUTION, "Cast": LayerType.CAST, "Relu": LayerType.ACTIVATION,
              "Gelu": LayerType.ACTIVATION, "Sigmoid": LayerType.ACTIVATION, "Tanh": LayerType.ACTIVATION,
              "Softmax": LayerType.SOFTMAX, "Concat": LayerType.CONCATENATION, "Add": LayerType.ELEMENTWISE,
              "Sub": LayerType.ELEMENTWISE, "Mul": LayerType.ELEMENTWISE, "Div": LayerType.ELEMENTWISE,
              "Pow": LayerType.ELEMENTWISE, "Erf": LayerType.UNARY, "Sqrt": LayerType.UNARY,
              "Reshape": LayerType.SHUFFLE, "Transpose": LayerType.SHUFFLE, "Flatten": LayerType.SHUFFLE,
              "Squeeze": LayerType.SHUFFLE, "Unsqueeze": LayerType.SHUFFLE, "ReduceMean": LayerType.REDUCE,
              "Gather": LayerType.GATHER, "MatMul": LayerType.MATRIX_MULTIPLY, "Gemm": LayerType.MATRIX_MULTIPLY,
              "Constant": LayerType.CONSTANT, "Identity": LayerType.IDENTITY, "Slice": LayerType.SLICE,
              "Shape": LayerType.SHAPE, "Expand": LayerType.SLICE, "LayerNormalization": LayerType.NORMALIZATION,
              "Attention": LayerType.ATTENTION}


# ---- logger, tensors, layers, network -----------------------------------------------------------


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity  # export_values() in the bindings

    def log(self, severity: Any, msg: str) -> None:
        pass


class Logger(ILogger):
    def __init__(self, min_severity: Any = ILogger.Severity.WARNING):
        self.min_severity = min_severity
        self.messages: list[tuple[Any, str]] = []

    def log(self, severity: Any, msg: str) -> None:
        self.messages.append((severity, msg))


class Dims(tuple):
    """A shape; -1 marks a dimension known only at run time."""


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType, is_input: bool):
        self.name, self.shape, self.dtype = name, Dims(shape), dtype
        self.is_network_input, self.is_network_output = is_input, not is_input


class ILayer:
    """A layer of the parsed network (TensorRT 10: per-layer precision and output types settable)."""

    def __init__(self, name: str, layer_type: LayerType, num_outputs: int):
        self.name, self._type, self._num_outputs = name, layer_type, num_outputs
        self._precision: DataType = DataType.FLOAT
        self._precision_set = False
        self._output_types: dict[int, DataType] = {}

    @property
    def type(self) -> LayerType:
        return self._type

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    @property
    def precision(self) -> DataType:
        return self._precision

    @precision.setter
    def precision(self, dtype: DataType) -> None:
        self._precision, self._precision_set = DataType(dtype), True

    @property
    def precision_is_set(self) -> bool:
        return self._precision_set

    def set_output_type(self, index: int, dtype: DataType) -> None:
        if not 0 <= index < self._num_outputs:
            raise IndexError(f"layer {self.name} has {self._num_outputs} outputs, not {index + 1}")
        self._output_types[index] = DataType(dtype)

    def get_output_type(self, index: int) -> DataType:
        return self._output_types.get(index, DataType.FLOAT)


class ILayer11(ILayer):
    """TensorRT 11: strongly typed only; precision and output types are no longer settable."""

    precision = property(lambda self: self._precision)  # read-only

    def __getattribute__(self, name: str) -> Any:
        if name == "set_output_type":
            raise AttributeError("'tensorrt.ILayer' object has no attribute 'set_output_type' (removed in TensorRT 11)")
        return super().__getattribute__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "precision":
            raise AttributeError("'tensorrt.ILayer' precision is read-only in TensorRT 11 (strongly typed networks)")
        super().__setattr__(name, value)


class INetworkDefinition:
    def __init__(self, flags: int):
        self.flags = flags
        self._layers: list[ILayer] = []
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self.onnx_bytes: bytes | None = None  # what the parser read (the "weights" of this double)

    num_layers = property(lambda self: len(self._layers))
    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class IParserError:
    def __init__(self, desc: str):
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def code(self) -> int:
        return 1

    def __str__(self) -> str:
        return f"In node -1 (parse): {self._desc}"


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger):
        self.network, self.logger = network, logger
        self._errors: list[IParserError] = []

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index: int) -> IParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            proto = onnx.load(str(model))  # external weights are read from beside the file, as TensorRT does
        except Exception as e:
            self._errors.append(IParserError(f"failed to load {model}: {type(e).__name__}"))
            return False
        g, layer_cls = proto.graph, (ILayer11 if _MAJOR >= 11 else ILayer)
        weights = {t.name for t in g.initializer}
        for vi in g.input:
            if vi.name not in weights:
                self.network._inputs.append(ITensor(vi.name, _dims(vi), _dtype(vi), True))
        for vi in g.output:
            self.network._outputs.append(ITensor(vi.name, _dims(vi), _dtype(vi), False))
        for i, node in enumerate(g.node):
            self.network._layers.append(layer_cls(node.name or f"node_{i}", _OP_LAYERS.get(node.op_type, LayerType.PLUGIN),
                                                  len(node.output)))
        self.network.onnx_bytes = proto.SerializeToString()
        return True


def _dims(vi: Any) -> tuple[int, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)


def _dtype(vi: Any) -> DataType:
    return {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 7: DataType.INT64,
            9: DataType.BOOL, 16: DataType.BF16}.get(vi.type.tensor_type.elem_type, DataType.FLOAT)


# ---- builder, config, profiles, calibration ------------------------------------------------------


class IHostMemory:
    def __init__(self, data: bytes):
        self._data = bytes(data)

    nbytes = property(lambda self: len(self._data))

    def __bytes__(self) -> bytes:
        return self._data

    def __buffer__(self, flags: int) -> memoryview:  # the bindings expose the buffer protocol
        return memoryview(self._data)


class ITimingCache:
    def __init__(self, data: bytes):
        self.entries: dict[str, float] = json.loads(data[len(_MAGIC):]) if data.startswith(_MAGIC) else {}

    def serialize(self) -> IHostMemory:
        return IHostMemory(_MAGIC + json.dumps(self.entries, sort_keys=True).encode())


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = (tuple(int(v) for v in s) for s in (min, opt, max))
        if not (len(lo) == len(mid) == len(hi)) or any(not a <= b <= c for a, b, c in zip(lo, mid, hi)):
            raise ValueError(f"profile shapes of {input} must satisfy min <= opt <= max, got {lo}, {mid}, {hi}")
        self.shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> list[tuple[int, ...]]:
        return list(self.shapes.get(input, ()))


class IInt8Calibrator:
    def __init__(self) -> None:
        pass


class IInt8EntropyCalibrator2(IInt8Calibrator):
    """Subclass it and call ``IInt8EntropyCalibrator2.__init__(self)``, as with the bindings."""


if _MAJOR >= 11:
    del IInt8Calibrator, IInt8EntropyCalibrator2


class IBuilderConfig:
    def __init__(self) -> None:
        self._flags = {BuilderFlag.TF32}  # "TF32 ... Enabled by default" (pyCoreDoc.h / NvInfer.h kTF32)
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.calibration_profile: IOptimizationProfile | None = None
        self._timing_cache: ITimingCache | None = None
        self._calibrator: Any = None

    def set_flag(self, flag: Any) -> None:
        self._flags.add(BuilderFlag(flag))

    def clear_flag(self, flag: Any) -> None:
        self._flags.discard(BuilderFlag(flag))

    def get_flag(self, flag: Any) -> bool:
        return BuilderFlag(flag) in self._flags

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        self.pools[MemoryPoolType(pool)] = int(pool_size)

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self.pools.get(MemoryPoolType(pool), 0)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.calibration_profile = profile
        return True

    def get_calibration_profile(self) -> IOptimizationProfile | None:
        return self.calibration_profile

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing_cache

    @property
    def int8_calibrator(self) -> Any:
        if _MAJOR >= 11:
            raise AttributeError("'tensorrt.IBuilderConfig' object has no attribute 'int8_calibrator' (removed in TensorRT 11)")
        return self._calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, calibrator: Any) -> None:
        if _MAJOR >= 11:
            raise AttributeError("'tensorrt.IBuilderConfig' object has no attribute 'int8_calibrator' (removed in TensorRT 11)")
        if not isinstance(calibrator, IInt8Calibrator):
            raise TypeError("int8_calibrator must be an IInt8Calibrator")
        self._calibrator = calibrator


class Builder:
    def __init__(self, logger: ILogger):
        self.logger = logger
        self.platform_has_tf32 = False
        self.platform_has_fast_fp16 = True
        self.platform_has_fast_int8 = True

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        """The engine bytes, or None (with an error logged) when the build is impossible, as the real one."""
        if network.onnx_bytes is None:
            return self._fail("network has no layers (nothing was parsed)")
        shapes = {}
        for t in network._inputs:
            prof = next((p.shapes[t.name] for p in config.profiles if t.name in p.shapes), None)
            if prof is None and -1 in t.shape:
                return self._fail(f"input {t.name} has dynamic dimensions but no optimization profile sets its shape")
            prof = prof or (tuple(t.shape),) * 3
            if len(prof[0]) != len(t.shape) or any(d not in (-1, m) for d, m in zip(t.shape, prof[0])):
                return self._fail(f"profile of {t.name} {prof[0]} does not fit the network's {tuple(t.shape)}")
            shapes[t.name] = [list(s) for s in prof]
        calibration = None
        if BuilderFlag.__members__.get("INT8") in config._flags and config._calibrator is not None:
            calibration = self._calibrate(network, config, shapes)
            if calibration is None:
                return None
        if config._timing_cache is not None:
            config._timing_cache.entries[f"{len(network._layers)} layers"] = 0.01
        header = {
            "tensorrt_version": __version__,
            "flags": sorted(f.name for f in config._flags),
            "memory_pools": {p.name: v for p, v in config.pools.items()},
            "profile": shapes,
            "inputs": [[t.name, int(t.dtype)] for t in network._inputs],
            "outputs": [[t.name, int(t.dtype), list(t.shape)] for t in network._outputs],
            "fp32_pinned_layers": sorted({layer.type.name for layer in network._layers
                                          if layer.precision_is_set and layer.precision == DataType.FLOAT}),
            "calibration": calibration,
        }
        head = json.dumps(header).encode()
        return IHostMemory(_MAGIC + struct.pack("<I", len(head)) + head + network.onnx_bytes)

    def _fail(self, why: str) -> None:
        self.logger.log(ILogger.Severity.ERROR, why)
        return None

    def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig,
                   shapes: dict[str, list[list[int]]]) -> dict[str, Any] | None:
        """Run the calibrator as the builder does: the cache first; else every batch, then write the cache."""
        cal = config._calibrator
        cached = cal.read_calibration_cache()
        if cached:
            return {"source": "cache", "table": bytes(cached).decode("ascii", "replace")}
        batch = int(cal.get_batch_size())
        names = [t.name for t in network._inputs]
        prof = config.calibration_profile.shapes if config.calibration_profile else {}
        amax: dict[str, float] = {}
        batches = 0
        session = _session(network.onnx_bytes)
        while True:
            ptrs = cal.get_batch(names)
            if not ptrs:
                break
            feeds = {}
            for name, ptr, t in zip(names, ptrs, network._inputs):
                shape = list(prof.get(name, shapes[name])[1])  # the calibration profile's opt shape
                shape[0] = batch
                feeds[name] = _read(int(ptr), shape, t.dtype)
            outs = session.run(None, feeds)
            for name, value in [*feeds.items(), *zip([o.name for o in network._outputs], outs)]:
                amax[name] = max(amax.get(name, 0.0), float(np.abs(value).max()))
            batches += 1
        if not batches:
            return self._fail("the INT8 calibrator gave no batch")
        table = "TRT-10DOUBLE-EntropyCalibration2\n" + "".join(
            f"{k}: {struct.pack('>f', v / 127.0).hex()}\n" for k, v in sorted(amax.items()))
        cal.write_calibration_cache(table.encode())
        return {"source": "batches", "batches": batches, "table": table}


# ---- runtime, engine, execution context ----------------------------------------------------------


def _read(ptr: int, shape: list[int], dtype: DataType) -> np.ndarray:
    np_dtype = np.dtype(_NP[dtype])
    n = int(np.prod(shape)) * np_dtype.itemsize
    raw = (ctypes.c_char * n).from_address(ptr)
    return np.frombuffer(bytes(raw), dtype=np_dtype).reshape(shape)


def _session(onnx_bytes: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def describe_engine(data: bytes) -> dict[str, Any]:
    """The header the double wrote into engine bytes (flags, profile, pinned layers, calibration): for tests."""
    data = bytes(data)
    if not data.startswith(_MAGIC):
        raise ValueError("not an engine written by the tensorrt test double")
    (n,) = struct.unpack("<I", data[len(_MAGIC):len(_MAGIC) + 4])
    return json.loads(data[len(_MAGIC) + 4:len(_MAGIC) + 4 + n])


class Runtime:
    def __init__(self, logger: ILogger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        try:
            header = describe_engine(serialized_engine)
        except (ValueError, struct.error):
            self.logger.log(ILogger.Severity.ERROR, "engine deserialization failed (not an engine)")
            return None
        if header["tensorrt_version"] != __version__:
            self.logger.log(ILogger.Severity.ERROR, "the engine was built by another TensorRT version")
            return None
        n = struct.unpack("<I", bytes(serialized_engine)[len(_MAGIC):len(_MAGIC) + 4])[0]
        return ICudaEngine(header, bytes(serialized_engine)[len(_MAGIC) + 4 + n:])


class ICudaEngine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes):
        self.header, self._onnx = header, onnx_bytes
        self._io = [(n, TensorIOMode.INPUT, DataType(d), None) for n, d in header["inputs"]]
        self._io += [(n, TensorIOMode.OUTPUT, DataType(d), tuple(s)) for n, d, s in header["outputs"]]
        self._session: Any = None

    num_io_tensors = property(lambda self: len(self._io))
    num_optimization_profiles = property(lambda self: 1)

    def _find(self, name: str) -> tuple[str, TensorIOMode, DataType, Any] | None:
        return next((t for t in self._io if t[0] == name), None)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        t = self._find(name)
        return t[1] if t else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        t = self._find(name)
        if t is None:
            raise RuntimeError(f"no tensor named {name}")
        return t[2]

    def get_tensor_shape(self, name: str) -> Dims:
        t = self._find(name)
        if t is None:
            return Dims(())
        if t[1] == TensorIOMode.INPUT:
            lo, _, hi = self.header["profile"][name]
            return Dims(a if a == b else -1 for a, b in zip(lo, hi))
        return Dims(t[3])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if profile_index != 0 or name not in self.header["profile"]:
            raise RuntimeError(f"no profile {profile_index} for input {name}")
        return [Dims(s) for s in self.header["profile"][name]]

    def create_execution_context(self) -> IExecutionContext:
        if self._session is None:
            self._session = _session(self._onnx)
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self.executions = 0
        self.streams: list[int] = []

    def set_input_shape(self, name: str, shape: Any) -> bool:
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return False
        shape = tuple(int(v) for v in shape)
        lo, _, hi = self.engine.header["profile"][name]
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False  # "Supplied binding dimension ... exceeds min ~ max range" in the real log
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        mode = self.engine.get_tensor_mode(name)
        if mode == TensorIOMode.INPUT:
            return Dims(self._shapes.get(name, self.engine.get_tensor_shape(name)))
        if mode == TensorIOMode.NONE:
            return Dims(())
        batch = next(iter(self._shapes.values()), (-1,))[0] if self._shapes else -1
        return Dims(batch if d == -1 else d for d in self.engine.get_tensor_shape(name))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE or not int(memory):
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Run on the CPU, reading the inputs from and writing the outputs to the addresses given."""
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == TensorIOMode.INPUT]
        if any(n not in self._shapes for n in inputs) or any(n not in self._addresses for n in names):
            return False
        feeds = {n: _read(self._addresses[n], list(self._shapes[n]), self.engine.get_tensor_dtype(n)) for n in inputs}
        outputs = [n for n in names if n not in inputs]
        for name, value in zip(outputs, self.engine._session.run(outputs, feeds)):
            want = tuple(self.get_tensor_shape(name))
            value = np.ascontiguousarray(value, dtype=_NP[self.engine.get_tensor_dtype(name)])
            if value.shape != want:
                return False
            ctypes.memmove(self._addresses[name], value.ctypes.data, value.nbytes)
        self.executions += 1
        self.streams.append(int(stream_handle))
        return True
