"""INT8 for CPU: the plans, which nodes stay float, calibration batching, and the search to the gate.

Real onnxruntime quantization of the tiny ViT's real ONNX export; the gate is the real verification
(cosine and k-NN on real digits).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
from export_helpers import tiny_export

import mimzoo
from mimzoo.exporters.quantize import (
    Int8Plan,
    calibration_batches,
    excluded_nodes,
    node_roles,
    plans,
    weight_nodes,
)
from mimzoo.exporters.spec import ExportError, VerificationError


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory):
    folder, _ = tiny_export(tmp_path_factory.mktemp("fp32"))
    return onnx.load(str(folder / "model.onnx"))


def test_plans_keep_more_in_float_step_by_step():
    names = [p.name for p in plans("auto")]
    assert names[:3] == ["dynamic (per-channel; float: nothing)", "dynamic (per-channel; float: first+last)",
                         "dynamic (per-channel; float: first+last+mlp_out)"]
    assert [p.method for p in plans("auto")] == ["dynamic"] * 3 + ["static"] * 3
    assert [p.method for p in plans("static")] == ["static"] * 3


def test_roles_come_from_the_module_names(fp32_graph):
    scopes = [scope for _, scope in weight_nodes(fp32_graph)]
    assert scopes[0].endswith("patch_embed.proj") and scopes[-1].endswith("blocks.1.mlp.fc2")
    assert len(scopes) == 1 + 4 * 2  # patch embedding + (qkv, proj, fc1, fc2) per block
    roles = node_roles(fp32_graph)
    by_name = dict(weight_nodes(fp32_graph))
    assert [by_name[n] for n in roles["first"]] == [scopes[0]] and [by_name[n] for n in roles["last"]] == [scopes[-1]]
    assert sorted(by_name[n] for n in roles["mlp_out"]) == [s for s in scopes if s.endswith("mlp.fc2")]
    # attention's activation-by-activation products always stay float; plans add their roles
    none = set(excluded_nodes(fp32_graph, Int8Plan("dynamic")))
    ends = set(excluded_nodes(fp32_graph, Int8Plan("dynamic", ("first", "last"))))
    assert len(none) == 4 and not none & set(by_name) and ends - none == roles["first"] | roles["last"]


def test_calibration_batches_fit_the_model():
    x = np.zeros((10, 3, 4, 4), np.float32)
    assert [len(b) for b in calibration_batches(x, "dynamic", 4)] == [4, 4, 2]
    fixed = calibration_batches(x, 4)
    assert [len(b) for b in fixed] == [4, 4, 4]  # a fixed-batch graph only takes 4: the last is padded
    assert calibration_batches(x[:0], "dynamic") == []


@pytest.mark.parametrize("method,op", [("dynamic", "DynamicQuantizeLinear"), ("static", "QuantizeLinear")])
def test_int8_export_passes_the_gate(tmp_path, method, op):
    folder, _ = tiny_export(tmp_path, precision="int8", int8_method=method, images=256)
    meta = json.loads((folder / "export.json").read_text())
    v = meta["verification"]
    assert meta["precision"] == "int8" and v["passed"] and v["tolerances"] == {"cosine_min": 0.99, "knn_top1_drop": 0.5}
    assert v["cosine_min"] >= 0.99 and v["knn_top1_drop"] <= 0.5 and v["images"] == 256
    assert meta["int8"]["method"] == method and meta["int8"]["attempts"][-1]["passed"]
    assert meta["int8"]["calibration_images"] == (64 if method == "static" else 0)
    model = onnx.load(str(folder / "model.onnx"))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops[op] > 0 and ops["LayerNormalization"] == 5 and ops["Softmax"] == 2  # LN/softmax stay float
    assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
    assert mimzoo.verify(folder, images=256)["passed"]


def test_a_gate_no_plan_meets_fails_and_writes_nothing(tmp_path):
    with pytest.raises(VerificationError, match=r"onnx int8 export of mae-vit-test failed verification with each of 3 "
                                                 r"INT8 plans; the last \(cosine_min .* < 1"):
        mimzoo.export("mae-vit-test", tmp_path / "q", pretrained=False, precision="int8", int8_method="dynamic",
                      images=32, tolerances={"cosine_min": 1.0, "knn_top1_drop": None})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="static INT8 needs calibration images"):
        mimzoo.export("mae-vit-test", tmp_path / "s", pretrained=False, precision="int8", int8_method="static",
                      images=32, calibration_images=0)
    assert list(tmp_path.iterdir()) == []
