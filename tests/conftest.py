"""Shared fixtures."""

from __future__ import annotations

import importlib
import sys

import pytest

from mimzoo.registry import reset_registry


@pytest.fixture
def fresh_registry():
    """Forget the cached registry, and any plugin modules a test installed, before and after it."""
    before = set(sys.modules)
    importlib.invalidate_caches()
    reset_registry()
    yield
    for name in set(sys.modules) - before:
        if not name.startswith(("torch", "timm", "transformers", "mimzoo", "numpy", "PIL", "safetensors")):
            del sys.modules[name]
    importlib.invalidate_caches()
    reset_registry()
