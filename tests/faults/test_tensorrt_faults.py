"""Fault trials of the TensorRT path, run against the TensorRT-10 API double (tests/trt_double) on the CPU.

A TensorRT it cannot drive (11.x), foreign or tampered engines, and a kill mid-build: each ends in one
`error:` line naming the fix, exit 1, no traceback, and nothing half-written or removed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import onnx
import pytest

from tests.faults.trial import expect_error, kill_when, listing, run, snapshot

DOUBLE = Path(__file__).resolve().parents[1] / "trt_double"
ENV = {"PYTHONPATH": str(DOUBLE)}
TRT11 = {**ENV, "TRT_DOUBLE_VERSION": "11.0.0.114"}
FIX = "pip install 'tensorrt-cu13>=10.13.2,<11'"
EXPORT = ("export", "mae-vit-test", "--random-init", "--trt", "--images", "32", "--max-batch", "8", "--opt-batch", "4")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One fp16 engine folder built with the double (TensorRT 10), copied by each trial that needs one."""
    root = tmp_path_factory.mktemp("trt-faults")
    out = run(*EXPORT, "--fp16", "-o", root / "fp16", env=ENV, cache=root / "cache")
    assert out.rc == 0, out.stderr
    return root / "fp16"


@pytest.mark.parametrize("precision", ["--fp16", "--int8"])
def test_tensorrt_11_export_is_refused_before_building(tmp_path, precision):
    out = run(*EXPORT, precision, "-o", tmp_path / "out", env=TRT11, cache=tmp_path / "cache")
    expect_error(out, says=("TensorRT 11.0.0.114 is not supported", "TensorRT 10.x"), fix=(FIX,))
    assert not any(p.startswith("out") or ".out" in p for p in listing(tmp_path)) and "building" not in out.stderr


def test_tensorrt_11_cannot_run_a_10_engine(tmp_path, engine):
    folder = Path(shutil.copytree(engine, tmp_path / "e"))
    before = snapshot(folder)
    out = run("verify", folder, "--images", "32", env=TRT11, cache=tmp_path / "cache")
    expect_error(out, says=("cannot run", "TensorRT 11.0.0.114 is not supported"), fix=(FIX,))
    assert snapshot(folder) == before


def test_engine_of_another_gpu_is_refused(tmp_path, engine):
    folder = Path(shutil.copytree(engine, tmp_path / "e"))
    meta = json.loads((folder / "engine.json").read_text())
    (folder / "engine.json").write_text(json.dumps({**meta, "compute_capability": "8.9", "gpu": "NVIDIA L4"}))
    before = snapshot(folder)
    out = run("verify", folder, "--images", "32", env=ENV, cache=tmp_path / "cache")
    expect_error(out, says=("built for compute capability 8.9 (NVIDIA L4)",), fix=("mimzoo export MODEL --trt",))
    assert snapshot(folder) == before


def test_engine_beside_another_onnx_is_refused(tmp_path, engine):
    folder = Path(shutil.copytree(engine, tmp_path / "e"))
    model = onnx.load(str(folder / "model.onnx"))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    init.raw_data = bytes(len(init.raw_data))  # other weights, same graph and metadata
    onnx.save(model, str(folder / "model.onnx"))
    before = snapshot(folder)
    out = run("verify", folder, "--images", "32", env=ENV, cache=tmp_path / "cache")
    # refused by the folder's own integrity check or by the engine's source hash, whichever comes first
    line = expect_error(out, says=("model.onnx",), fix=("export",))
    assert "differs from the model verified" in line or "built from another model.onnx" in line
    assert snapshot(folder) == before


def test_kill_while_building_the_engine_leaves_no_output(tmp_path):
    out = kill_when([*EXPORT, "--fp16", "-o", tmp_path / "out"], marker="building a TensorRT", env=ENV,
                    cache=tmp_path / "cache")
    assert out.rc == -9 and "building a TensorRT" in out.stdout
    assert not (tmp_path / "out").exists()  # only a verified export ever takes the output name


def test_double_pretending_11_lacks_what_11_removed(tmp_path):
    code = ("import tensorrt as trt\n"
            "for get in (lambda: trt.BuilderFlag.FP16, lambda: trt.BuilderFlag.INT8, lambda: trt.IInt8EntropyCalibrator2):\n"
            "    try:\n        get(); print('present')\n    except AttributeError as e:\n        print('missing', e)\n"
            "print(trt.BuilderFlag.TF32.name)\n")
    import subprocess

    from tests.faults.trial import cli_env

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(TRT11))
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and [line.split()[0] for line in lines[:3]] == ["missing"] * 3, r.stdout + r.stderr
    assert "removed in TensorRT 11" in lines[2] and lines[3] == "TF32"
