"""TensorRT: every part that needs no GPU, the `--trt` message here, and GPU tests where TensorRT runs.

TensorRT cannot be installed on the build machines (see shared/design/environment.md), so the
builder and runner tests at the bottom skip there, saying why; on a machine with tensorrt and a
CUDA GPU they build real engines of the tiny ViT and verify them against PyTorch.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from export_helpers import tiny_export
from helpers import run_cli

from mimzoo.exporters.spec import ExportError, ExportSpec
from mimzoo.exporters.tensorrt import (
    FP32_LAYER_TYPES,
    CalibrationBatches,
    EngineMismatchError,
    Profile,
    check_compatible,
    engine_cache_key,
    engine_metadata,
    fp32_layer_types,
    onnx_sha256,
    precision_flags,
    profile_for,
    timing_cache_path,
    trtexec_command,
    unavailable_reason,
)

REASON = unavailable_reason()
needs_trt = pytest.mark.skipif(REASON is not None, reason=f"TensorRT GPU test: {REASON} on this machine")


def test_profiles():
    dyn = profile_for(ExportSpec(format="tensorrt", max_batch=32, opt_batch=8), (3, 224, 224))
    assert dyn == Profile((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    fixed = profile_for(ExportSpec(format="tensorrt", batch=4), (3, 32, 32))
    assert fixed.min == fixed.opt == fixed.max == (4, 3, 32, 32)
    assert fixed.trtexec_args() == ["--minShapes=pixel_values:4x3x32x32", "--optShapes=pixel_values:4x3x32x32",
                                    "--maxShapes=pixel_values:4x3x32x32"]
    with pytest.raises(ExportError, match="opt_batch 64 must lie in 1..max_batch"):
        ExportSpec(format="tensorrt", max_batch=32, opt_batch=64)


def test_precision_flags_and_fp32_layers():
    assert precision_flags("fp32") == ()
    assert precision_flags("fp16") == ("FP16", "OBEY_PRECISION_CONSTRAINTS")
    assert precision_flags("int8") == ("INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS")
    assert fp32_layer_types("fp32") == () and fp32_layer_types("fp16") == FP32_LAYER_TYPES == ("NORMALIZATION", "SOFTMAX")
    with pytest.raises(ExportError, match="unknown precision 'bf16'"):
        precision_flags("bf16")


def test_cache_keys_change_with_every_input(tmp_path):
    base = dict(onnx_sha="a" * 64, precision="fp16", profile=Profile((1, 3), (8, 3), (32, 3)), trt_version="10.9.0",
                compute_capability="9.0", calibration=None)
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base) and len(key) == 16
    changes = [{"onnx_sha": "b" * 64}, {"precision": "int8"}, {"profile": Profile((1, 3), (4, 3), (32, 3))},
               {"trt_version": "10.10.0"}, {"compute_capability": "8.9"}, {"calibration": "abc"}]
    assert len({engine_cache_key(**{**base, **c}) for c in changes} | {key}) == len(changes) + 1
    assert timing_cache_path(tmp_path, "10.9.0", "9.0") == tmp_path / "timing-trt10.9.0-sm90.cache"


def test_engine_metadata_and_refusals():
    prof = Profile((1, 3, 32, 32), (8, 3, 32, 32), (64, 3, 32, 32))
    meta = engine_metadata(trt_version="10.9.0", compute_capability="9.0", gpu="NVIDIA H100", precision="fp16",
                           onnx_sha="c" * 64, profile=prof, outputs=["embedding"], cache_key="k")
    assert meta["fp32_layer_types"] == ["NORMALIZATION", "SOFTMAX"] and meta["profile"]["opt"] == [8, 3, 32, 32]
    assert json.loads(json.dumps(meta)) == meta  # plain JSON beside the engine
    check_compatible(meta, trt_version="10.9.0", compute_capability="9.0", onnx_sha="c" * 64)
    with pytest.raises(EngineMismatchError, match="built with TensorRT 10.9.0, this machine has 10.11.0; rebuild it here"):
        check_compatible(meta, trt_version="10.11.0", compute_capability="9.0")
    with pytest.raises(EngineMismatchError, match=r"built for compute capability 9.0 \(NVIDIA H100\), this GPU is 8.9"):
        check_compatible(meta, trt_version="10.9.0", compute_capability="8.9")
    with pytest.raises(EngineMismatchError, match="built from another model.onnx"):
        check_compatible(meta, trt_version="10.9.0", compute_capability="9.0", onnx_sha="d" * 64)
    with pytest.raises(EngineMismatchError, match="does not say which TensorRT and GPU built the engine"):
        check_compatible({}, trt_version="10.9.0", compute_capability="9.0")


def test_calibration_batches():
    images = np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)
    cal = CalibrationBatches(images, 4)
    batches = list(cal)
    assert len(cal) == 2 and [b.shape for b in batches] == [(4, 3, 2, 2)] * 2  # the partial batch is dropped
    assert all(b.flags["C_CONTIGUOUS"] and b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), images[:8])
    assert cal.fingerprint() == CalibrationBatches(images.copy(), 4).fingerprint()
    assert cal.fingerprint() != CalibrationBatches(images + 1, 4).fingerprint()
    assert cal.fingerprint() != CalibrationBatches(images, 2).fingerprint()
    with pytest.raises(ExportError, match="at least one batch of 8 images, got 5; pass more with --calibration-images"):
        CalibrationBatches(images[:5], 8)


def test_onnx_hash_ignores_metadata_but_not_weights(tmp_path):
    folder, _ = tiny_export(tmp_path)
    sha = onnx_sha256(folder / "model.onnx")
    model = onnx.load(str(folder / "model.onnx"))
    model.metadata_props.add(key="note", value="published")  # what publishing rewrites
    onnx.save(model, str(folder / "model.onnx"))
    assert onnx_sha256(folder / "model.onnx") == sha
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    onnx.save(model, str(folder / "model.onnx"))
    assert onnx_sha256(folder / "model.onnx") != sha


def test_onnx_hash_ignores_what_embed_in_onnx_writes(tmp_path):
    """Issue 12 item 1: the report is embedded after the engine is built; the engine's source hash must hold."""
    from mimzoo.exporters.metadata import embed_in_onnx

    folder, _ = tiny_export(tmp_path)
    path = folder / "model.onnx"
    model = onnx.load(str(path))
    model.producer_name, model.producer_version = "pytorch", "2.14.1"  # as torch.onnx.export leaves it
    del model.metadata_props[:]
    onnx.save(model, str(path))
    sha = onnx_sha256(path)
    embed_in_onnx(path, {"preprocess": {"input_size": [3, 32, 32]}, "note": "report"})
    assert onnx.load(str(path)).producer_name == "mimzoo"  # embed_in_onnx did rewrite the header
    assert onnx_sha256(path) == sha


def test_calibration_cache_is_keyed_by_weights_and_images(tmp_path):
    from mimzoo.exporters.tensorrt import calibration_cache_path

    a = calibration_cache_path(tmp_path, onnx_sha="a" * 64, calibration="f" * 16)
    assert a.parent == tmp_path and a != calibration_cache_path(tmp_path, onnx_sha="b" * 64, calibration="f" * 16)
    assert a != calibration_cache_path(tmp_path, onnx_sha="a" * 64, calibration="e" * 16)


def test_tensorrt_11_is_refused_with_the_supported_range():
    from mimzoo.exporters.tensorrt import SUPPORTED_TRT_RANGE, version_problem

    assert version_problem("10.13.3.9") is None
    line = version_problem("11.0.0.114")
    assert line == ("TensorRT 11.0.0.114 is not supported (mimzoo drives TensorRT 10.x); "
                    f"pip install '{SUPPORTED_TRT_RANGE}'") and SUPPORTED_TRT_RANGE == "tensorrt-cu13>=10.13.2,<11"


def test_trtexec_equivalent():
    cmd = trtexec_command("mae-vit-b", ExportSpec(format="tensorrt", precision="fp16"), (3, 224, 224))
    assert cmd == ("mimzoo export mae-vit-b -o mae-vit-b-onnx && trtexec --onnx=mae-vit-b-onnx/model.onnx "
                   "--saveEngine=mae-vit-b-onnx/model.engine --fp16 --minShapes=pixel_values:1x3x224x224 "
                   "--optShapes=pixel_values:8x3x224x224 --maxShapes=pixel_values:64x3x224x224 "
                   "--timingCacheFile=mae-vit-b-onnx/timing.cache")
    fixed = trtexec_command("runs/my-mae", ExportSpec(format="tensorrt", precision="int8", batch=2), (3, 32, 32))
    assert fixed.startswith("mimzoo export runs/my-mae -o my-mae-onnx --batch 2 && trtexec") and "--int8 --fp16" in fixed


@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are present: the command would build an engine")
def test_trt_without_tensorrt_is_one_line_naming_the_fix(tmp_path):
    r = run_cli("export", "mae-vit-b", "--trt", "-o", str(tmp_path / "out"))
    assert r.returncode != 0 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "pip install 'mimzoo[gpu]'" in lines[0] and "trtexec --onnx=mae-vit-b-onnx/model.onnx" in lines[0]
    assert "--minShapes=pixel_values:1x3x224x224" in lines[0] and REASON in lines[0]
    assert not (tmp_path / "out").exists()
    alias = run_cli("export", "mae-vit-test", "--format", "trt", "--fp16", "--random-init")
    assert alias.returncode != 0 and "--fp16 --minShapes=pixel_values:1x3x32x32" in alias.stderr


@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are present")
def test_engine_runner_without_tensorrt_says_what_to_install(tmp_path):
    from mimzoo.exporters.tensorrt import TensorRTUnavailableError
    from mimzoo.exporters.trt_runner import EngineRunner

    with pytest.raises(TensorRTUnavailableError, match=r"pip install 'mimzoo\[gpu\]'"):
        EngineRunner(tmp_path / "model.engine")


# ---- GPU: run wherever tensorrt and CUDA exist -------------------------------------------------


@needs_trt
@pytest.mark.parametrize("precision,gate", [("fp32", "max_abs"), ("fp16", "cosine_min"), ("int8", "cosine_min")])
def test_build_and_verify_engines(tmp_path, precision, gate):
    import mimzoo

    r = mimzoo.export("mae-vit-test", tmp_path / precision, pretrained=False, format="tensorrt", precision=precision,
                      images=64, max_batch=16, opt_batch=4, cache_dir=tmp_path / "cache",
                      tolerances={"max_abs": 1e-3} if precision == "fp32" else None)
    names = sorted(p.name for p in r.path.iterdir() if not p.name.startswith("."))  # not the output marker
    assert names == ["engine.json", "export.json", "model.engine", "model.onnx"]
    engine = json.loads((r.path / "engine.json").read_text())
    assert engine["precision"] == precision and engine["profile"]["max"][0] == 16
    assert engine["source_onnx_sha256"] == onnx_sha256(r.path / "model.onnx")
    assert r.meta["format"] == "tensorrt" and r.verification["passed"] and gate in r.verification["tolerances"]
    assert list((tmp_path / "cache").glob("timing-*.cache"))  # the timing cache was written for the next build
    assert mimzoo.verify(r.path, images=32)["passed"]


@needs_trt
def test_engine_of_another_gpu_is_refused(tmp_path):
    import mimzoo
    from mimzoo.exporters.trt_runner import EngineRunner

    r = mimzoo.export("mae-vit-test", tmp_path / "e", pretrained=False, format="tensorrt", precision="fp16",
                      images=16, cache_dir=tmp_path / "cache")
    foreign = shutil.copytree(r.path, tmp_path / "foreign")
    meta = json.loads((foreign / "engine.json").read_text())
    (foreign / "engine.json").write_text(json.dumps({**meta, "compute_capability": "1.0", "gpu": "elsewhere"}))
    with pytest.raises(EngineMismatchError, match=r"built for compute capability 1.0 \(elsewhere\)"):
        EngineRunner(foreign / "model.engine")
