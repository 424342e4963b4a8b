"""ONNX export of the tiny ViT: graph, dynamic batch, metadata, external data, fallback, fp16.

Every export here is verified by the real pipeline (PyTorch vs onnxruntime on random batches and
real digits); the tests then check what lands on disk and that `mimzoo publish`'s reader accepts it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import tiny_encoder, tiny_export

import mimzoo
from mimzoo.encoders.encoder import Encoder
from mimzoo.exporters import onnx as onnx_export
from mimzoo.hub.export_folder import check_against, read_export


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return tiny_export(tmp_path_factory.mktemp("fp32"))


def test_folder_layout_and_report(fp32):
    folder, encoder = fp32
    assert sorted(p.name for p in folder.iterdir()) == [".mimzoo-output.json", "export.json", "model.onnx"]  # weights inline
    meta = json.loads((folder / "export.json").read_text())
    assert meta["mimzoo_export"] == 1 and meta["format"] == "onnx" and meta["precision"] == "fp32"
    assert meta["opset"] == 18 and meta["batch"] == "dynamic"
    assert meta["inputs"] == {"pixel_values": ["N", 3, 32, 32]} and meta["outputs"] == {"embedding": ["N", 32]}
    assert meta["preprocess"] == encoder.preprocess.to_timm()
    prov = meta["provenance"]
    assert prov["model"] == "mae-vit-test" and prov["method"] == "mae" and prov["license"] == "cc-by-nc-4.0"
    assert prov["weights_source"] == "random init" and prov["init_seed"] == 0
    assert prov["mimzoo_version"] == mimzoo.__version__ and prov["torch_version"].startswith("2.")
    v = meta["verification"]
    assert v["passed"] is True and v["max_abs"] <= 1e-4 and v["cosine_min"] > 0.9999
    assert v["tolerances"] == {"max_abs": 1e-4} and v["data"] == "digits" and v["images"] == 64
    assert v["batches"] == 2 + 4 and v["random_batch_sizes"] == [1, 3]
    assert v["knn_top1_agreement"] == 1.0 and v["knn_top1_drop"] == 0.0
    assert meta["exporter"]["exporter"] == "dynamo" and meta["exporter"]["fallback_reason"] is None


def test_graph_names_opset_and_layernorm(fp32):
    folder, encoder = fp32
    model = onnx.load(str(folder / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["pixel_values"] and [o.name for o in model.graph.output] == ["embedding"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    ops = Counter(n.op_type for n in model.graph.node)
    n_ln = sum(isinstance(m, torch.nn.LayerNorm) for m in encoder.modules())
    assert ops["LayerNormalization"] == n_ln == 5  # each LayerNorm one node: TensorRT FP16 needs it
    assert "ReduceMean" not in ops and "Pow" not in ops  # not decomposed
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # the same report as export.json travels inside the model
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["mimzoo_export"]) == json.loads((folder / "export.json").read_text())
    assert json.loads(props["preprocess"])["input_size"] == [3, 32, 32]
    # no path of the exporting machine inside the graph (torch writes stack traces into node metadata)
    assert b"/tests/" not in (folder / "model.onnx").read_bytes() and b".py" not in (folder / "model.onnx").read_bytes()


def test_dynamic_batch_runs_any_batch(fp32):
    folder, encoder = fp32
    session = ort.InferenceSession(str(folder / "model.onnx"))
    for n in (1, 2, 7, 65):  # past the example batch and past the dynamic Dim's usual bounds
        x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))
        got = session.run(["embedding"], {"pixel_values": x.numpy()})[0]
        with torch.inference_mode():
            np.testing.assert_allclose(got, encoder(x).numpy(), atol=1e-4, rtol=0)


def test_publish_reads_and_rechecks_the_export(fp32):
    folder, encoder = fp32
    export = read_export(folder)
    assert export.precision == "fp32" and export.files == ("model.onnx",)
    assert check_against(export, encoder) > 0.9999


def test_opset_17_and_tokens_output(tmp_path):
    folder, encoder = tiny_export(tmp_path, opset=17, tokens=True)
    model = onnx.load(str(folder / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["embedding", "tokens"]
    assert Counter(n.op_type for n in model.graph.node)["LayerNormalization"] == 5
    meta = json.loads((folder / "export.json").read_text())
    assert meta["opset"] == 17 and meta["outputs"] == {"embedding": ["N", 32], "tokens": ["N", 65, 32]}
    x = torch.randn(2, 3, 32, 32)
    emb, tokens = ort.InferenceSession(str(folder / "model.onnx")).run(None, {"pixel_values": x.numpy()})
    with torch.inference_mode():
        np.testing.assert_allclose(tokens, encoder.forward_features(x).numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(emb, encoder(x).numpy(), atol=1e-4, rtol=0)


def test_big_weights_go_to_external_data_that_travels(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 1024)  # the tiny model counts as big
    r = mimzoo.export("mae-vit-test", tmp_path / "ext", pretrained=False, images=16)
    assert sorted(p.name for p in r.path.iterdir()) == [".mimzoo-output.json", "export.json", "model.onnx", "model.onnx.data"]
    assert read_export(r.path).files == ("model.onnx", "model.onnx.data")
    moved = r.path.rename(tmp_path / "moved")  # the pair works from anywhere
    assert mimzoo.verify(moved, images=16)["passed"]


def test_fallback_to_torchscript_when_dynamo_fails(tmp_path, caplog):
    class HostSyncEncoder(Encoder):
        """Reads a tensor value in Python: torch.export cannot trace that, TorchScript tracing can."""

        def forward(self, x):
            if float(x.abs().mean()) >= 0:  # always true; a data-dependent branch for the tracer
                return super().forward(x)
            return -super().forward(x)

    base = tiny_encoder(0)
    encoder = HostSyncEncoder(base.model, base.preprocess, base.info)
    with caplog.at_level(logging.WARNING, logger="mimzoo.exporters.onnx"):
        r = mimzoo.export(encoder, tmp_path / "ts", images=16)
    assert r.meta["exporter"]["exporter"] == "torchscript"
    assert "torch.export" in r.meta["exporter"]["fallback_reason"] or "Error" in r.meta["exporter"]["fallback_reason"]
    assert any("falling back to the TorchScript exporter" in rec.message for rec in caplog.records)
    assert r.verification["passed"] and r.meta["exporter"]["layer_norm_nodes"] == 5
    session = ort.InferenceSession(str(r.path / "model.onnx"))
    assert session.run(None, {"pixel_values": np.zeros((5, 3, 32, 32), np.float32)})[0].shape == (5, 32)


def test_fp16_export_passes_its_gate(tmp_path):
    folder, _ = tiny_export(tmp_path, precision="fp16")
    meta = json.loads((folder / "export.json").read_text())
    v = meta["verification"]
    assert meta["precision"] == "fp16" and v["tolerances"] == {"cosine_min": 0.999} and v["cosine_min"] >= 0.999
    model = onnx.load(str(folder / "model.onnx"))
    init_types = Counter(t.data_type for t in model.graph.initializer)
    assert init_types[onnx.TensorProto.FLOAT16] > init_types[onnx.TensorProto.FLOAT]  # weights are half
    session = ort.InferenceSession(str(folder / "model.onnx"))
    assert session.get_inputs()[0].type == "tensor(float)"  # float32 in and out: callers feed the same arrays
    # LayerNorm and softmax compute in fp32: every input comes through a Cast to float
    to_fp32 = {o for n in model.graph.node if n.op_type == "Cast" for o in n.output
               if onnx.helper.get_attribute_value(n.attribute[0]) == onnx.TensorProto.FLOAT}
    kept = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert len(kept) == 7 and all(i in to_fp32 for n in kept for i in n.input if i)


def test_img_size_export(tmp_path):
    r = mimzoo.export("mae-vit-test", tmp_path / "s48", pretrained=False, img_size=48, images=16)
    assert r.meta["inputs"]["pixel_values"] == ["N", 3, 48, 48] and r.meta["provenance"]["img_size"] == 48
    assert r.meta["preprocess"]["input_size"] == [3, 48, 48]
    assert mimzoo.verify(r.path, images=16)["passed"]  # rebuilt at 48 px from the provenance
