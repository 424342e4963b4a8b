"""`HeadSpec`: what a saved head is, read back from ``head.json`` and checked field by field.

No torch here: the spec is plain data, so ``mimzoo verify`` / the card / the torch-free runtime
can read it. Every limit a check applies lives in this module, never in the JSON it checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import MimzooError

FORMAT = 1  # head.json layout version this mimzoo writes and reads
TASKS = ("classification", "segmentation")
CONSUMES = ("pooled", "patch-grid")  # the pooled embedding [N, D], or patch tokens as a grid [N, D, h, w]
MAX_CLASSES = 100_000  # more labels than this is not a head mimzoo wrote
MAX_LABEL_CHARS = 200
MAX_JSON_BYTES = 16 * 1024 * 1024  # labels included
_HEX = set("0123456789abcdef")


class HeadFolderError(MimzooError):
    """A head folder is missing, incomplete, or does not describe a head mimzoo can load."""


@dataclass(frozen=True)
class HeadSpec:
    """A trained head, as ``head.json`` holds it (one comment per field)."""

    task: str  # "classification" (logits [N, K]) or "segmentation" (logits [N, K, H, W] + mask [N, H, W])
    kind: str  # head kind in the registry (mimzoo.tasks.kinds): "linear", "finetune", "seg-linear", ...
    labels: tuple[str, ...]  # class names, index = class id (digits: "0".."9"; folders: class folder names)
    consumes: str  # "pooled" embedding or "patch-grid" tokens (see CONSUMES)
    backbone: str  # name of the backbone the head was trained on (zoo name, folder or hf-hub id)
    backbone_sha256: str  # state digest (mimzoo.exporters.metadata.state_sha256) of that backbone
    num_features: int  # the backbone's embedding size D
    input_size: tuple[int, int, int]  # C, H, W the head was trained at
    mean: tuple[float, ...]  # preprocessing: per-channel mean after scaling to [0, 1]
    std: tuple[float, ...]  # preprocessing: per-channel std after scaling to [0, 1]
    includes_backbone: bool = False  # True: backbone.safetensors holds fine-tuned backbone weights (kind "finetune")
    finetuned_sha256: str | None = None  # state digest of those fine-tuned weights (checked on load)
    dataset: str | None = None  # what it was trained on ("digits", a folder path, ...)
    metrics: dict[str, float] = field(default_factory=dict)  # eval results: top1/top5 or miou/pixel_acc, percent
    head_args: dict[str, Any] = field(default_factory=dict)  # kind-specific constructor settings (JSON scalars)
    mimzoo_version: str = ""  # the mimzoo that wrote it
    format: int = FORMAT  # head.json layout version

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> dict[str, Any]:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # as JSON reads back
        d["num_classes"] = self.num_classes  # for readers; checked against labels on load
        return d

    def check(self) -> HeadSpec:
        """Raise :class:`HeadFolderError` unless every field is well-formed; returns self."""
        _one_of("task", self.task, TASKS)
        _one_of("consumes", self.consumes, CONSUMES)
        if not isinstance(self.kind, str) or not self.kind.replace("-", "").isalnum() or len(self.kind) > 64:
            raise HeadFolderError(f"head.json: kind {self.kind!r} is not a head kind name")
        _labels(self.labels)
        for name in ("backbone", "backbone_sha256", "mimzoo_version"):
            if not isinstance(getattr(self, name), str):
                raise HeadFolderError(f"head.json: {name} must be a string")
        if self.dataset is not None and not isinstance(self.dataset, str):
            raise HeadFolderError("head.json: dataset must be a string or null")
        for name in ("backbone_sha256", "finetuned_sha256"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or len(v) != 64 or not set(v) <= _HEX):
                raise HeadFolderError(f"head.json: {name} must be a 64-digit sha256")
        if self.includes_backbone != (self.finetuned_sha256 is not None):
            raise HeadFolderError("head.json: includes_backbone and finetuned_sha256 must come together")
        _int("num_features", self.num_features, 1, 65536)
        if len(self.input_size) != 3:
            raise HeadFolderError("head.json: input_size must be [C, H, W]")
        for v in self.input_size:
            _int("input_size", v, 1, 16384)
        for name in ("mean", "std"):
            vals = getattr(self, name)
            if len(vals) != self.input_size[0] or not all(_finite(v) for v in vals):
                raise HeadFolderError(f"head.json: {name} must hold {self.input_size[0]} finite numbers")
        if any(v <= 0 for v in self.std):
            raise HeadFolderError("head.json: std must be positive")
        if not all(isinstance(k, str) and _finite(v) for k, v in self.metrics.items()):
            raise HeadFolderError("head.json: metrics must map names to numbers")
        if not all(isinstance(k, str) and (v is None or isinstance(v, (str, int, float, bool)))
                   for k, v in self.head_args.items()):
            raise HeadFolderError("head.json: head_args must map names to JSON scalars")
        if self.format != FORMAT:
            raise HeadFolderError(f"head.json is format {self.format!r}; this mimzoo reads format {FORMAT}: "
                                  "upgrade mimzoo, or save the head again")
        return self

    @classmethod
    def from_json(cls, data: Any) -> HeadSpec:
        """Build and check a spec from parsed JSON (unknown or missing keys are refused)."""
        if not isinstance(data, dict):
            raise HeadFolderError("head.json must hold a JSON object")
        data = dict(data)
        stored_count = data.pop("num_classes", None)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise HeadFolderError(f"head.json has unknown field(s) {', '.join(unknown)}; save the head again "
                                  "with this mimzoo")
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING
                         and f.default_factory is MISSING)
        if missing:
            raise HeadFolderError(f"head.json lacks {', '.join(missing)}; save the head again with this mimzoo")
        for name in ("labels", "input_size", "mean", "std"):
            if not isinstance(data.get(name), list):
                raise HeadFolderError(f"head.json: {name} must be a list")
            data[name] = tuple(data[name])
        for name in ("metrics", "head_args"):
            if not isinstance(data.get(name, {}), dict):
                raise HeadFolderError(f"head.json: {name} must be an object")
        if not isinstance(data.get("includes_backbone", False), bool):
            raise HeadFolderError("head.json: includes_backbone must be true or false")
        spec = cls(**data).check()
        if stored_count is not None and stored_count != spec.num_classes:
            raise HeadFolderError(f"head.json: num_classes {stored_count!r} does not match its "
                                  f"{spec.num_classes} labels; save the head again")
        return spec


def read_spec(folder: str | Path) -> HeadSpec:
    """The checked spec of head folder `folder` (reads ``head.json`` only)."""
    path = Path(folder) / "head.json"
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise HeadFolderError(f"{path} is larger than {MAX_JSON_BYTES // 2**20} MiB; not a head mimzoo wrote")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise HeadFolderError(f"{folder} is not a head folder (no head.json); write one with "
                              "mimzoo eval ... --save-head DIR") from e
    except (OSError, ValueError) as e:
        raise HeadFolderError(f"{path} cannot be read as JSON ({e}); save the head again") from e
    return HeadSpec.from_json(data)


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise HeadFolderError(f"head.json: {name} {value!r} is not one of {', '.join(allowed)}")


def _int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise HeadFolderError(f"head.json: {name} must be an integer in [{lo}, {hi}], got {value!r}")


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _labels(labels: tuple[Any, ...]) -> None:
    if not 1 <= len(labels) <= MAX_CLASSES:
        raise HeadFolderError(f"head.json: labels must list 1 to {MAX_CLASSES} class names")
    if not all(isinstance(s, str) and 0 < len(s) <= MAX_LABEL_CHARS for s in labels):
        raise HeadFolderError(f"head.json: every label must be a non-empty string of at most {MAX_LABEL_CHARS} "
                              "characters")
    if len(set(labels)) != len(labels):
        raise HeadFolderError("head.json: labels must be distinct")
