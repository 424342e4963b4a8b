"""benchmarks/gpu_acceptance.sh on a machine without CUDA: it finishes quickly, exits 0 and writes a
report whose GPU steps say "skipped: no CUDA GPU" (the real GPU run is not a CI test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_acceptance.sh"


def _table(report: str) -> dict[str, list[str]]:
    rows = [ln for ln in report.splitlines() if ln.startswith("| ") and not ln.startswith("| step |")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in ln.strip("|").split(" | ")] for ln in rows)}


def _run(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MIMZOO_"))}
    env["MIMZOO_PYTHON"] = sys.executable
    env["MIMZOO_CACHE"] = str(tmp_path / "cache")
    return subprocess.run(["bash", str(SCRIPT), "--workdir", str(tmp_path / "work"), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=tmp_path)


def test_without_cuda_every_gpu_step_is_skipped_and_the_run_passes(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: run the script itself")
    out = tmp_path / "gpu_report.md"
    p = _run(tmp_path, "--out", str(out), timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    report = out.read_text()
    assert report.startswith("# GPU acceptance: no-cuda")
    rows = _table(report)
    assert rows["mimzoo doctor"][-1] == "ran" and "no CUDA GPU" in rows["mimzoo doctor"][0]
    gpu_steps = [name for name in rows if name != "mimzoo doctor"]
    wanted = ("export --trt fp32", "export --trt fp16", "export --trt int8", "torch eager fp32", "torch compile fp16",
              "torch compile bf16", "onnxruntime (CUDA provider)", "tensorrt fp16", "pretrain mae fp16",
              "pretrain mae bf16", "eval mae-vit-digits k-NN")
    for want in wanted:
        assert any(want in name for name in gpu_steps), (want, gpu_steps)
    for name in gpu_steps:
        assert rows[name][-1] == "skipped: no CUDA GPU", (name, rows[name])
    assert not list(out.parent.glob(".*.tmp-*")), "the report is written through a temp file + rename"


def test_a_step_that_fails_makes_the_exit_code_1(tmp_path: Path) -> None:
    """An unknown model makes doctor pass but every step that runs fail; --device cpu lets them run."""
    out = tmp_path / "report.md"
    p = _run(tmp_path, "--out", str(out), "--device", "cpu", "--model", "no-such-model", "--budget", "25",
             timeout=90)
    assert p.returncode == 1, p.stdout + p.stderr
    rows = _table(out.read_text())
    assert rows["mimzoo doctor"][-1] == "ran"
    failed = {n: r[-1] for n, r in rows.items() if r[-1].startswith("failed")}
    assert failed and all("no-such-model" in s or "unknown model" in s or "time budget" in s
                          for s in failed.values()), failed
    assert rows["export --trt fp32 + verify (no-such-model, random init)"][-1].startswith("skipped: tensorrt")


def _driver():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_acceptance
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return gpu_acceptance


def test_device_names_are_sanitised() -> None:
    sanitise = _driver().sanitise
    assert sanitise("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert sanitise("../../etc/passwd") == "etc-passwd"


def test_a_missing_package_is_a_skip_that_names_it() -> None:
    """A GPU machine without network may lack e.g. scikit-learn: those steps say so instead of failing."""
    driver = _driver()
    assert driver.Acceptance.needs_modules(None, {"json": "json"}) is None
    reason = driver.Acceptance.needs_modules(None, {"no_such_module_e12": "no-such-dist"})
    assert reason.startswith("python packages missing: no-such-dist") and "MIMZOO_WHEELS" in reason
