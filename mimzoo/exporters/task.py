"""Task exports: a backbone plus a trained head (:mod:`mimzoo.tasks`) exported as one verified model.

The graph gives ``logits`` ``[N, K]`` for classification, or ``logits`` ``[N, K, H, W]`` and ``mask``
``[N, H, W]`` for segmentation (int64; int32 in TensorRT engines, whose ArgMax gives int32). The
head folder travels inside the export as ``head/`` (JSON + safetensors; digests in export.json),
so ``mimzoo verify DIR`` rebuilds the same PyTorch task model. Verification adds, on every batch:

- ``top1_agreement`` (classification: share of images whose argmax class matches PyTorch's) or
  ``pixel_agreement`` (segmentation: share of mask pixels that match);
- with labelled real images: ``top1_torch`` / ``top1_export`` / ``top1_drop`` (points), or
  ``miou_torch`` / ``miou_export`` / ``miou_drop`` against ground-truth masks;

and the INT8 gate bounds ``top1_drop`` (or ``miou_drop``) instead of the k-NN drop. max_abs,
max_rel and cosine_min are taken over the logits (the mask is compared by agreement only).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .metadata import file_sha256
from .spec import ExportError

HEAD_DIR = "head"  # the head folder's copy inside a task export
HEAD_FILES = ("head.json", "head.safetensors", "backbone.safetensors")


def load_task_model(backbone: Any, head_dir: str | Path, fmt: str = "onnx") -> Any:
    """Backbone + head folder -> TaskModel (CPU, float32, eval); refuses a backbone the head was not trained on."""
    import torch

    from ..tasks import load_head

    dtype = torch.int32 if fmt == "tensorrt" else torch.int64  # TensorRT's ArgMax/TopK indices are int32
    return load_head(head_dir, backbone, mask_dtype=dtype).to(device="cpu", dtype=torch.float32).eval()


def copy_head(head_dir: str | Path, dst: Path, model: Any = None) -> dict[str, Any]:
    """Copy the head folder's files to ``dst/head``; returns export.json's ``task`` block (spec, digests,
    and the mask's integer type when `model` is a segmentation TaskModel)."""
    from ..tasks import read_spec

    spec = read_spec(head_dir)
    (dst / HEAD_DIR).mkdir()
    digests = {}
    for name in HEAD_FILES:
        src = Path(head_dir) / name
        if src.is_file():
            shutil.copyfile(src, dst / HEAD_DIR / name)
            digests[name] = file_sha256(dst / HEAD_DIR / name)
    block: dict[str, Any] = {"head": spec.to_json(), "files_sha256": digests}
    if model is not None and spec.task == "segmentation":
        block["mask_dtype"] = str(model.mask_dtype).replace("torch.", "")  # int64; int32 in TensorRT engines
    return block


def load_exported_task(folder: Path, meta: dict[str, Any], backbone: Any) -> Any:
    """The PyTorch task model of task export `folder`: its ``head/`` (unchanged since export) on `backbone`."""
    from .metadata import CorruptExportError

    task = meta["task"]
    head = folder / HEAD_DIR
    files = task.get("files_sha256") or {}
    for name in HEAD_FILES:
        path = head / name
        if (name in files) != path.is_file() or (path.is_file() and file_sha256(path) != files[name]):
            raise CorruptExportError(f"{head}/{name} is missing or differs from the head this model was exported "
                                     "with; copy the whole export folder, or export again")
    return load_task_model(backbone, head, str(meta.get("format")))


def seg_data(spec: Any, data: str | None) -> str | None:
    """The segmentation data a seg task export verifies on: ``--data digits`` (the default) means the
    dataset the head was trained on when that is a segmentation spec."""
    if data is not None and str(data).lower() == "digits" and spec.task == "segmentation":
        return spec.dataset
    return data


def load_task_images(model: Any, data: str | None, n_verify: int, n_calib: int, *, seed: int) -> tuple[Any, Any]:
    """(calibration, verification) images of a task model: verification on the dataset's held-out split (the
    head never saw it: digits' test images, a segmentation dataset's eval scenes with their masks), calibration
    on its training split. An image folder (one sub-folder per class) is split as for a backbone."""
    from .images import ImageSet, load_images

    none = ImageSet("none", (), None)
    if data is None or str(data).lower() == "none":
        return none, none
    if model.spec.task == "segmentation":
        size = tuple(int(v) for v in model.preprocess.input_size[-2:])
        from ..data.segmentation import SEG_SPEC_HELP, is_segmentation_spec, open_segmentation

        if not is_segmentation_spec(str(data)):
            raise ExportError(f"a segmentation model verifies on masks: pass --data {SEG_SPEC_HELP} (or none)")
        source = open_segmentation(str(data))
        return (_split_images(source.train, n_calib, seed, str(data), size),
                _split_images(source.eval, n_verify, seed, str(data), size))
    if str(data).lower() == "digits":
        from ..data import open_dataset

        source = open_dataset("digits")
        return _split_images(source.train, n_calib, seed, "digits"), _split_images(source.eval, n_verify, seed, "digits")
    verify, calib = load_images(data, n_verify + n_calib, seed=seed).split(n_verify)
    return calib, verify


def _split_images(split: Any, limit: int, seed: int, name: str, mask_size: tuple[int, int] | None = None) -> Any:
    """Up to `limit` items of a dataset split (seeded), as an ImageSet: class labels, or ``[H, W]`` uint8 masks
    resized (nearest) to `mask_size` as the seg probe does."""
    from PIL import Image

    from .images import ImageSet

    pick = sorted(np.random.default_rng(seed).permutation(len(split))[:max(limit, 0)].tolist())
    images, labels = [], []
    for i in pick:
        images.append(split.image(i).convert("RGB"))
        if mask_size is None:
            labels.append(int(split.label(i)))
        else:
            mask = np.ascontiguousarray(np.asarray(split.mask(i), dtype=np.uint8))
            labels.append(np.asarray(Image.fromarray(mask, "L").resize(mask_size[::-1], Image.NEAREST)))
    return ImageSet(name, tuple(images), tuple(labels) if pick else None)


def check_labels(spec: Any, data: str | None) -> None:
    """Refuse verification images whose classes are not the head's labels (top-1 against them means nothing)."""
    if data is None or str(data).lower() == "none":
        return
    if spec.task == "segmentation":
        from ..data.segmentation import is_segmentation_spec, open_segmentation

        if is_segmentation_spec(str(data)) and tuple(open_segmentation(str(data)).classes) != tuple(spec.labels):
            raise ExportError(f"{data}'s classes are not the head's {spec.num_classes} labels; pass --data "
                              f"{spec.dataset or 'SPEC'} (what the head was trained on), or --data none")
        return
    if str(data).lower() == "digits":
        names = tuple(str(i) for i in range(10))
    else:
        folder = Path(data).expanduser()
        names = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
        if not names:
            return  # unlabelled images: agreement only
    if names != tuple(spec.labels):
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        hint = spec.dataset or "DIR"
        if spec.dataset and (Path(spec.dataset).expanduser() / "val").is_dir():  # an eval folder: its val/ images
            hint = str(Path(spec.dataset) / "val")
        raise ExportError(f"the verification images' classes ({shown}) are not the head's {spec.num_classes} labels; "
                          f"pass --data {hint} (what the head was trained on), or --data none")


def outputs_meta(task: Any, n: Any) -> dict[str, list[Any]]:
    """export.json ``outputs`` of a task model: names -> shapes (N and the input's H, W)."""
    _, h, w = task.preprocess.input_size
    k = task.spec.num_classes
    if task.spec.task == "segmentation":
        return {"logits": [n, k, h, w], "mask": [n, h, w]}
    return {"logits": [n, k], **({"probs": [n, k]} if task.probs else {})}


def figures(ref: Any, got: Any, labels: np.ndarray | None) -> dict[str, float]:
    """Prediction agreement over every batch, and top-1 / mIoU of both models on the labelled real images."""
    seg = "mask" in (ref.real or ref.random[0])
    pairs = [(r, g) for r, g in zip(ref.random + [ref.real or {}], got.random + [got.real or {}]) if r]
    same = total = 0
    for r, g in pairs:
        pr, pg = _pred(r, seg), _pred(g, seg)
        same += int((pr == pg).sum())
        total += pr.size
    out = {("pixel_agreement" if seg else "top1_agreement"): same / max(total, 1)}
    if labels is None or ref.real is None or got.real is None:
        return out
    pr, pg = _pred(ref.real, seg), _pred(got.real, seg)
    if seg:
        k = int(ref.real["logits"].shape[1])
        t, e = miou(pr, labels, k), miou(pg, labels, k)
        return {**out, "miou_torch": t, "miou_export": e, "miou_drop": t - e}
    t, e = float((pr == labels).mean() * 100), float((pg == labels).mean() * 100)
    return {**out, "top1_torch": t, "top1_export": e, "top1_drop": t - e}


def miou(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int = 255) -> float:
    """Mean intersection-over-union (percent) over the classes present in `truth` or `pred`."""
    keep = truth != ignore
    p, t = pred[keep].astype(np.int64), truth[keep].astype(np.int64)
    inter = np.bincount(t[p == t], minlength=num_classes)[:num_classes]
    area_p = np.bincount(p, minlength=num_classes)[:num_classes]
    area_t = np.bincount(t, minlength=num_classes)[:num_classes]
    union = area_p + area_t - inter
    present = union > 0
    return float((inter[present] / union[present]).mean() * 100) if present.any() else 100.0


def _pred(out: dict[str, np.ndarray], seg: bool) -> np.ndarray:
    return out["mask"].astype(np.int64) if seg else out["logits"].argmax(-1)


# -- publishing (mimzoo.hub): the head ships with the model, with local paths reduced to names -----

def head_files(folder: Path, meta: dict[str, Any]) -> tuple[str, ...]:
    """The ``head/`` files a task export ships (relative to the export folder); () for a backbone export."""
    if "task" not in meta:
        return ()
    return tuple(f"{HEAD_DIR}/{n}" for n in HEAD_FILES if (folder / HEAD_DIR / n).is_file())


def stage_head(src: Path, dest: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Copy ``src/head`` to ``dest/head`` for a public repo: head.json's backbone and dataset reduced to
    names (no path of the exporting machine); returns `meta` with the task block and digests to match."""
    import json

    from .._atomic import atomic_file
    from ..hub.public import public_name, public_source
    from ..tasks import HeadSpec

    (dest / HEAD_DIR).mkdir(parents=True, exist_ok=True)
    spec = HeadSpec.from_json(json.loads((src / HEAD_DIR / "head.json").read_text(encoding="utf-8")))
    public = dict(spec.to_json(), backbone=public_source(spec.backbone),
                  dataset=public_name(spec.dataset) if spec.dataset else None)
    with atomic_file(dest / HEAD_DIR / "head.json") as tmp:
        tmp.write_text(json.dumps(public, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    digests = {"head.json": file_sha256(dest / HEAD_DIR / "head.json")}
    for name in HEAD_FILES[1:]:
        if (src / HEAD_DIR / name).is_file():
            shutil.copyfile(src / HEAD_DIR / name, dest / HEAD_DIR / name)
            digests[name] = file_sha256(dest / HEAD_DIR / name)
    return {**meta, "task": {**meta["task"], "head": public, "files_sha256": digests}}


def recheck_cosine(folder: Path, meta: dict[str, Any], encoder: Any, x: np.ndarray, run: Any) -> float:
    """Lowest per-image cosine between the export's logits (``run(x)``) and the PyTorch task model
    (`encoder` + the export's head/), for publish's re-check against the weights being published."""
    import torch

    model = load_exported_task(folder, meta, encoder)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x))[0].double().reshape(len(x), -1).numpy()
    got = np.asarray(run(x)["logits"], dtype=np.float64).reshape(len(x), -1)
    if got.shape != ref.shape:
        raise ExportError(f"{folder} gives logits {got.shape}, the model with its head {ref.shape}; export again")
    return float(((got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)).min())


def card_entry(meta: dict[str, Any]) -> dict[str, Any] | None:
    """What a model card says about a task export: task, kind, dataset, labels, the head's eval metrics."""
    head = (meta.get("task") or {}).get("head")
    if not head:
        return None
    return {k: head.get(k) for k in ("task", "kind", "dataset", "labels", "metrics", "includes_backbone")}
