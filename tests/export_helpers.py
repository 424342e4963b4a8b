"""Shared by the export tests: tiny exports made once per test session and copied per test."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import torch

import mimzoo

DOUBLE = Path(__file__).resolve().parent / "trt_double"  # the CPU TensorRT test double (its README says what it is)
_CACHE: dict[tuple, Path] = {}
_ROOT = Path(tempfile.mkdtemp(prefix="mimzoo-export-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


def tiny_encoder(seed: int = 0) -> Any:
    """The tiny test ViT with the random weights `mimzoo.export("mae-vit-test", pretrained=False, seed=seed)` uses."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mimzoo.load("mae-vit-test", pretrained=False)


def tiny_export(dest: Path, name: str = "export", **options: Any) -> tuple[Path, Any]:
    """A verified export of mae-vit-test (random init, seed 0) copied to dest/name, and its encoder.

    The export itself is made once per set of options and test session (exports take seconds).
    """
    options = {"images": 64, **options}
    key = tuple(sorted(options.items()))
    if key not in _CACHE:
        out = _ROOT / f"e{len(_CACHE)}"
        mimzoo.export("mae-vit-test", out, pretrained=False, seed=0, **options)
        _CACHE[key] = out
    folder = Path(shutil.copytree(_CACHE[key], Path(dest) / name))
    return folder, tiny_encoder(0)


@contextlib.contextmanager
def trt_double() -> Iterator[Any]:
    """`import tensorrt` gets the CPU double, here and in child interpreters (PYTHONPATH); undone afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(DOUBLE))
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(DOUBLE), os.environ.get("PYTHONPATH")) if p))
        mp.delenv("TRT_DOUBLE_VERSION", raising=False)
        sys.modules.pop("tensorrt", None)
        try:
            import tensorrt

            assert tensorrt.HOST_MEMORY_DOUBLE
            yield tensorrt
        finally:
            sys.modules.pop("tensorrt", None)
