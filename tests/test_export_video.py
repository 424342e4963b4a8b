"""Video exports: ONNX with a 5-D dynamic-batch input verified on real clips, INT8 through the same gate,
the TensorRT path (CPU double) with a profile over ``[N, C, T, H, W]``, and the torch-free runtime.

Every export here is the tiny random-init ``videomae-vit-test`` (4 frames of 32 px, 32 tokens), verified
against PyTorch on moving-digits clips (the default ``--data digits`` becomes moving-digits for a video
encoder) with the precision's usual tolerances.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mimzoo
from export_helpers import trt_double
from mimzoo.errors import MimzooError

pytestmark = pytest.mark.usefixtures("one_thread")
NAME = "videomae-vit-test"
OPTS = dict(pretrained=False, images=24)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return mimzoo.export(NAME, tmp_path_factory.mktemp("v") / "fp32", tokens=True, **OPTS)


def test_onnx_takes_5d_dynamic_batch_clips_and_verifies_on_real_clips(fp32):
    import onnx

    meta = json.loads((fp32.path / "export.json").read_text())
    assert meta["inputs"]["pixel_values"] == ["N", 3, 4, 32, 32]
    assert meta["outputs"]["tokens"] == ["N", 32, 32]  # L = T/t * H/p * W/p = 2 * 4 * 4
    assert meta["preprocess"]["num_frames"] == 4 and meta["preprocess"]["frame_stride"] == 1
    ver = meta["verification"]
    assert ver["passed"] and ver["data"].startswith("moving-digits") and ver["images"] == 24
    graph_in = onnx.load(str(fp32.path / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in graph_in][1:] == [3, 4, 32, 32] and graph_in[0].dim_param
    assert mimzoo.verify(fp32.path, images=24)["passed"]  # rebuilt from provenance, same clips


def test_torch_free_runtime_embeds_clips_like_the_encoder(fp32):
    from mimzoo.exporters.pipeline import rebuild_encoder
    from mimzoo.exporters.runtime import load_export

    enc = rebuild_encoder(json.loads((fp32.path / "export.json").read_text()))  # the exported weights, by digest
    clips = [(np.random.default_rng(i).random((9, 40, 48, 3)) * 255).astype(np.uint8) for i in range(3)]
    got = load_export(fp32.path).embed(clips)
    with torch.no_grad():
        want = enc.embed_images(clips).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_int8_goes_through_the_same_gate(tmp_path):
    res = mimzoo.export(NAME, tmp_path / "int8", precision="int8", calibration_images=16, **OPTS)
    meta = json.loads((res.path / "export.json").read_text())
    assert meta["precision"] == "int8" and meta["verification"]["passed"]
    assert meta["inputs"]["pixel_values"] == ["N", 3, 4, 32, 32]
    assert meta["verification"]["data"].startswith("moving-digits")


def test_image_data_is_refused_for_a_video_model_in_one_line(tmp_path):
    with pytest.raises(MimzooError) as e:
        mimzoo.export(NAME, tmp_path / "x", data=str(tmp_path), **OPTS)
    assert "\n" not in str(e.value) and "moving-digits" in str(e.value)


def test_tensorrt_profile_covers_the_clip_shape(tmp_path):
    """The TensorRT path through the CPU double: the profile is [N, C, T, H, W] and the engine verifies."""
    with trt_double() as trt:
        res = mimzoo.export(NAME, tmp_path / "trt", format="tensorrt", max_batch=8, opt_batch=4,
                            cache_dir=tmp_path / "cache", **OPTS)
        header = trt.describe_engine((res.path / "model.engine").read_bytes())
        assert header["profile"]["pixel_values"] == [[1, 3, 4, 32, 32], [4, 3, 4, 32, 32], [8, 3, 4, 32, 32]]
        assert json.loads((res.path / "export.json").read_text())["verification"]["passed"]


def test_openvino_export_of_clips_verifies(tmp_path):
    pytest.importorskip("openvino")
    res = mimzoo.export(NAME, tmp_path / "ov", format="openvino", **OPTS)
    meta = json.loads((res.path / "export.json").read_text())
    assert meta["verification"]["passed"] and meta["inputs"]["pixel_values"] == ["N", 3, 4, 32, 32]


def test_bench_runs_on_a_video_model(tmp_path):
    from click.testing import CliRunner

    from mimzoo.cli.main import cli

    r = CliRunner().invoke(cli, ["bench", NAME, "--random-init", "--backends", "torch,onnxruntime", "--batch-sizes", "2",
                                 "--iters", "1", "--warmup", "1", "--no-memory", "--images", "8", "--threads", "1",
                                 "--workdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.output.splitlines() if line.startswith(("torch ", "onnxruntime "))]
    assert [(row[0], row[1]) for row in rows] == [("torch", "2"), ("onnxruntime", "2")]
    assert all("ok" in row for row in rows)
    heading = next(line for line in r.output.splitlines() if line.startswith("backend"))
    assert "clips/s" in heading and "img/s" not in heading  # a clip is not an image: the column says what it counts


def test_openvino_int8_calibrates_on_train_clips_when_verification_takes_every_test_clip(tmp_path):
    """moving-digits has 300 test clips and INT8 verification uses 300: calibration must come from elsewhere
    (the train split), not be starved into a refusal that asks for image data."""
    pytest.importorskip("nncf")
    res = mimzoo.export(NAME, tmp_path / "ov-int8", format="openvino", precision="int8", pretrained=False,
                        calibration_images=16)
    meta = json.loads((res.path / "export.json").read_text())
    assert meta["verification"]["passed"] and meta["verification"]["images"] == 300
    assert meta["int8"]["calibration_images"] == 16


def test_static_onnx_int8_on_clips_is_calibrated_on_the_train_split(tmp_path):
    from mimzoo.exporters.images import load_clips

    res = mimzoo.export(NAME, tmp_path / "int8s", precision="int8", int8_method="static", pretrained=False,
                        calibration_images=16)
    meta = json.loads((res.path / "export.json").read_text())
    assert meta["verification"]["passed"] and meta["int8"]["calibration_images"] == 16
    verify, calib = load_clips("moving-digits", 300), load_clips("moving-digits", 16, split="train")
    seen = {np.asarray(c[0]).tobytes() for c in verify.images}
    assert not any(np.asarray(c[0]).tobytes() in seen for c in calib.images)  # no calibration clip is verified on


@pytest.fixture(scope="module")
def dyn_t(tmp_path_factory):
    """An export whose T axis is dynamic: clips of 2 or 4 frames (tubelet 2)."""
    return mimzoo.export(NAME, tmp_path_factory.mktemp("dt") / "dyn", tokens=True, min_frames=2, **OPTS)


def test_min_frames_makes_t_dynamic_and_the_export_matches_pytorch_at_both_ends(dyn_t):
    import onnxruntime as ort

    from mimzoo.exporters.pipeline import rebuild_encoder

    meta = json.loads((dyn_t.path / "export.json").read_text())
    assert meta["frames"] == {"min": 2, "max": 4, "multiple": 2} and meta["verification"]["passed"]
    sess = ort.InferenceSession(str(dyn_t.path / "model.onnx"))
    assert isinstance(sess.get_inputs()[0].shape[2], str)  # symbolic: any multiple of 2 up to 4
    enc = rebuild_encoder(meta)
    for frames, tokens in ((2, 16), (4, 32)):
        x = torch.randn(3, 3, frames, 32, 32, generator=torch.Generator().manual_seed(frames))
        emb, tok = sess.run(None, {"pixel_values": x.numpy()})
        with torch.inference_mode():
            ref = enc(x).numpy()
        assert tok.shape == (3, tokens, 32)
        np.testing.assert_allclose(emb, ref, atol=1e-4)
    assert mimzoo.verify(dyn_t.path)["passed"]  # the folder's own frames entry: verified again at T = 2 and 4


@pytest.mark.parametrize("model, frames, says", [
    ("mae-vit-test", 2, "is for video encoders"),
    (NAME, 3, "pass one of 2, 4"),
    (NAME, 6, "pass one of 2, 4"),
])
def test_min_frames_that_do_not_fit_are_refused_in_one_line(tmp_path, model, frames, says):
    with pytest.raises(MimzooError) as e:
        mimzoo.export(model, tmp_path / "x", min_frames=frames, **OPTS)
    assert "\n" not in str(e.value) and says in str(e.value)
    assert not (tmp_path / "x").exists()


def test_int8_and_openvino_take_a_dynamic_t(tmp_path):
    res = mimzoo.export(NAME, tmp_path / "int8", precision="int8", min_frames=2, calibration_images=16, **OPTS)
    assert json.loads((res.path / "export.json").read_text())["verification"]["passed"]
    if pytest.importorskip("openvino"):
        ov = mimzoo.export(NAME, tmp_path / "ov", format="openvino", min_frames=2, **OPTS)
        assert json.loads((ov.path / "export.json").read_text())["frames"]["min"] == 2


def test_tensorrt_profile_spans_min_frames_to_t(tmp_path):
    with trt_double() as trt:  # the double refuses shapes outside the profile, as TensorRT does
        res = mimzoo.export(NAME, tmp_path / "trt", format="tensorrt", max_batch=8, opt_batch=4, min_frames=2,
                            cache_dir=tmp_path / "cache", **OPTS)
        header = trt.describe_engine((res.path / "model.engine").read_bytes())
        assert header["profile"]["pixel_values"] == [[1, 3, 2, 32, 32], [4, 3, 4, 32, 32], [8, 3, 4, 32, 32]]
        assert json.loads((res.path / "export.json").read_text())["verification"]["passed"]
