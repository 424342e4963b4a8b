"""Embed images (or video clips) with an export folder, using only onnxruntime (or openvino), numpy and PIL: no torch.

This module imports nothing from mimzoo, so a deployer can also copy this one file next to their
application. The folder's ``export.json`` says how to feed the model (input size, mean, std,
interpolation, crop); :func:`preprocess` reproduces mimzoo's torchvision transform (resize the
shorter side to ``size / crop_pct``, centre-crop, scale to [0, 1], normalise) with PIL and numpy.

>>> model = load_export("mae-vit-b-onnx-fp32")  # doctest: +SKIP
>>> model.embed([PIL.Image.open("cat.jpg")]).shape  # doctest: +SKIP
(1, 768)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_JSON = "export.json"
ONNX_NAME = "model.onnx"
OPENVINO_XML = "model.xml"  # OpenVINO IR (with model.bin beside it)
INPUT = "pixel_values"
EMBEDDING = "embedding"


class ExportRuntimeError(RuntimeError):
    """The folder is not a usable ONNX export (one line, naming the fix)."""


def _pil_filter(name: str) -> int:
    from PIL import Image

    filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
    if name not in filters:
        raise ExportRuntimeError(f"unknown interpolation '{name}' in export.json; use one of {', '.join(filters)}")
    return filters[name]


def _resize(img: Any, pp: Mapping[str, Any]) -> Any:
    """Resize as torchvision does: the shorter side to size/crop_pct, or both sides ("squash")."""
    _, h, w = pp["input_size"]
    crop_pct = float(pp.get("crop_pct", 1.0))
    th, tw = math.floor(h / crop_pct), math.floor(w / crop_pct)
    width, height = img.size
    if pp.get("crop_mode", "center") == "squash" or h != w:
        size = (tw, th)
    else:
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(th * long / short)
        size = (th, new_long) if width <= height else (new_long, th)
    return img if size == (width, height) else img.resize(size, _pil_filter(pp.get("interpolation", "bicubic")))


def _center_crop(img: Any, h: int, w: int) -> Any:
    """Centre crop to (h, w), padding with black first when the image is smaller (torchvision's rule)."""
    from PIL import Image

    width, height = img.size
    if w > width or h > height:
        padded = Image.new(img.mode, (max(w, width), max(h, height)), 0)
        padded.paste(img, ((w - width) // 2 if w > width else 0, (h - height) // 2 if h > height else 0))
        img = padded
        width, height = img.size
    top = int(round((height - h) / 2.0))
    left = int(round((width - w) / 2.0))
    return img.crop((left, top, left + w, top + h))


def preprocess(image: Any, pp: Mapping[str, Any]) -> np.ndarray:
    """One PIL image -> normalised float32 ``[C, H, W]`` array, as the model expects.

    Args:
        image: a PIL image (any mode; converted to RGB, or L for 1-channel models).
        pp: the ``preprocess`` block of export.json (timm's data config keys).

    >>> preprocess(PIL.Image.new("RGB", (300, 200)), meta["preprocess"]).shape  # doctest: +SKIP
    (3, 224, 224)
    """
    c, h, w = (int(v) for v in pp["input_size"])
    img = image.convert("L" if c == 1 else "RGB")
    img = _center_crop(_resize(img, pp), h, w)
    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)  # [H, W(, C)]
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # -> [C, H, W]
    mean = np.asarray(pp["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pp["std"], dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((arr - mean) / std, dtype=np.float32)


def clip_indices(total: int, num_frames: int, stride: int = 1) -> list[int]:
    """The centred clip's frame indices (as mimzoo.encoders.video.clip_indices; the last frame repeats when short)."""
    if total < 1:
        raise ExportRuntimeError("a clip needs at least one frame; pass a video with frames")
    start = max(0, (total - ((num_frames - 1) * stride + 1)) // 2)
    return [min(start + i * stride, total - 1) for i in range(num_frames)]


def preprocess_clip(frames: Any, pp: Mapping[str, Any]) -> np.ndarray:
    """A clip (a list of PIL frames, or a uint8 ``[T, H, W, C]`` array) -> normalised float32 ``[C, T, H, W]``.

    A clip of exactly ``num_frames`` frames is used as it is; a longer or shorter one gives its centred
    ``num_frames`` frames ``frame_stride`` apart, as mimzoo's ``encoder.transform`` does.
    """
    from PIL import Image

    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] not in (1, 3):
            raise ExportRuntimeError(f"a clip array must be uint8 [T, H, W, C], got {frames.dtype} {frames.shape}; "
                                     "pass frames as uint8 [T, H, W, C] or a list of PIL images")
        frames = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    n, stride = int(pp["num_frames"]), int(pp.get("frame_stride", 1))
    if len(frames) != n:
        frames = [frames[i] for i in clip_indices(len(frames), n, stride)]
    return np.stack([preprocess(f, pp) for f in frames], axis=1)


def session_options(threads: int | None = None, level: str = "all") -> Any:
    """onnxruntime session options: intra-op `threads` (None: one per core) and graph optimisation level."""
    import onnxruntime as ort

    levels = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3  # errors only: no per-node warnings on stderr
    return so


def run_in_batches(pixel_values: np.ndarray, fixed_batch: int | None, output_names: list[str],
                   infer: Any) -> dict[str, np.ndarray]:
    """Run `infer` (a batch -> outputs in `output_names` order) over ``[N, C, H, W]``: whole for a dynamic
    batch, in chunks of `fixed_batch` otherwise (the last one padded with its last image, then cut)."""
    x = np.asarray(pixel_values)
    step = fixed_batch or len(x)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in output_names}
    for i in range(0, len(x), max(step, 1)):
        chunk = x[i:i + step]
        n = len(chunk)
        if fixed_batch and n < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        for name, out in zip(output_names, infer(chunk)):
            out = np.asarray(out[:n])  # a task model's mask stays integer; everything else float32
            parts[name].append(out if np.issubdtype(out.dtype, np.integer) else out.astype(np.float32, copy=False))
    return {k: np.concatenate(v) for k, v in parts.items()}


class OnnxModel:
    """One ONNX file in an onnxruntime session, run on float arrays."""

    def __init__(self, onnx_file: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None,
                 optimization: str = "all"):
        import onnxruntime as ort

        onnx_file = Path(onnx_file)
        if not onnx_file.is_file():
            raise ExportRuntimeError(f"{onnx_file} is missing; copy the whole export folder")
        try:
            self.session = ort.InferenceSession(str(onnx_file), session_options(threads, optimization),
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ExportRuntimeError(f"onnxruntime cannot load {onnx_file} ({str(e).splitlines()[0][:300]}); "
                                     "the file is corrupt or incomplete: export again") from e
        feed = self.session.get_inputs()[0]
        self.input_name = feed.name
        self.input_dtype = np.float16 if "float16" in feed.type else np.float32
        self.fixed_batch = feed.shape[0] if isinstance(feed.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs (``embedding``, and ``tokens`` when exported) for a ``[N, C, H, W]`` float array.

        A fixed-batch model is fed in chunks of its batch size (the last one padded).
        """
        return run_in_batches(pixel_values, self.fixed_batch, self.output_names, lambda chunk: self.session.run(
            self.output_names, {self.input_name: chunk.astype(self.input_dtype, copy=False)}))


class OpenVinoModel:
    """An OpenVINO IR on the CPU, run on float arrays; same ``run`` as :class:`OnnxModel`.

    `inference_precision` is the compiled model's INFERENCE_PRECISION_HINT: "f32" or "bf16" (an export
    folder records the one it was verified with). `threads`: INFERENCE_NUM_THREADS (None: OpenVINO's).
    """

    def __init__(self, xml_file: str | Path, *, inference_precision: str = "f32", threads: int | None = None):
        try:
            import openvino as ov
        except ImportError as e:
            raise ExportRuntimeError("this export runs on OpenVINO, which is not installed; "
                                     "pip install 'mimzoo[openvino]' (or pip install openvino)") from e
        xml_file = Path(xml_file)
        if not xml_file.is_file() or not xml_file.with_suffix(".bin").is_file():
            raise ExportRuntimeError(f"{xml_file} or its .bin is missing; copy the whole export folder")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(xml_file)), "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise ExportRuntimeError(f"OpenVINO cannot load {xml_file} ({str(e).strip().splitlines()[0][:300]}); "
                                     "the file is corrupt or incomplete: export again") from e
        self.request = self.compiled.create_infer_request()
        self.input_name = self.compiled.input(0).get_any_name()
        self.input_dtype = np.float32
        shape = self.compiled.input(0).get_partial_shape()
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """One forward pass on a batch the model accepts; outputs in `output_names` order (owned copies)."""
        res = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(res[o]) for o in self.compiled.outputs]

    def run(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs (``embedding``, and ``tokens`` when exported) for ``[N, C, H, W]``, as :meth:`OnnxModel.run`."""
        return run_in_batches(pixel_values, self.fixed_batch, self.output_names, self.infer)


class _Embeds:
    """embed() for an export folder's model (needs self.meta and self.run)."""

    meta: dict[str, Any]

    @property
    def preprocess_config(self) -> dict[str, Any]:
        return dict(self.meta["preprocess"])

    def embed(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Pooled embeddings ``[N, D]`` of PIL images, preprocessed as export.json says; for a video export
        (``num_frames`` in its preprocess), of clips (lists of PIL frames or uint8 ``[T, H, W, C]`` arrays)."""
        if self.task is not None:
            raise ExportRuntimeError(f"{getattr(self, 'folder', 'this')} is a {self.task} model (backbone + head): "
                                     "call predict(images) for its logits" + (" and mask" if self.task ==
                                                                              "segmentation" else ""))
        return self._outputs(images, batch_size)[EMBEDDING]

    @property
    def task(self) -> str | None:
        """"classification" or "segmentation" for a task export (backbone + head), None for a backbone."""
        return ((self.meta.get("task") or {}).get("head") or {}).get("task")

    @property
    def labels(self) -> list[str]:
        """A task export's class names (index = class id); [] for a backbone."""
        return list(((self.meta.get("task") or {}).get("head") or {}).get("labels") or [])

    def predict(self, images: Sequence[Any], batch_size: int = 32) -> dict[str, np.ndarray]:
        """A task export's outputs for PIL images: ``logits`` ``[N, K]`` (classification), or ``logits``
        ``[N, K, H, W]`` and ``mask`` ``[N, H, W]`` (segmentation, at the model's input size); class
        names in :attr:`labels`.

        >>> out = load_export("digits-linear-onnx-fp32").predict([img])  # doctest: +SKIP
        >>> model.labels[int(out["logits"].argmax(1)[0])]  # doctest: +SKIP
        '7'
        """
        if self.task is None:
            raise ExportRuntimeError(f"{getattr(self, 'folder', 'this')} is a backbone export: call embed(images); "
                                     "predict() runs exports made with mimzoo export MODEL --head DIR")
        return self._outputs(images, batch_size)

    def _outputs(self, images: Sequence[Any], batch_size: int) -> dict[str, np.ndarray]:
        pp = self.preprocess_config
        prep = preprocess_clip if pp.get("num_frames") else preprocess
        parts: list[dict[str, np.ndarray]] = []
        for i in range(0, len(images), batch_size):
            parts.append(self.run(np.stack([prep(im, pp) for im in images[i:i + batch_size]])))
        if not parts:
            return {EMBEDDING: np.zeros((0, 0), np.float32)}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class ExportedModel(_Embeds, OnnxModel):
    """An ONNX export folder (model.onnx + export.json), ready to embed images."""

    def __init__(self, folder: str | Path, **kwargs: Any):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        if self.meta.get("format") not in ("onnx", "tensorrt"):
            raise ExportRuntimeError(f"{self.folder}/{EXPORT_JSON} has format {self.meta.get('format')!r}; "
                                     "open it with load_export()")
        super().__init__(self.folder / ONNX_NAME, **kwargs)


class ExportedOpenVinoModel(_Embeds, OpenVinoModel):
    """An OpenVINO export folder (model.xml/.bin + export.json), run with the inference precision it was
    verified with (export.json's ``openvino.inference_precision``)."""

    def __init__(self, folder: str | Path, *, threads: int | None = None):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        hint = (self.meta.get("openvino") or {}).get("inference_precision")
        if self.meta.get("format") != "openvino" or hint not in ("f32", "bf16"):
            raise ExportRuntimeError(f"{self.folder}/{EXPORT_JSON} is not an OpenVINO export report; export again")
        super().__init__(self.folder / OPENVINO_XML, inference_precision=hint, threads=threads)


def read_meta(folder: str | Path) -> dict[str, Any]:
    """export.json of an export folder, checked to be a mimzoo export report."""
    path = Path(folder) / EXPORT_JSON
    if not path.is_file():
        raise ExportRuntimeError(f"{folder} is not an export folder (no {EXPORT_JSON}); run `mimzoo export` first")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportRuntimeError(f"{path} is not valid JSON ({e}); export again") from e
    if not isinstance(meta, dict) or meta.get("mimzoo_export") != 1 or "preprocess" not in meta:
        raise ExportRuntimeError(f"{path} is not a mimzoo export report (mimzoo_export: 1); export again")
    return meta


def load_export(folder: str | Path, **kwargs: Any) -> ExportedModel | ExportedOpenVinoModel:
    """Open an export folder for inference: ONNX (onnxruntime) or OpenVINO IR (openvino), as export.json says.

    Args:
        folder: the folder ``mimzoo export`` wrote (model.onnx and its weights, or model.xml/.bin; export.json).
        **kwargs: ``threads``; for ONNX also ``providers`` (onnxruntime execution providers), ``optimization``.

    >>> load_export("mae-vit-b-onnx-int8").embed(images)  # doctest: +SKIP
    """
    if read_meta(folder).get("format") == "openvino":
        return ExportedOpenVinoModel(folder, **kwargs)
    return ExportedModel(folder, **kwargs)
