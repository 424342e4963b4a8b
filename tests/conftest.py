"""Shared fixtures, and a hermetic environment for every test.

huggingface_hub reads HF_HUB_OFFLINE, HF_ENDPOINT, HF_HOME and its timeouts once, at import, so the
settings a user exported in the shell (HF_HUB_OFFLINE=1 is common on clusters; HF_TOKEN, proxies,
MIMZOO_CACHE) are removed here, when pytest loads this file, before any test imports the client; the
autouse fixture `hermetic_env` puts the same baseline back before each test. The baseline: caches in a
temporary folder of this session, any traffic to a host other than this machine sent to a closed port
(it fails at once instead of reaching, or waiting for, the internet), telemetry off.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile

import pytest

_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_SESSION_HOME = tempfile.mkdtemp(prefix="mimzoo-tests-")
atexit.register(shutil.rmtree, _SESSION_HOME, True)
BASELINE = {
    "HF_HOME": os.path.join(_SESSION_HOME, "hf"),
    "MIMZOO_CACHE": os.path.join(_SESSION_HOME, "mimzoo"),
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def _inherited() -> list[str]:
    """The variables of the shell that change what mimzoo or huggingface_hub do."""
    return [k for k in os.environ if k.startswith(("HF_", "MIMZOO_", "HUGGINGFACE_")) or k.upper() in _PROXIES]


for _key in _inherited():
    del os.environ[_key]
os.environ.update(BASELINE)
os.environ.update({k.lower(): v for k, v in BASELINE.items() if k in _PROXIES})

from mimzoo.registry import reset_registry  # noqa: E402 - after the environment is clean


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch):
    """Each test starts from the baseline, whatever an earlier test or the shell set."""
    for key in _inherited():
        monkeypatch.delenv(key)
    for key, value in BASELINE.items():
        monkeypatch.setenv(key, value)
        if key in _PROXIES:
            monkeypatch.setenv(key.lower(), value)

# the repository root, so the fault trials' shared runner imports as `tests.faults.trial` in every test file
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))


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
