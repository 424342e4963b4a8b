"""Evaluation results (``mimzoo eval ... -o FILE``) for model cards.

The file is a JSON list of records::

    {"model": str, "task": "knn"|"linear"|"attentive"|"finetune"|"seg-linear", "dataset": str,
     "split": "val"|"test", "metrics": {"top1": float (percent), "top5": float?}
     (seg-linear: {"miou": float (percent), "pixel_acc": float?}),
     "config": {...}, "mimzoo_version": str}

Only the records of the model being published go into its card; local dataset paths are reduced
to their folder name so a card never shows someone's file system.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import MimzooError
from ..eval.results import TASKS, model_index, read_json_list  # noqa: F401 - eval owns the record format
from .public import public_name

SPLITS = ("val", "test")


class EvalResultsError(MimzooError):
    """An eval-results file cannot go into a model card."""


def read_eval_results(path: str | Path, aliases: Iterable[str]) -> list[dict[str, Any]]:
    """The checked records of `path` that belong to the model known by any of `aliases`.

    Args:
        path: the JSON file `mimzoo eval -o` wrote.
        aliases: names the model is known by (zoo name, folder, repo id); folders compare by location.

    >>> read_eval_results("eval.json", ["mae-vit-b"])  # doctest: +SKIP
    """
    records = read_json_list(path, EvalResultsError)
    for i, rec in enumerate(records):
        _check_record(rec, f"{path} record {i}")
    names = [a for a in aliases if a]
    mine = [r for r in records if any(_same_model(r["model"], a) for a in names)]
    if records and not mine:
        found = ", ".join(sorted({r["model"] for r in records}))
        raise EvalResultsError(f"{path} holds results for {found}, not for {names[0]}; pass the results of this model")
    return [dict(r, dataset=public_name(r["dataset"])) for r in mine]


def _check_record(rec: Any, where: str) -> None:
    if not isinstance(rec, dict):
        raise EvalResultsError(f"{where} is not an object; re-run `mimzoo eval -o`")
    for key in ("model", "task", "dataset"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            raise EvalResultsError(f"{where} has no '{key}'; re-run `mimzoo eval -o`")
    if rec["task"] not in TASKS:
        raise EvalResultsError(f"{where} has task {rec['task']!r}, not one of {', '.join(TASKS)}")
    if rec.get("split", "val") not in SPLITS:
        raise EvalResultsError(f"{where} has split {rec.get('split')!r}, not one of {', '.join(SPLITS)}")
    metrics = rec.get("metrics")
    required, optional = ("miou", ("pixel_acc",)) if rec["task"] == "seg-linear" else ("top1", ("top5",))
    for key in (required, *optional):
        value = metrics.get(key) if isinstance(metrics, dict) else None
        if key in optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 100.0:
            raise EvalResultsError(f"{where} needs metrics.{key} as a percentage in [0, 100], got {value!r}")


def _same_model(a: str, b: str) -> bool:
    if a == b or a.removeprefix("hf-hub:") == b.removeprefix("hf-hub:"):
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
