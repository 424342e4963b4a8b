"""Task models exported (`mimzoo export MODEL --head DIR`): the same predictions as PyTorch on real
images, through ONNX, OpenVINO, the TensorRT double and the torch-free runtime; the INT8 gate on the
top-1 drop; `verify` re-checks a task export; `publish` ships it with a card naming the task and labels."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import run_py

import mimzoo
from mimzoo.cli.main import cli
from mimzoo.exporters.images import load_images
from mimzoo.exporters.metadata import CorruptExportError
from mimzoo.exporters.runtime import ExportRuntimeError, load_export
from mimzoo.exporters.spec import VerificationError
from mimzoo.tasks import load_head, make_spec, save_head

pytestmark = pytest.mark.usefixtures("one_thread")
DOUBLE = Path(__file__).resolve().parent / "trt_double"
DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A linear head trained by `mimzoo.evaluate(..., save_head=)` on digits, and its verified ONNX export."""
    root = tmp_path_factory.mktemp("task")
    rec, = mimzoo.evaluate("mae-vit-test", "linear", "digits", pretrained=False, cache_dir=root / "cache",
                           save_head=root / "head")
    res = mimzoo.export("mae-vit-test", root / "onnx", pretrained=False, head=root / "head")
    torch.manual_seed(0)
    encoder = mimzoo.load("mae-vit-test", pretrained=False).eval()
    return {"root": root, "head": root / "head", "onnx": res.path, "meta": res.meta, "record": rec,
            "task": load_head(root / "head", encoder), "encoder": encoder}


def test_onnx_gives_the_same_predictions_as_pytorch(made):
    meta, v = made["meta"], made["meta"]["verification"]
    assert meta["outputs"] == {"logits": ["N", 10]}
    assert meta["task"]["head"]["labels"] == DIGITS and meta["task"]["head"]["kind"] == "linear"
    assert v["passed"] and v["top1_agreement"] == 1.0 and v["top1_drop"] == 0.0 and v["images"] == 128
    assert v["knn_top1_drop"] is None and v["tolerances"] == {"max_rel": 1e-3, "cosine_min": 0.99999}
    # independently of the report: the runtime's predictions on real digits are PyTorch's
    images = list(load_images("digits", 200, seed=5).images)
    got = load_export(made["onnx"]).predict(images)["logits"]
    task = made["task"]
    with torch.inference_mode():
        want = task(torch.stack([task.transform(im) for im in images]))[0].numpy()
    assert (got.argmax(1) == want.argmax(1)).mean() == 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * np.abs(want).max())
    assert sorted(p.name for p in (made["onnx"] / "head").iterdir()) == ["head.json", "head.safetensors"]


def test_verify_rechecks_a_task_export_and_its_head(made, tmp_path):
    rep = mimzoo.verify(made["onnx"])
    assert rep["passed"] and rep["top1_agreement"] == 1.0 and rep["top1_torch"] == rep["top1_export"]
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(made["onnx"], copy)
    (copy / "head" / "head.safetensors").write_bytes((copy / "head" / "head.safetensors").read_bytes()[:-4] + b"\0" * 4)
    with pytest.raises(CorruptExportError, match="head.safetensors is missing or differs from the head"):
        mimzoo.verify(copy)


def test_runtime_predicts_without_torch(made):
    r = run_py(f"""
        import sys, json
        from PIL import Image
        from mimzoo.exporters.runtime import load_export, ExportRuntimeError
        m = load_export({str(made['onnx'])!r})
        out = m.predict([Image.new("RGB", (40, 30), (i * 40, 9, 0)) for i in range(3)])
        try:
            m.embed([Image.new("RGB", (8, 8))])
            refused = ""
        except ExportRuntimeError as e:
            refused = str(e)
        heavy = sorted(k for k in ("torch", "torchvision", "timm") if k in sys.modules)
        print(json.dumps({{"shape": list(out["logits"].shape), "task": m.task, "labels": m.labels, "heavy": heavy,
                           "refused": refused}}))
    """)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["shape"] == [3, 10] and got["task"] == "classification" and got["labels"] == DIGITS
    assert got["heavy"] == [] and "call predict(images)" in got["refused"]


def test_export_refuses_another_backbone_in_one_line(made):
    r = CliRunner().invoke(cli, ["export", "mae-vit-test", "--random-init", "--seed", "1", "--head", str(made["head"]),
                                 "-o", str(made["root"] / "wrong")])
    assert r.exit_code != 0 and "trained on mae-vit-test" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (made["root"] / "wrong").exists()
    r = CliRunner().invoke(cli, ["export", "mae-vit-test", "--random-init", "--head", str(made["head"]), "--tokens"])
    assert r.exit_code != 0 and "drop --tokens or --head" in r.output


def test_int8_gate_is_the_top1_drop(made, tmp_path):
    """INT8 is gated on the top-1 points lost on held-out labelled digits, not on a k-NN drop."""
    opts = dict(pretrained=False, head=made["head"], precision="int8", int8_method="dynamic", images=128)
    with pytest.raises(VerificationError) as e:
        mimzoo.export("mae-vit-test", tmp_path / "int8", tolerances={"cosine_min": None}, **opts)  # top1_drop <= 0.5
    assert "top1_drop" in str(e.value) and "> 0.5" in str(e.value) and "knn" not in str(e.value) and not (tmp_path / "int8").exists()
    res = mimzoo.export("mae-vit-test", tmp_path / "int8", tolerances={"cosine_min": None, "top1_drop": 100.0}, **opts)
    v = res.verification
    assert v["passed"] and v["top1_drop"] == v["top1_torch"] - v["top1_export"] and v["knn_top1_drop"] is None
    assert 0.0 <= v["top1_agreement"] <= 1.0


def test_openvino_task_export(made, tmp_path):
    pytest.importorskip("openvino")
    res = mimzoo.export("mae-vit-test", tmp_path / "ov", pretrained=False, head=made["head"], format="openvino",
                        images=64)
    assert res.verification["top1_agreement"] == 1.0
    out = load_export(res.path).predict(list(load_images("digits", 4).images))
    assert out["logits"].shape == (4, 10)
    assert mimzoo.verify(res.path, images=64)["passed"]


@pytest.fixture(scope="module")
def seg_head(made):
    """A seg-linear head (mimzoo.eval.seg's, built from its spec) with BN statistics of real scene tokens."""
    from mimzoo.data.segmentation import open_segmentation
    from mimzoo.eval.seg import build_task_head

    enc = made["encoder"]
    source = open_segmentation("digit-scenes")
    spec = make_spec(enc, "seg-linear", source.classes, dataset="digit-scenes", metrics={"miou": 0.0},
                     head_args={"seg_head": "linear"})
    torch.manual_seed(0)
    head = build_task_head(spec)
    task = load_head(made["head"], enc)  # for its transform of the backbone only
    x = torch.stack([task.transform(source.train.image(i)) for i in range(16)])
    with torch.no_grad():
        tokens = enc.forward_features(x)[:, 1:].transpose(1, 2).reshape(16, enc.num_features, 8, 8)
        head.train()(tokens)  # BN running statistics from real tokens
    save_head(made["root"] / "seg", head.eval(), spec)
    return made["root"] / "seg"


def test_segmentation_export_gives_the_same_mask(seg_head, tmp_path):
    res = mimzoo.export("mae-vit-test", tmp_path / "seg", pretrained=False, head=seg_head, images=16)
    v, meta = res.verification, res.meta
    assert meta["outputs"] == {"logits": ["N", 11, 32, 32], "mask": ["N", 32, 32]}
    assert meta["task"]["mask_dtype"] == "int64" and meta["preprocess"]["crop_mode"] == "squash"
    assert v["data"] == "digit-scenes" and v["pixel_agreement"] == 1.0 and v["miou_torch"] == v["miou_export"]
    out = load_export(res.path).predict([Image_of_scene(i) for i in range(2)])
    assert out["mask"].dtype == np.int64 and out["mask"].shape == (2, 32, 32)
    assert np.array_equal(out["mask"], out["logits"].argmax(1))


def Image_of_scene(i):
    from mimzoo.data.segmentation import open_segmentation

    return open_segmentation("digit-scenes").eval.image(i)


@pytest.fixture
def trt_double(monkeypatch):
    monkeypatch.syspath_prepend(str(DOUBLE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(DOUBLE), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.delenv("TRT_DOUBLE_VERSION", raising=False)
    sys.modules.pop("tensorrt", None)
    import tensorrt

    assert tensorrt.HOST_MEMORY_DOUBLE
    yield
    sys.modules.pop("tensorrt", None)


def test_tensorrt_segmentation_engine_gives_an_int32_mask(seg_head, trt_double, tmp_path):
    res = mimzoo.export("mae-vit-test", tmp_path / "trt", pretrained=False, head=seg_head, format="tensorrt",
                        images=16, max_batch=8, opt_batch=4, cache_dir=tmp_path / "cache")
    assert res.meta["task"]["mask_dtype"] == "int32" and res.verification["pixel_agreement"] == 1.0
    from mimzoo.exporters.trt_runner import EngineRunner

    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    out = EngineRunner(res.path / "model.engine", onnx_path=res.path / "model.onnx").run(x)
    assert out["mask"].dtype == np.int32 and np.array_equal(out["mask"], out["logits"].argmax(1))
    assert mimzoo.verify(res.path, images=16)["passed"]


def test_publish_ships_the_task_model_with_its_labels(made, tmp_path):
    made["encoder"].save_pretrained(str(tmp_path / "model"))  # the random-init backbone, as a model folder
    r = CliRunner().invoke(cli, ["publish", str(tmp_path / "model"), "--with-export", str(made["onnx"]),
                                 "--repo", "acme/digits-linear", "--dry-run", "-o", str(tmp_path / "repo")])
    assert r.exit_code == 0, r.output
    folder = tmp_path / "repo" / "task-linear" / "onnx" / "fp32"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["export.json", "head.json", "head.safetensors",
                                                                       "model.onnx"]
    card = (tmp_path / "repo" / "README.md").read_text()
    assert "## Task models" in card and "classification (linear head) trained on digits" in card
    assert "10 labels: `0`, `1`" in card and f"top1 {made['record'].metrics['top1']:.2f}" in card
    assert "predict(" in card
    assert mimzoo.verify(folder)["passed"]  # as a deployer downloads it: no marker, digests match


def test_task_gates_replace_the_knn_ones():
    from mimzoo.exporters.spec import Tolerances

    int8 = Tolerances.for_precision("int8")
    assert int8.for_task("classification").to_dict() == {"cosine_min": 0.99, "top1_drop": 0.5}
    assert int8.for_task("segmentation").to_dict() == {"cosine_min": 0.99, "miou_drop": 0.5}
    assert Tolerances.for_precision("fp32").for_task("segmentation").to_dict() == {"max_rel": 1e-3, "cosine_min": 0.99999}
    assert int8.for_task(None) == int8 and int8.for_task("classification").needs_labels
    assert int8.for_task("segmentation").failures({"cosine_min": 1.0, "miou_drop": 0.7}) == ["miou_drop 0.7 > 0.5"]
