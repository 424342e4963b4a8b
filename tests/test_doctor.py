"""`mimzoo doctor`: the real command, real onnxruntime sessions, and fake installs of what is broken.

What this machine lacks (a CUDA GPU, onnxruntime-gpu, TensorRT) is asserted as such; the CUDA-less
assertions skip on a machine that has a GPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared trial runner imports tests.helpers

from mimzoo.api import doctor  # noqa: E402
from tests.faults.trial import expect_error, run  # noqa: E402
from tests.helpers import make_distribution  # noqa: E402


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def _rows(out) -> dict[str, dict]:
    assert out.rc == 0, out.stderr
    return {r["area"]: r for r in json.loads(out.stdout)["checks"]}


def test_doctor_table_has_every_area_and_fixes(tmp_path: Path) -> None:
    out = run("doctor", cache=tmp_path, timeout=120)
    assert out.rc == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["check", "status", "found", "how", "to", "fix"]
    for area in ("python", "torch", "onnxruntime CPUExecutionProvider", "tensorrt", "openvino",
                 "disk: HF cache", "disk: MIMZOO_CACHE", "disk: TensorRT cache"):
        assert any(line.startswith(area + " ") for line in lines), (area, out.stdout)
    assert "ready here:" in out.stdout


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> tuple[Path, dict]:
    """One real `mimzoo doctor --json` run (caches under a temp folder), shared by the tests that read it."""
    cache = tmp_path_factory.mktemp("doctor")
    out = run("doctor", "--json", cache=cache, timeout=120)
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    return cache, json.loads(out.stdout)


def test_doctor_json_cpu_provider_runs_in_a_real_session(full_report) -> None:
    tmp_path, data = full_report
    rows = {r["area"]: r for r in data["checks"]}
    cpu = rows["onnxruntime CPUExecutionProvider"]
    assert cpu["status"] == "ok" and "a session runs on it" in cpu["found"]
    # the cache rows follow MIMZOO_CACHE / HF_HOME
    assert str(tmp_path / "mimzoo") in rows["disk: MIMZOO_CACHE"]["found"]
    assert str(tmp_path / "mimzoo" / "tensorrt") in rows["disk: TensorRT cache"]["found"]
    assert str(tmp_path / "hf") in rows["disk: HF cache"]["found"]


def test_a_cache_under_a_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    out = run("doctor", "--json", env={"MIMZOO_CACHE": str(tmp_path / "afile" / "cache")}, timeout=120)
    rows = _rows(out)
    for area in ("disk: MIMZOO_CACHE", "disk: TensorRT cache"):
        assert rows[area]["status"] == "problem" and "is a file" in rows[area]["found"], rows[area]
        assert rows[area]["fix"] == "set MIMZOO_CACHE to a folder"
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_doctor_says_cuda_is_missing_here(full_report) -> None:
    if _cuda_visible():
        pytest.skip("this machine has a CUDA GPU")
    data = full_report[1]
    rows = {r["area"]: r for r in data["checks"]}
    assert rows["cuda"]["status"] == "missing" and "nvidia" in rows["cuda"]["fix"].lower()
    ort_cuda = rows["onnxruntime CUDAExecutionProvider"]
    assert ort_cuda["status"] != "ok" and "onnxruntime-gpu" in ort_cuda["fix"]
    assert data["backends"]["torch-cuda"]["ready"] is False
    assert data["backends"]["onnxruntime-cuda"]["ready"] is False
    assert data["backends"]["torch"]["ready"] is True


def test_backend_onnxruntime_exits_0(tmp_path: Path) -> None:
    out = run("doctor", "--backend", "onnxruntime", cache=tmp_path, timeout=120)
    assert out.rc == 0, out.stderr
    assert out.stdout.startswith("onnxruntime: ready") and "CPUExecutionProvider" in out.stdout


def test_backend_tensorrt_exits_1_naming_the_fix(tmp_path: Path) -> None:
    from mimzoo.exporters.tensorrt import SUPPORTED_TRT_RANGE, unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are here")
    out = run("doctor", "--backend", "tensorrt", cache=tmp_path, timeout=120)
    expect_error(out, rc=1, says=("tensorrt cannot run here",), fix=("fix:",))
    assert "pip install" in out.stderr or "CUDA" in out.stderr or "GPU" in out.stderr
    if not doctor.is_available("tensorrt"):
        assert SUPPORTED_TRT_RANGE in out.stderr


def test_backend_torch_cuda_exits_1_without_a_gpu(tmp_path: Path) -> None:
    if _cuda_visible():
        pytest.skip("this machine has a CUDA GPU")
    out = run("doctor", "--backend", "torch-cuda", cache=tmp_path, timeout=120)
    expect_error(out, rc=1, says=("torch-cuda cannot run here", "no CUDA GPU"), fix=("NVIDIA GPU",))


def test_unknown_backend_is_a_usage_error(tmp_path: Path) -> None:
    out = run("doctor", "--backend", "cuda-magic", cache=tmp_path, timeout=60)
    assert out.rc == 2 and "Traceback" not in out.stderr and "tensorrt" in out.stderr


def test_onnxruntime_and_onnxruntime_gpu_together_is_a_problem_with_the_fix(tmp_path: Path) -> None:
    site = make_distribution(tmp_path / "site", "onnxruntime-gpu", "1.20.0", {}, {})
    rows = _rows(run("doctor", "--json", env={"PYTHONPATH": str(site)}, cache=tmp_path, timeout=120))
    head = rows["onnxruntime"]
    assert head["status"] == "problem" and "onnxruntime-gpu 1.20.0" in head["found"]
    assert head["fix"].startswith("pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")


def test_tensorrt_stub_that_does_not_import(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_distribution(site, "tensorrt-cu13", "10.13.3", {}, {})
    (site / "tensorrt").mkdir()
    (site / "tensorrt" / "__init__.py").write_text("raise RuntimeError('the real wheel is on pypi.nvidia.com')\n")
    env = {"PYTHONPATH": str(site)}
    rows = _rows(run("doctor", "--json", env=env, cache=tmp_path, timeout=120))
    assert rows["tensorrt"]["status"] == "problem" and "does not import" in rows["tensorrt"]["found"]
    assert rows["tensorrt"]["fix"].startswith("pip uninstall -y tensorrt-cu13 && pip install")
    out = run("doctor", "--backend", "tensorrt", env=env, cache=tmp_path, timeout=120)
    expect_error(out, rc=1, says=("does not import",), fix=("pip uninstall -y tensorrt-cu13",))


def test_tensorrt_11_is_refused_with_the_supported_range(tmp_path: Path) -> None:
    from mimzoo.exporters.tensorrt import SUPPORTED_TRT_RANGE

    site = tmp_path / "site"
    (site / "tensorrt").mkdir(parents=True)
    (site / "tensorrt" / "__init__.py").write_text("__version__ = '11.0.0.1'\n")
    out = run("doctor", "--backend", "tensorrt", env={"PYTHONPATH": str(site)}, cache=tmp_path, timeout=120)
    expect_error(out, rc=1, says=("TensorRT 11.0.0.1", "not supported"), fix=(SUPPORTED_TRT_RANGE,))


def test_a_provider_that_falls_back_to_cpu_is_a_problem() -> None:
    """get_available_providers() lists CUDA, but the session silently uses the CPU (missing cuDNN)."""
    import numpy as np

    class Session:
        def __init__(self, model, options, providers):
            assert isinstance(model, bytes) and providers == ["CUDAExecutionProvider"]

        def run(self, names, feeds):
            return [np.maximum(feeds["x"], 0)]

        def get_providers(self):
            return ["CPUExecutionProvider"]

    import onnxruntime

    fake = SimpleNamespace(InferenceSession=Session, SessionOptions=onnxruntime.SessionOptions)
    row = doctor._provider_row(fake, "CUDAExecutionProvider")
    assert row.status == "problem" and "falls back to CPUExecutionProvider" in row.found
    assert "cudnn" in row.fix.lower() and "preload_dlls" in row.fix


def test_tiny_model_is_valid_onnx() -> None:
    import onnx

    onnx.checker.check_model(onnx.load_from_string(doctor.tiny_onnx_model()))


def test_help_does_not_import_torch_with_doctor_listed() -> None:
    from tests.helpers import run_py

    code = ("import sys\nfrom click.testing import CliRunner\nfrom mimzoo.cli.main import cli\n"
            "r = CliRunner().invoke(cli, ['--help'])\nassert 'doctor' in r.output, r.output\n"
            "CliRunner().invoke(cli, ['doctor', '--help'])\n"
            "print([m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules])")
    out = run_py(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_gpu_rows_show_compute_capability_and_flag_a_gpu_torch_has_no_kernels_for(monkeypatch) -> None:
    """CUDA faked: an H100 (9.0) is fine; a V100 (7.0) with a torch built for sm_75+ is a problem with the fix."""
    import torch

    gpus = [SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0, total_memory=80 * 2**30),
            SimpleNamespace(name="Tesla V100-SXM2-16GB", major=7, minor=0, total_memory=16 * 2**30)]
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: gpus[i])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    rows = {r.area: r for r in doctor.check_torch()}
    assert rows["cuda"].ok and "2 GPU(s)" in rows["cuda"].found
    assert rows["gpu 0"].ok and rows["gpu 0"].found.startswith("NVIDIA H100 80GB HBM3, compute capability 9.0, 80 GiB")
    v100 = rows["gpu 1"]
    assert v100.status == "problem" and "no kernels for it" in v100.found and "torch build" in v100.fix
    verdict = doctor.backend_verdict("torch-cuda", list(rows.values()))
    assert not verdict.ready and verdict.reason.startswith("gpu 1: Tesla V100")
    assert doctor.backend_verdict("torch-cuda", [r for a, r in rows.items() if a != "gpu 1"]).ready


@pytest.mark.parametrize("cc, arches, runs", [
    ((8, 6), ["sm_80"], True),  # same major, newer minor: the sm_80 cubin runs
    ((7, 0), ["sm_75", "sm_80"], False),  # older than every cubin
    ((12, 0), ["sm_90", "compute_90"], True),  # PTX JIT-compiles forward
    ((10, 0), ["sm_90a"], False),  # arch-specific kernels run on 9.0 only
])
def test_kernels_for(cc, arches, runs) -> None:
    assert doctor.kernels_for(*cc, arches) is runs
