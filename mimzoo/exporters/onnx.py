"""PyTorch encoder -> ONNX: torch's dynamo exporter first, the TorchScript exporter when it fails.

The graph takes ``pixel_values [N, C, H, W]`` and gives ``embedding [N, D]`` (and ``tokens
[N, L, D]`` on request). The batch axis is dynamic unless a fixed batch is asked for. Weights go
to ``model.onnx.data`` beside ``model.onnx`` once they pass EXTERNAL_DATA_BYTES (protobuf caps a
single file at 2 GB; big graphs are also slow to open in viewers), and the two files travel together.
Node metadata that names files on the exporting machine (stack traces) is removed.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._deps import require
from .spec import ExportError, ExportSpec

log = logging.getLogger(__name__)

INPUT = "pixel_values"
EMBEDDING = "embedding"
TOKENS = "tokens"
EXTERNAL_DATA_BYTES = 100 * 2**20  # weights above this size go to model.onnx.data
# node metadata torch writes that is bulky or names the exporting machine's files
_DROP_NODE_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node", "pkg.torch.onnx.class_hierarchy")
# ops onnxruntime's fp16 converter keeps in fp32 besides its defaults: ViT LayerNorm/softmax overflow in fp16
FP16_KEEP_FLOAT = ("LayerNormalization", "Softmax")


@dataclass(frozen=True)
class OnnxExport:
    """What the exporter did."""

    exporter: str  # "dynamo" or "torchscript"
    fallback_reason: str | None  # why the dynamo exporter failed, when it did
    opset: int  # opset of the written model
    ops: dict[str, int] = field(default_factory=dict)  # node count per op type
    layer_norm_modules: int = 0  # LayerNorm modules in the PyTorch model (each should be one node)

    def to_dict(self) -> dict[str, Any]:
        return {"exporter": self.exporter, "fallback_reason": self.fallback_reason, "opset": self.opset,
                "layer_norm_nodes": self.ops.get("LayerNormalization", 0),
                "layer_norm_modules": self.layer_norm_modules}


def export_module(encoder: Any, tokens: bool) -> Any:
    """The encoder as the exported graph sees it: pixel_values -> embedding (, tokens)."""
    torch = require("torch")
    names = getattr(encoder, "output_names", None)  # a task model (mimzoo.tasks): its own outputs

    class _Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.names = list(names) if names else output_names(tokens)

        def forward(self, pixel_values: Any) -> Any:
            if names:
                return self.encoder(pixel_values)  # (logits,) / (logits, probs) / (logits, mask)
            if not tokens:
                return self.encoder(pixel_values)
            feats = self.encoder.model.forward_features(pixel_values)  # one pass for both outputs
            embedding = self.encoder.model.forward_head(feats, pre_logits=True)
            return embedding, self.encoder._as_tokens(feats)

    return _Exported().eval()


def output_names(tokens: bool) -> list[str]:
    return [EMBEDDING, TOKENS] if tokens else [EMBEDDING]


def export_onnx(encoder: Any, path: Path, spec: ExportSpec) -> OnnxExport:
    """Write `encoder` as ONNX at `path` (plus ``<path>.data`` for big weights); fp32 graph.

    Args:
        encoder: a mimzoo encoder (``mimzoo.load``), in eval mode, on the CPU.
        path: the .onnx file to write (its folder must exist; the caller writes into a temp folder).
        spec: batch, opset and outputs to export.

    >>> export_onnx(mimzoo.load("mae-vit-test", pretrained=False), Path("t/model.onnx"), ExportSpec())  # doctest: +SKIP
    """
    torch = require("torch")
    require("onnxscript")
    n = spec.batch if isinstance(spec.batch, int) else 2
    example = torch.randn(*encoder.preprocess.batch_shape(n), generator=torch.Generator().manual_seed(0))  # 4-D or 5-D
    module = export_module(encoder, spec.tokens)
    raw = path.with_name(f".raw-{path.name}")
    reason = None
    frames = frame_range(encoder, spec)
    try:
        with _quiet("onnxscript", "onnx_ir"):  # their INFO lines drown mimzoo's own under -v
            _dynamo(module, example, raw, spec, frames)
        exporter = "dynamo"
    except Exception as e:  # torch.export raises many types; any of them means "try the other exporter"
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}" if str(e).strip() else type(e).__name__
        log.warning("torch's dynamo ONNX exporter failed (%s); falling back to the TorchScript exporter", reason)
        _remove(raw)
        _torchscript(module, example, raw, spec, frames)
        exporter = "torchscript"
    ops, opset = _finalise(raw, path)
    n_ln = sum(isinstance(m, torch.nn.LayerNorm) for m in encoder.modules())
    if n_ln and not ops.get("LayerNormalization"):
        log.warning("%d LayerNorm modules became decomposed ops in the graph: TensorRT FP16 may overflow; "
                    "use opset >= 17", n_ln)
    return OnnxExport(exporter, reason, opset, dict(ops), n_ln)


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def frame_range(encoder: Any, spec: ExportSpec) -> tuple[int, int, int] | None:
    """(fewest frames, most frames, tubelet size) of a video export whose T axis is dynamic; None when T is
    fixed (``spec.min_frames`` unset). The run_export checks made sure the range fits the model.

    >>> frame_range(mimzoo.load("videomae-vit-test", pretrained=False), ExportSpec(min_frames=2))  # doctest: +SKIP
    (2, 4, 2)
    """
    if spec.min_frames is None:
        return None
    return int(spec.min_frames), int(encoder.preprocess.num_frames), int(encoder.model.patch_embed.tubelet_size)


def _dynamo(module: Any, example: Any, path: Path, spec: ExportSpec, frames: tuple[int, int, int] | None) -> None:
    torch = require("torch")
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)} if spec.dynamic else {}
    if frames is not None:  # T = tubelet x tubes, so the Conv3d tube embedding always divides it
        lo, hi, t = frames
        dims[2] = t * torch.export.Dim("tubes", min=lo // t, max=hi // t)
    shapes = (dims,) if dims else None
    torch.onnx.export(module, (example,), str(path), dynamo=True, input_names=[INPUT],
                      output_names=module.names, dynamic_shapes=shapes, opset_version=spec.opset,
                      external_data=True, optimize=True, verbose=False, report=False)


def _torchscript(module: Any, example: Any, path: Path, spec: ExportSpec, frames: tuple[int, int, int] | None) -> None:
    torch = require("torch")
    names = module.names
    axes: dict[str, dict[int, str]] = {n: {0: "batch"} for n in [INPUT, *names]} if spec.dynamic else {}
    if frames is not None:  # the clip's T, and with it the token count
        axes.setdefault(INPUT, {})[2] = "frames"
        if TOKENS in names:
            axes.setdefault(TOKENS, {})[1] = "tokens"
    import warnings

    with warnings.catch_warnings():  # the deprecation warning is what this fallback is about
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[INPUT], output_names=names,
                          dynamic_axes=axes or None, opset_version=spec.opset, do_constant_folding=True)


def _finalise(raw: Path, path: Path) -> tuple[Counter, int]:
    """Re-save `raw` as `path`: clean node metadata, weights inline or in `<path>.data` by size."""
    onnx = require("onnx")
    model = onnx.load(str(raw))  # with its external data
    for node in model.graph.node:
        keep = [(p.key, p.value) for p in node.metadata_props if p.key not in _DROP_NODE_METADATA]
        del node.metadata_props[:]
        for key, value in keep:
            node.metadata_props.add(key=key, value=value)
    model.doc_string = ""
    model.graph.doc_string = ""
    save_model(model, path)
    _remove(raw)
    ops = Counter(n.op_type for n in model.graph.node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ops, opset


def save_model(model: Any, path: Path) -> None:
    """Save an ONNX model; weights to ``<name>.data`` beside it when they pass EXTERNAL_DATA_BYTES."""
    onnx = require("onnx")
    size = sum(t.ByteSize() for t in model.graph.initializer)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    if size > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def to_fp16(src: Path, dst: Path) -> None:
    """Convert an fp32 ONNX model to fp16 weights and compute; inputs/outputs stay float32 and
    LayerNorm/softmax stay fp32 (they overflow in fp16 on ViTs)."""
    onnx = require("onnx")
    float16 = require("onnxruntime.transformers.float16")
    model = onnx.load(str(src))
    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_FLOAT))
    try:
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    except Exception as e:
        raise ExportError(f"fp16 conversion failed ({type(e).__name__}: {e}); export fp32 instead") from e
    save_model(half, dst)


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        if p.exists():
            p.unlink()
