"""Evaluation records: the JSON ``mimzoo eval -o`` writes, and the Hub ``model-index`` made from them.

A results file is a JSON list of records::

    {"model": str, "task": "knn"|"linear"|"attentive"|"finetune"|"seg-linear", "dataset": str,
     "split": "val"|"test", "metrics": {"top1": float (percent), "top5": float?},
     "config": {...}, "mimzoo_version": str}

(``seg-linear`` records hold ``{"miou", "pixel_acc", "macc"}`` instead, and the per-class IoU in
``config["per_class_iou"]``.)

Writing merges into an existing file: a new record replaces the one with the same model, task,
dataset and split, so one file can collect a whole table over several runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_file
from .._version import __version__
from ..errors import MimzooError

TASKS = {
    "knn": "k-NN classification on frozen features",
    "linear": "Linear probe on frozen features",
    "attentive": "Attentive probe on frozen features",
    "finetune": "End-to-end fine-tuning",
    "seg-linear": "Linear segmentation probe on frozen patch tokens",
}
SEG_METRICS = {"miou": ("mean_iou", "mIoU"), "pixel_acc": ("pixel_accuracy", "pixel accuracy")}  # key: (type, name)


class ResultsFileError(MimzooError):
    """A results file cannot be read or merged."""


@dataclass(frozen=True)
class EvalRecord:
    """One measured number set: a model, a task, a dataset split."""

    model: str  # the model as it was named: zoo name, "hf-hub:org/name" or a folder
    task: str  # one of TASKS
    dataset: str  # "digits", "cifar10", "cifar100" or the image folder's name
    split: str  # the measured split: "val" or "test"
    metrics: dict[str, float]  # "top1" and (with 5+ classes) "top5", in percent
    config: dict[str, Any] = field(default_factory=dict)  # the settings that produced it
    mimzoo_version: str = __version__  # the mimzoo that measured it

    @property
    def top1(self) -> float:
        return float(self.metrics["top1"])

    @property
    def top5(self) -> float | None:
        return self.metrics.get("top5")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EvalRecord:
        try:
            return cls(model=str(raw["model"]), task=str(raw["task"]), dataset=str(raw["dataset"]),
                       split=str(raw.get("split", "val")), metrics=dict(raw["metrics"]),
                       config=dict(raw.get("config") or {}), mimzoo_version=str(raw.get("mimzoo_version", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise ResultsFileError(f"not an eval record ({e}); re-run `mimzoo eval -o FILE`") from e

    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.task, self.dataset, self.split)


def read_results(path: str | Path) -> list[EvalRecord]:
    """The records of a results file.

    >>> [r.top1 for r in read_results("eval.json")]  # doctest: +SKIP
    """
    return [EvalRecord.from_dict(r) for r in read_json_list(path)]


def read_json_list(path: str | Path, error: type[MimzooError] = ResultsFileError) -> list[Any]:
    """The raw JSON list of a results file; a missing file, bad JSON or another shape raise `error`."""
    path = Path(path)
    fix = f"write it with `mimzoo eval ... -o {path}`"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise error(f"eval results file {path} not found; {fix}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e}); {fix}") from e
    if not isinstance(raw, list):
        raise error(f"{path} must hold a JSON list of eval records; {fix}")
    return raw


def write_results(path: str | Path, records: Iterable[EvalRecord], *, merge: bool = True) -> list[EvalRecord]:
    """Write `records` to `path` atomically, merged into the records already there (same key: replaced).

    Returns the records the file now holds.

    >>> write_results("eval.json", mimzoo.evaluate("mae-vit-b", "knn", "digits"))  # doctest: +SKIP
    """
    path = Path(path)
    new = list(records)
    old = read_results(path) if merge and path.exists() else []
    keys = {r.key() for r in new}
    merged = [r for r in old if r.key() not in keys] + new
    try:
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps([r.to_dict() for r in merged], indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e  # a failed write() names no file: name the output
    return merged


def _as_dict(r: EvalRecord | Mapping[str, Any]) -> Mapping[str, Any]:
    return r.to_dict() if isinstance(r, EvalRecord) else r


def model_index(records: Iterable[EvalRecord | Mapping[str, Any]], model_name: str) -> list[dict[str, Any]]:
    """The Hugging Face ``model-index`` (a model card's YAML) for eval records; ``[]`` without records.

    Each record becomes one image-classification result with top-1 (and top-5) accuracy in percent.

    Args:
        records: :class:`EvalRecord` objects or their dicts (the JSON of ``mimzoo eval -o``).
        model_name: the name the card gives the model, e.g. the Hub repo id.

    >>> model_index([{"model": "m", "task": "knn", "dataset": "digits", "split": "test",
    ...               "metrics": {"top1": 91.5}}], "acme/m")[0]["results"][0]["metrics"][0]["value"]
    91.5
    """
    results = []
    for rec in map(_as_dict, records):
        task, metrics = rec["task"], rec["metrics"]
        if task not in TASKS:
            raise ResultsFileError(f"record task '{task}' is not one of {', '.join(TASKS)}")
        if task == "seg-linear":  # segmentation: mIoU (and pixel accuracy), in percent
            values = [{"type": kind, "name": f"{label} ({task})", "value": float(metrics[key])}
                      for key, (kind, label) in SEG_METRICS.items() if metrics.get(key) is not None]
        else:
            values = [{"type": "accuracy", "name": f"top-1 accuracy ({task})", "value": float(metrics["top1"])}]
        if metrics.get("top5") is not None:
            values.append({"type": "accuracy", "name": f"top-5 accuracy ({task})", "value": float(metrics["top5"])})
        results.append({
            "task": {"type": "image-segmentation" if task == "seg-linear" else "image-classification",
                     "name": TASKS[task]},
            "dataset": {"type": rec["dataset"], "name": rec["dataset"], "split": rec.get("split", "val")},
            "metrics": values,
        })
    return [{"name": model_name, "results": results}] if results else []


def table_rows(records: Iterable[EvalRecord]) -> list[dict[str, Any]]:
    """Rows for :func:`mimzoo.cli.table.render` (see :data:`TABLE_COLUMNS`)."""
    rows = []
    for r in records:
        c = r.config
        m = r.metrics
        rows.append({"model": r.model, "task": r.task, "dataset": r.dataset, "split": r.split,
                     "top1": None if m.get("top1") is None else round(r.top1, 2),
                     "top5": None if r.top5 is None else round(r.top5, 2),
                     "miou": None if m.get("miou") is None else round(m["miou"], 2),
                     "pixel_acc": None if m.get("pixel_acc") is None else round(m["pixel_acc"], 2),
                     "train": c.get("train_images"), "eval": c.get("eval_images"), "seconds": c.get("seconds")})
    return rows


SEG_TABLE_COLUMNS = [("model", "model"), ("task", "task"), ("dataset", "dataset"), ("split", "split"),
                     ("miou", "mIoU %"), ("pixel_acc", "pixel acc %"), ("train", "train imgs"), ("eval", "eval imgs"),
                     ("seconds", "seconds")]


def table_columns(records: Iterable[EvalRecord]) -> list[tuple[str, str]]:
    """The table's columns: classification's, segmentation's, or both when the records mix them."""
    kinds = {r.task == "seg-linear" for r in records}
    if kinds == {True}:
        return SEG_TABLE_COLUMNS
    if kinds == {False} or not kinds:
        return TABLE_COLUMNS
    return TABLE_COLUMNS[:6] + SEG_TABLE_COLUMNS[4:6] + TABLE_COLUMNS[6:]


TABLE_COLUMNS = [("model", "model"), ("task", "task"), ("dataset", "dataset"), ("split", "split"), ("top1", "top-1 %"),
                 ("top5", "top-5 %"), ("train", "train imgs"), ("eval", "eval imgs"), ("seconds", "seconds")]
