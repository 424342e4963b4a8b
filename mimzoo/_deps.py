"""Lazy access to heavy or optional dependencies.

`import mimzoo`, `mimzoo --help` and `mimzoo list` must not import torch, timm or onnx; code
that needs them calls :func:`require` inside the function that uses them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

from .errors import MissingDependencyError

# distribution to install for a module, and the mimzoo extra that brings it (None: core)
_INSTALL_HINTS: dict[str, tuple[str, str | None]] = {
    "torch": ("torch", None),
    "timm": ("timm", None),
    "safetensors": ("safetensors", None),
    "huggingface_hub": ("huggingface_hub", None),
    "onnx": ("onnx", None),
    "onnxruntime": ("onnxruntime", None),
    "tensorrt": ("tensorrt", "gpu"),
    "openvino": ("openvino", "openvino"),
    "nncf": ("nncf", "openvino"),
    "transformers": ("transformers", "test"),
}


def is_available(module: str) -> bool:
    """True when `module` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def require(module: str) -> ModuleType:
    """Import `module` or raise an error that says exactly what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        dist, extra = _INSTALL_HINTS.get(module.split(".")[0], (module.split(".")[0], None))
        fix = f"pip install 'mimzoo[{extra}]'" if extra else f"pip install {dist}"
        raise MissingDependencyError(f"{module} is required here but not importable ({e}); {fix}") from e


def version_of(dist: str) -> str | None:
    """Installed version of a distribution, read from metadata (nothing imported)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
