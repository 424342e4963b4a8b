"""`mimzoo doctor`: what can run here, checked for real, and how to fix what cannot.

Each check returns :class:`Check` rows (area, status ok/missing/problem, what was found, the fix).
Nothing is trusted from a listing alone: onnxruntime's providers are checked by running a tiny
ONNX model (built in memory) in a session per provider and reading ``session.get_providers()``,
because a session silently falls back to the CPU when a provider's libraries do not load.

Heavy imports (torch, onnx, onnxruntime, tensorrt) happen inside the checks, and a backend
verdict (:func:`backend_verdict`) runs only the checks that backend needs.

>>> verdict = backend_verdict("onnxruntime")  # doctest: +SKIP
>>> verdict.ready
True
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._deps import is_available, version_of
from ..errors import MimzooError

OK, MISSING, PROBLEM = "ok", "missing", "problem"
BACKENDS = ("torch", "torch-cuda", "onnxruntime", "onnxruntime-cuda", "tensorrt", "openvino")
# onnxruntime builds that each ship the `onnxruntime` module: two in one environment overwrite each other
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
                     "onnxruntime-qnn", "onnxruntime-rocm")
ORT_CUDA_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu "
                "(on a machine with an NVIDIA GPU, CUDA 12/13 and cuDNN 9)")
# onnxruntime-gpu is installed but its CUDA provider does not load: usually CUDA/cuDNN libraries it cannot find
ORT_CUDA_FIX_LIBS = ("make CUDA and cuDNN 9 loadable for onnxruntime-gpu: import torch first or call "
                     "onnxruntime.preload_dlls() (the nvidia-* wheels torch brings), or install them system-wide")
MIN_FREE_GIB = 2.0  # a ViT-B export (ONNX + engine + caches) takes about 1 GiB
CUDA_FIX = ("run on a machine with an NVIDIA GPU and its driver (nvidia-smi lists it), and check "
            "CUDA_VISIBLE_DEVICES")


class BackendUnavailableError(MimzooError):
    """`mimzoo doctor --backend X` found that X cannot run here."""


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    area: str  # what was checked: "torch", "gpu 0", "onnxruntime CUDAExecutionProvider", "disk: HF cache", ...
    status: str  # ok | missing | problem
    found: str  # what is there (versions, names, free space), or what went wrong
    fix: str = ""  # the command or step that fixes it ("" when ok)

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class Verdict:
    """Whether one backend can run here, and why not."""

    backend: str  # one of BACKENDS
    ready: bool  # True when every check it needs is ok
    reason: str  # what is ready, or the first failing check with its fix


# --- python and torch -------------------------------------------------------------------------


def check_python() -> list[Check]:
    return [Check("python", OK, f"{platform.python_version()} ({sys.executable})")]


def check_torch() -> list[Check]:
    """torch, its CUDA build, and the GPUs it sees with their compute capability."""
    if not is_available("torch"):
        return [Check("torch", MISSING, "not installed", "pip install torch")]
    try:
        import torch
    except Exception as e:  # a broken install raises anything (missing shared libraries, ...)
        return [Check("torch", PROBLEM, f"does not import: {_first_line(e)}", "pip install --force-reinstall torch")]
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    rows = [Check("torch", OK, f"{torch.__version__} ({build})")]
    return rows + _cuda_rows(torch)


def _cuda_rows(torch: Any) -> list[Check]:
    if not torch.version.cuda:
        return [Check("cuda", MISSING, "torch is a CPU-only build",
                      "pip install torch --index-url https://download.pytorch.org/whl/cu130 (a CUDA build)")]
    with warnings.catch_warnings(record=True) as caught:  # an old driver is a warning, not an exception
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if not available:
        why = f"torch sees no CUDA GPU ({_first_line(caught[0].message)})" if caught else "torch sees no CUDA GPU"
        return [Check("cuda", MISSING, why, CUDA_FIX)]
    rows = [Check("cuda", OK, f"{torch.cuda.device_count()} GPU(s) visible to torch (built for CUDA {torch.version.cuda})")]
    arches = list(torch.cuda.get_arch_list())
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        found = (f"{props.name}, compute capability {props.major}.{props.minor}, "
                 f"{props.total_memory / 2**30:.0f} GiB")
        if kernels_for(props.major, props.minor, arches):
            rows.append(Check(f"gpu {i}", OK, found))
        else:
            rows.append(Check(f"gpu {i}", PROBLEM, f"{found}; torch {torch.__version__} has no kernels for it "
                                                   f"(built for {' '.join(arches) or 'nothing'})",
                              "install a torch build whose CUDA version still supports this GPU "
                              "(https://pytorch.org/get-started/previous-versions)"))
    return rows


def kernels_for(major: int, minor: int, arches: list[str]) -> bool:
    """Whether a torch built for `arches` (get_arch_list) runs on compute capability major.minor: a cubin
    of the same major and a lower or equal minor, or PTX (compute_XY) of an equal or older architecture.

    >>> kernels_for(8, 6, ["sm_80", "sm_90"]), kernels_for(7, 0, ["sm_75", "sm_80"])
    (True, False)
    """
    for arch in arches:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)([af]?)", arch)
        if not m:
            continue
        kind, a_major, a_minor, suffix = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if suffix == "a":  # architecture-specific kernels: that exact GPU only
            if (a_major, a_minor) == (major, minor):
                return True
        elif kind == "sm" and a_major == major and a_minor <= minor:
            return True
        elif kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


# --- onnxruntime ------------------------------------------------------------------------------


def check_onnxruntime() -> list[Check]:
    """Which onnxruntime builds are installed, and which providers a real session actually uses."""
    dists = [(d, version_of(d)) for d in ORT_DISTRIBUTIONS if version_of(d)]
    if not dists:
        return [Check("onnxruntime", MISSING, "not installed", "pip install onnxruntime")]
    found = ", ".join(f"{d} {v}" for d, v in dists)
    if len(dists) > 1:
        keep = "onnxruntime-gpu" if any(d == "onnxruntime-gpu" for d, _ in dists) else dists[0][0]
        head = Check("onnxruntime", PROBLEM, f"{found} are installed together and overwrite each other's files",
                     f"pip uninstall -y {' '.join(d for d, _ in dists)} && pip install {keep}")
    else:
        head = Check("onnxruntime", OK, found)
    try:
        import onnxruntime as ort
    except Exception as e:
        return [head, Check("onnxruntime import", PROBLEM, f"does not import: {_first_line(e)}",
                            f"pip install --force-reinstall {dists[0][0]}")]
    rows = [head] + [_provider_row(ort, p) for p in ort.get_available_providers()]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        rows.append(Check("onnxruntime CUDAExecutionProvider", MISSING, f"not in this build ({found})", ORT_CUDA_FIX))
    return rows


def _provider_row(ort: Any, provider: str) -> Check:
    """Run the tiny model with `provider` alone and see whether the session really kept it."""
    area = f"onnxruntime {provider}"
    with _captured_stderr() as logged:
        try:
            used, failure = _run_tiny_model(ort, provider), ""
        except Exception as e:
            used, failure = [], _first_line(e)
    if provider in used:
        return Check(area, OK, f"a session runs on it ({', '.join(used)})")
    why = failure or _last_line(logged) or "no reason given"
    fix = ORT_CUDA_FIX_LIBS if provider == "CUDAExecutionProvider" else \
        "install the libraries this provider needs (see onnxruntime's execution-provider docs)"
    if provider == "TensorrtExecutionProvider":
        from ..exporters.tensorrt import SUPPORTED_TRT_RANGE

        fix = f"pip install '{SUPPORTED_TRT_RANGE}' beside onnxruntime-gpu (mimzoo's own TensorRT path does not need it)"
    return Check(area, PROBLEM, f"listed, but a session falls back to {', '.join(used) or 'nothing'}: {why[:200]}", fix)


def _run_tiny_model(ort: Any, provider: str) -> list[str]:
    """Providers a session on a one-node ONNX model (y = relu(x)) actually uses; checks its output too."""
    import numpy as np

    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: the reason for a fallback
    session = ort.InferenceSession(tiny_onnx_model(), so, providers=[provider])
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    if not np.array_equal(y, np.maximum(x, 0)):
        raise RuntimeError(f"the tiny model gave a wrong answer on {provider}")
    return list(session.get_providers())


def tiny_onnx_model() -> bytes:
    """A serialized one-node ONNX model (Relu on a [1, 4] float tensor), built with onnx.helper."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "mimzoo-doctor",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="mimzoo-doctor")
    model.ir_version = 8  # old enough for every onnxruntime mimzoo supports
    return model.SerializeToString()


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture file descriptor 2 (onnxruntime's C++ logger writes there, not to sys.stderr); the
    yielded list holds the captured lines once the block ends."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(ln for ln in sink.read().decode("utf-8", "replace").splitlines() if ln.strip())


def _last_line(lines: list[str]) -> str:
    return lines[-1].strip() if lines else ""


# --- TensorRT and OpenVINO --------------------------------------------------------------------


def check_tensorrt() -> list[Check]:
    """TensorRT installed? importable? a version mimzoo drives?"""
    from ..exporters.tensorrt import SUPPORTED_TRT_RANGE, version_problem

    install = f"pip install '{SUPPORTED_TRT_RANGE}' (needs NVIDIA's package index and an NVIDIA GPU)"
    dists = [d for d in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12") if version_of(d)]
    if not is_available("tensorrt"):
        return [Check("tensorrt", MISSING, "not installed", install)]
    try:
        import tensorrt
    except Exception as e:  # the PyPI stub raises plain exceptions when the real wheel is missing
        found = f"{', '.join(dists) or 'a tensorrt module'} installed, but it does not import: {_first_line(e)}"
        return [Check("tensorrt", PROBLEM, found[:240], f"pip uninstall -y {' '.join(dists) or 'tensorrt'} && {install}")]
    version = str(getattr(tensorrt, "__version__", "?"))
    problem = version_problem(version)
    if problem:
        return [Check("tensorrt", PROBLEM, f"TensorRT {version} imports, but is not supported", problem)]
    return [Check("tensorrt", OK, f"TensorRT {version}")]


def check_openvino() -> list[Check]:
    """OpenVINO (optional): present or not."""
    version = version_of("openvino")
    if not version or not is_available("openvino"):
        return [Check("openvino", MISSING, "not installed (optional: runs the ONNX export on Intel/AMD CPUs)",
                      "pip install openvino")]
    return [Check("openvino", OK, f"openvino {version}")]


# --- disk -------------------------------------------------------------------------------------


def cache_dirs() -> dict[str, Path]:
    """The caches mimzoo writes to, by name."""
    from ..exporters.pipeline_trt import default_cache_dir

    hf = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                  os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"),
        "hub")
    mimzoo = os.environ.get("MIMZOO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mimzoo")
    return {"HF cache": Path(hf).expanduser(), "MIMZOO_CACHE": Path(mimzoo).expanduser(),
            "TensorRT cache": default_cache_dir().expanduser()}


def check_disk() -> list[Check]:
    variables = {"HF cache": "HF_HOME", "MIMZOO_CACHE": "MIMZOO_CACHE", "TensorRT cache": "MIMZOO_CACHE"}
    return [_disk_row(name, path, variables[name]) for name, path in cache_dirs().items()]


def _disk_row(name: str, path: Path, variable: str) -> Check:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free / 2**30
    found = f"{path}: {free:.1f} GiB free"
    if not existing.is_dir():
        return Check(f"disk: {name}", PROBLEM, f"{path} cannot be created: {existing} is a file",
                     f"set {variable} to a folder")
    if not os.access(existing, os.W_OK):
        return Check(f"disk: {name}", PROBLEM, f"{found}, but {existing} is not writable",
                     f"set {variable} to a writable folder")
    if free < MIN_FREE_GIB:
        return Check(f"disk: {name}", PROBLEM, f"{found} (exports need about 1 GiB each)",
                     f"free space there, or set {variable} to a folder on a bigger disk")
    return Check(f"disk: {name}", OK, found)


# --- verdicts ---------------------------------------------------------------------------------

CHECKS: dict[str, Callable[[], list[Check]]] = {
    "python": check_python, "torch": check_torch, "onnxruntime": check_onnxruntime,
    "tensorrt": check_tensorrt, "openvino": check_openvino, "disk": check_disk,
}
# the checks each backend needs, and the rows (by area) that must be ok
NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "torch": (("torch",), ("torch",)),
    "torch-cuda": (("torch",), ("torch", "cuda")),
    "onnxruntime": (("onnxruntime",), ("onnxruntime CPUExecutionProvider",)),
    # torch first, as in the full report and in `mimzoo bench` (torch's import loads its CUDA libraries)
    "onnxruntime-cuda": (("torch", "onnxruntime"), ("cuda", "onnxruntime", "onnxruntime CUDAExecutionProvider")),
    "tensorrt": (("tensorrt", "torch"), ("tensorrt", "torch", "cuda")),
    "openvino": (("openvino",), ("openvino",)),
}


def run_checks(names: tuple[str, ...] = tuple(CHECKS)) -> list[Check]:
    """The rows of the named checks (all by default), in table order."""
    rows: list[Check] = []
    for name in names:
        rows.extend(CHECKS[name]())
    return rows


def backend_verdict(backend: str, rows: list[Check] | None = None) -> Verdict:
    """Whether `backend` can run here (runs only the checks it needs unless `rows` are given).

    Args:
        backend: one of torch, torch-cuda, onnxruntime, onnxruntime-cuda, tensorrt, openvino.
        rows: results of :func:`run_checks` to reuse.
    """
    if backend not in NEEDS:
        raise MimzooError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    checks, areas = NEEDS[backend]
    rows = rows if rows is not None else run_checks(checks)
    by_area = {r.area: r for r in rows}
    if "cuda" in areas:  # and every GPU torch sees must have kernels in this torch build
        areas = (*areas, *(a for a in by_area if a.startswith("gpu ")))
    for area in areas:
        row = by_area.get(area)
        if row is None:  # an earlier row failed (e.g. onnxruntime does not import): that is the reason
            cause = next((r for r in rows if not r.ok and r.area.split()[0] == area.split()[0]), None)
            if cause is None:
                return Verdict(backend, False, f"{area} was not found")
            row = cause
        if not row.ok:
            return Verdict(backend, False, f"{area}: {row.found}; fix: {row.fix}")
    return Verdict(backend, True, "; ".join(by_area[a].found for a in areas))


def require_backend(backend: str) -> Verdict:
    """The verdict for `backend`, or :class:`BackendUnavailableError` (one line with the fix)."""
    verdict = backend_verdict(backend)
    if not verdict.ready:
        raise BackendUnavailableError(f"{backend} cannot run here: {verdict.reason}")
    return verdict


def report() -> dict[str, Any]:
    """Every check and every backend's verdict, as plain data (what `mimzoo doctor --json` prints)."""
    rows = run_checks()
    return {"checks": [asdict(r) for r in rows],
            "backends": {b: {"ready": v.ready, "reason": v.reason}
                         for b, v in ((b, backend_verdict(b, rows)) for b in BACKENDS)}}


def _first_line(value: Any) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
