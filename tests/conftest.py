"""Shared fixtures."""

from __future__ import annotations

import importlib
import sys

import pytest

from mimzoo.registry import reset_registry


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models on a shared 2-core machine run faster and steadier so
    (with two, every small op can wait on a thread another process has descheduled). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_encoder():
    """The tiny ViT (mae-vit-test) at a fixed random init, shared by a module's tests."""
    import torch

    import mimzoo

    torch.manual_seed(0)
    return mimzoo.load("mae-vit-test", pretrained=False)


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
