"""The whole TensorRT path, end to end on the CPU, against the TensorRT-10 API double (tests/trt_double).

`export --trt` (fp32, fp16, int8), `verify`, the EngineRunner, `bench --backends tensorrt` and the CLI
all execute here, in every CI run: only what truly needs a GPU (kernels, reduced precision, streams,
timings) is left to tests/test_export_tensorrt.py's GPU tests. The double computes in fp32, so these
tests check the order of steps, flags, profiles, caches and errors, not fp16/int8 accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mimzoo
from export_helpers import trt_double
from mimzoo.exporters.tensorrt import SUPPORTED_TRT_RANGE, onnx_sha256

pytestmark = pytest.mark.usefixtures("one_thread")
OPTS = dict(pretrained=False, images=32, max_batch=8, opt_batch=4, calibration_images=16)


@pytest.fixture(scope="module")
def trt(tmp_path_factory):
    """`import tensorrt` gets the double, here and in child interpreters (PYTHONPATH); undone afterwards."""
    with trt_double() as tensorrt:
        assert tensorrt.__version__.startswith("10.")
        yield tensorrt


@pytest.fixture(scope="module")
def engines(trt, tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    return {p: mimzoo.export("mae-vit-test", root / p, format="tensorrt", precision=p, cache_dir=root / "cache", **OPTS).path
            for p in ("fp32", "fp16", "int8")}


def _header(trt, folder: Path) -> dict:
    return trt.describe_engine((folder / "model.engine").read_bytes())


def test_engines_record_the_final_onnx_and_verify(trt, engines):
    """Issue 12 item 1: the metadata embedded after the build must not make the engine's source hash stale."""
    from mimzoo.exporters.trt_runner import EngineRunner

    for precision, folder in engines.items():
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["engine.json", "export.json", "model.engine", "model.onnx"]
        meta = json.loads((folder / "engine.json").read_text())
        assert meta["precision"] == precision and meta["source_onnx_sha256"] == onnx_sha256(folder / "model.onnx")
        assert mimzoo.verify(folder, images=32)["passed"]
        runner = EngineRunner(folder / "model.engine", onnx_path=folder / "model.onnx")
        x = np.random.default_rng(0).standard_normal((11, 3, 32, 32)).astype(np.float32)  # split 8 + 3
        from mimzoo.exporters.runtime import OnnxModel

        want = OnnxModel(folder / "model.onnx").run(x)["embedding"]
        np.testing.assert_allclose(runner.run(x)["embedding"], want, rtol=1e-5, atol=1e-5)


def test_flags_profile_and_pinned_layers(trt, engines):
    """Item 4: TF32 (on by default in TensorRT) is cleared for fp32; fp16/int8 pin LayerNorm/softmax to FP32."""
    fp32, fp16, int8 = (_header(trt, engines[p]) for p in ("fp32", "fp16", "int8"))
    assert "TF32" not in fp32["flags"] and "FP16" not in fp32["flags"] and fp32["fp32_pinned_layers"] == []
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS"} <= set(fp16["flags"]) and "INT8" not in fp16["flags"]
    assert {"INT8", "FP16"} <= set(int8["flags"])
    assert "NORMALIZATION" in fp16["fp32_pinned_layers"]
    assert fp16["profile"]["pixel_values"] == [[1, 3, 32, 32], [4, 3, 32, 32], [8, 3, 32, 32]]
    assert fp16["memory_pools"] == {"WORKSPACE": 4096 << 20}
    assert int8["calibration"]["source"] == "batches" and int8["calibration"]["batches"] == 4  # 16 images / 4


def test_int8_calibration_cache_is_per_model(trt, tmp_path):
    """Item 5: a second model of the same architecture, calibrated on the same images, must not reuse the
    first one's INT8 scales from the shared cache."""
    from mimzoo.api.export import _source
    from mimzoo.exporters.pipeline import VerifyData, run_export
    from mimzoo.exporters.spec import ExportSpec

    cache = tmp_path / "cache"
    spec = ExportSpec(format="tensorrt", precision="int8", max_batch=8, opt_batch=4)
    data = VerifyData(images=32, calibration_images=16, seed=0)  # the same image draw for every model

    def export(init_seed: int, name: str) -> dict:
        src = _source("mae-vit-test", pretrained=False, weights=None, seed=init_seed, img_size=None)
        return _header(trt, run_export(src, tmp_path / name, spec, data=data, cache_dir=cache).path)["calibration"]

    assert export(0, "a")["source"] == "batches"
    assert export(1, "b")["source"] == "batches"  # other weights: calibrated afresh, not the first model's table
    assert len(list(cache.glob("calibration-*.cache"))) == 2
    assert export(0, "c")["source"] == "cache"  # same weights and images: the table is reused


def test_batch_outside_the_profile_is_one_clear_error(trt, engines):
    """Item 6: set_input_shape's False (outside the profile) is an error naming the profile and the fix."""
    from mimzoo.exporters.trt_runner import EngineRunner, EngineShapeError

    runner = EngineRunner(engines["fp16"] / "model.engine")
    with pytest.raises(EngineShapeError, match=r"batch 9 is outside the engine's profile \(batch 1 to 8\); "
                                               r"re-export with `mimzoo export MODEL --trt --max-batch 9`"):
        runner.run_torch(torch.zeros(9, 3, 32, 32))
    assert runner.context.executions == 0
    out = runner.run_torch(torch.zeros(8, 3, 32, 32))
    assert out["embedding"].shape == (8, runner.engine.get_tensor_shape("embedding")[-1])
    assert runner.context.streams == [0]  # the host double has no stream; on a GPU the runner's own


def test_bench_runs_the_engine_and_says_how_it_timed(trt, engines):
    from mimzoo.api.export import bench

    rows = bench("mae-vit-test", pretrained=False, backends=["torch", "tensorrt"], batches=[1, 4], iters=2,
                        warmup=1, threads=1, exports={"tensorrt": str(engines["int8"])}, memory=False)
    trt_rows = [r for r in rows if r["backend"] == "tensorrt"]
    assert [r["status"] for r in trt_rows] == ["ok", "ok"], trt_rows
    assert all("int8 engine" in r["note"] and "timed: input and outputs in host memory" in r["note"] for r in trt_rows)
    assert all("timed: input and outputs CPU tensors" in r["note"] for r in rows if r["backend"] == "torch")


def test_cli_export_verify_bench(trt, tmp_path):
    from helpers import run_cli

    env_cache = {"MIMZOO_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "fp16"
    r = run_cli("export", "mae-vit-test", "--random-init", "--trt", "--fp16", "-o", str(out), "--images", "32",
                "--max-batch", "8", "--opt-batch", "4", env=env_cache)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out} (tensorrt fp16, verified)" in r.stdout and "building a TensorRT 10." in r.stderr
    r = run_cli("verify", str(out), "--images", "32", env=env_cache)
    assert r.returncode == 0 and "verification passed" in r.stdout, r.stderr
    r = run_cli("bench", "mae-vit-test", "--random-init", "--backends", "tensorrt", "--batch-sizes", "2,16", "--iters", "2",
                "--warmup", "1", "--no-memory", "--export", f"tensorrt={out}", "--json", env=env_cache)
    assert r.returncode == 0, r.stderr
    ok, too_big = json.loads(r.stdout)
    assert ok["status"] == "ok" and ok["throughput"] > 0
    assert too_big["status"] == "failed" and "--max-batch 16" in too_big["note"]


def test_gpu_extra_pins_what_is_tested():
    """Item 2: the extra resolves to TensorRT 10 for torch's CUDA major, and onnxruntime-gpu is not mixed in."""
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == [SUPPORTED_TRT_RANGE] == ["tensorrt-cu13>=10.13.2,<11"]
    assert torch.__version__.startswith("2.14")  # a CUDA 13 build family: the cu13 wheels match


def test_the_double_follows_tensorrt_10_not_mimzoo(trt, engines):
    """The double refuses what TensorRT 10 refuses, so the tests above mean something."""
    with pytest.raises(AttributeError, match="no attribute 'BuilderFlags' \\(not part of TensorRT 10"):
        trt.BuilderFlags  # noqa: B018  (not a TensorRT name)
    assert trt.IBuilderConfig().get_flag(trt.BuilderFlag.TF32)  # on by default, as documented
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine((engines["fp32"] / "model.engine").read_bytes())
    ctx = engine.create_execution_context()
    assert ctx.set_input_shape("pixel_values", (9, 3, 32, 32)) is False and ctx.set_input_shape("nope", (1,)) is False
    assert ctx.set_input_shape("pixel_values", (2, 3, 32, 32)) is True
    assert ctx.execute_async_v3(0) is False  # no addresses set
    assert [list(s) for s in engine.get_tensor_profile_shape("pixel_values", 0)] == [[1, 3, 32, 32], [4, 3, 32, 32], [8, 3, 32, 32]]
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(b"garbage") is None
