"""INT8 for CPU with ONNX Runtime quantization, searched until the accuracy gate passes.

Two methods:

- ``dynamic``: weights stored INT8, activations quantized per batch at run time (no calibration);
  onnxruntime fuses this into ``DynamicQuantizeMatMul`` kernels.
- ``static``: QDQ (QuantizeLinear/DequantizeLinear pairs) with activation ranges calibrated on
  real images (MinMax), S8S8.

Only matrix products with a constant weight (``MatMul``/``Gemm``/``Conv``) are quantized: LayerNorm,
softmax, GELU and the activation-by-activation products of attention stay in float. A plan then keeps
more of the network in float, step by step (first layer, last layer, the MLP output projections
whose inputs carry the largest outliers), and the search stops at the first plan that passes
verification. Naive INT8 of a pretrained ViT-B lost too much here (cosine 0.93): the gate decides.
"""

from __future__ import annotations

import ast
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from .onnx import INPUT, save_model
from .spec import ExportError

log = logging.getLogger(__name__)

ROLES = ("first", "last", "mlp_out")  # groups of weight layers a plan can keep in float
WEIGHT_OPS = ("MatMul", "Gemm", "Conv")
CALIBRATION_BATCH = 8  # images per calibration batch


@dataclass(frozen=True)
class Int8Plan:
    """One way to quantize: the method and which weight layers stay in float."""

    method: str  # "dynamic" or "static"
    keep_float: tuple[str, ...] = ()  # roles (ROLES) kept in float
    per_channel: bool = True  # one weight scale per output channel (more accurate than per tensor)

    @property
    def name(self) -> str:
        kept = "+".join(self.keep_float) if self.keep_float else "nothing"
        return f"{self.method} ({'per-channel' if self.per_channel else 'per-tensor'}; float: {kept})"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "keep_float": list(self.keep_float), "per_channel": self.per_channel}


_STEPS = ((), ("first", "last"), ("first", "last", "mlp_out"))


def plans(method: str) -> list[Int8Plan]:
    """The plans tried for `method` ("dynamic", "static" or "auto": dynamic first, the faster kernel here).

    >>> [p.name for p in plans("dynamic")][:2]
    ['dynamic (per-channel; float: nothing)', 'dynamic (per-channel; float: first+last)']
    """
    methods = ("dynamic", "static") if method == "auto" else (method,)
    return [Int8Plan(m, keep) for m in methods for keep in _STEPS]


def _scope(node: Any) -> str:
    """Module path a node was exported from (torch's name_scopes metadata), e.g. 'model.blocks.3.mlp.fc2'."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return ""
            return str(scopes[-2]) if len(scopes) >= 2 else ""
    return ""


def weight_nodes(model: Any) -> list[tuple[str, str]]:
    """(node name, module scope) of every op with a constant weight, in graph order."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [(n.name, _scope(n)) for n in model.graph.node
            if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in constants]


def node_roles(model: Any) -> dict[str, set[str]]:
    """Role name -> weight-node names: first and last weight layer, and the MLP output projections."""
    nodes = weight_nodes(model)
    roles: dict[str, set[str]] = {r: set() for r in ROLES}
    if nodes:
        roles["first"].add(nodes[0][0])
        roles["last"].add(nodes[-1][0])
    roles["mlp_out"] = {name for name, scope in nodes if scope.endswith(("mlp.fc2", "mlp.pwconv2", "fc2"))}
    return roles


def excluded_nodes(model: Any, plan: Int8Plan) -> list[str]:
    """Nodes the plan keeps in float: its roles, plus every product of two activations."""
    weights = {name for name, _ in weight_nodes(model)}
    roles = node_roles(model)
    keep = set().union(*(roles[r] for r in plan.keep_float)) if plan.keep_float else set()
    activation_products = {n.name for n in model.graph.node if n.op_type in WEIGHT_OPS and n.name not in weights}
    return sorted(keep | activation_products)


def calibration_batches(images: np.ndarray, batch: int | str, size: int = CALIBRATION_BATCH) -> list[np.ndarray]:
    """Calibration inputs in batches the model accepts: `size` for a dynamic batch, exactly N for a
    fixed one (the last batch padded by repeating its last image).

    >>> [b.shape[0] for b in calibration_batches(np.zeros((10, 3, 4, 4), np.float32), "dynamic", 4)]
    [4, 4, 2]
    """
    if len(images) == 0:
        return []
    step = batch if isinstance(batch, int) else size
    out = []
    for i in range(0, len(images), step):
        chunk = images[i:i + step]
        if isinstance(batch, int) and len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        out.append(np.ascontiguousarray(chunk, dtype=np.float32))
    return out


def prepare(src: Path, dst: Path) -> None:
    """onnxruntime's recommended pre-processing (shape inference, graph clean-up); node names are kept.

    A video export with a dynamic T axis has an input dim ``2*tubes`` whose symbolic inference stops short
    ("Incomplete symbolic shape inference"); with ``auto_merge`` it completes (the dims it merges are equal)."""
    pre = require("onnxruntime.quantization.shape_inference")
    pre.quant_pre_process(str(src), str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                          external_data_location=dst.name + ".data", auto_merge=_has_derived_dims(src))


def _has_derived_dims(path: Path) -> bool:
    """Whether the graph's input has a derived symbolic dim (``2*tubes``: a dynamic-T video export)."""
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    return any(not d.dim_value and any(op in d.dim_param for op in "*+-/")
               for i in model.graph.input for d in i.type.tensor_type.shape.dim)


def quantize(src: Path, dst: Path, plan: Int8Plan, *, calibration: Iterable[np.ndarray] = (),
             roles_from: Path | None = None) -> list[str]:
    """Write the INT8 model of fp32 `src` as `dst` following `plan`; return the nodes kept in float.

    `roles_from` is the exported graph (whose nodes still carry torch's module names) when `src` is
    its pre-processed copy, which keeps node names but not their metadata.
    """
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    exclude = excluded_nodes(onnx.load(str(roles_from or src), load_external_data=False), plan)
    scratch = dst.with_name(f".q-{dst.name}")
    common = dict(op_types_to_quantize=list(WEIGHT_OPS), per_channel=plan.per_channel, nodes_to_exclude=exclude,
                  use_external_data_format=True, weight_type=q.QuantType.QInt8)
    if plan.method == "dynamic":
        q.quantize_dynamic(str(src), str(scratch), **common)
    else:
        batches = list(calibration)
        if not batches:
            raise ValueError("static INT8 needs calibration images")
        q.quantize_static(str(src), str(scratch), _reader(q, batches), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax, **common)
    save_model(onnx.load(str(scratch)), dst)
    for leftover in scratch.parent.glob(f"{scratch.name}*"):  # the scratch model and its .data
        leftover.unlink()
    return exclude


def _reader(q: Any, batches: list[np.ndarray]) -> Any:
    class _Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT: x}

        def rewind(self) -> None:
            self._it = iter(batches)

    return _Reader()


def search(src: Path, dst: Path, candidates: list[Int8Plan], evaluate: Callable[[Path], dict[str, Any]], *,
           calibration: list[np.ndarray], say: Callable[[str], None] = log.info,
           ) -> tuple[Int8Plan, dict[str, Any], list[dict[str, Any]]]:
    """Quantize with each plan in turn until one passes `evaluate`; the passing model ends at `dst`.

    Each try is written in a scratch folder beside `dst` under the same file name, so its weight file
    keeps the name the graph refers to when it moves. Returns (the plan that passed, its verification
    report, every attempt's figures); when none passes, nothing is written and the last report comes
    back with passed=False.
    """
    attempts: list[dict[str, Any]] = []
    scratch = dst.parent / ".int8-trial"
    trial = scratch / dst.name
    pre = dst.parent / ".int8-pre" / dst.name
    rep: dict[str, Any] = {}
    try:
        pre.parent.mkdir()
        prepare(src, pre)
        for i, plan in enumerate(candidates, 1):
            if plan.method == "static" and not calibration:
                say(f"INT8 try {i}/{len(candidates)}: {plan.name} skipped (no calibration images)")
                continue
            say(f"INT8 try {i}/{len(candidates)}: {plan.name}")
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            kept = quantize(pre, trial, plan, calibration=calibration, roles_from=src)
            rep = evaluate(trial)
            attempts.append({**plan.to_dict(), "float_nodes": len(kept), "passed": rep["passed"],
                             "cosine_min": rep["cosine_min"], "knn_top1_drop": rep.get("knn_top1_drop")})
            if rep["passed"]:
                for f in scratch.iterdir():
                    shutil.move(str(f), str(dst.parent / f.name))
                return plan, rep, attempts
            say(f"  failed: {', '.join(rep['failures'])}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(pre.parent, ignore_errors=True)
    if not attempts:
        raise ExportError("static INT8 needs calibration images; pass --calibration-images N (> 0) and --data, "
                          "or --int8-method dynamic")
    return candidates[-1], {**rep, "passed": False}, attempts
