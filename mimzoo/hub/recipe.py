"""Release recipes: ``exports/<model>.toml``, one per model the project publishes.

A recipe says which model to release, the validation gates it must pass, the exports to build and
verify (with their tolerances), and the Hub repo to publish to. ``mimzoo release RECIPE`` runs
load -> validate -> export -> verify -> publish and stops at the first failed gate; this module
only reads and checks recipes (see exports/README.md for the format).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MimzooError
from ..registry.contract import Reference
from .repo_id import RepoIdError, validate_branch, validate_repo_id

FORMAT = 1
TASKS = ("knn", "linear", "attentive", "finetune")
SPLITS = ("val", "test")
EXPORT_FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
TOLERANCES = ("max_abs", "max_rel", "cosine_min", "knn_top1_agreement")
REFERENCES = ("linear_top1", "finetune_top1", "knn_top1")  # fields of the plugin's Reference a gate may compare to


class RecipeError(MimzooError):
    """A release recipe is malformed."""


@dataclass(frozen=True)
class Gate:
    """One validation the model must pass before anything is exported or published."""

    task: str  # eval task, one of TASKS
    dataset: str  # dataset name as it appears in the card, e.g. "imagenet-1k" or "digits"
    data: str  # what `mimzoo eval --data` receives; "$VAR"/"${VAR}" are expanded when the release runs
    split: str = "val"  # split evaluated, one of SPLITS
    min_top1: float | None = None  # fail below this top-1 (percent)
    reference: str | None = None  # or: compare with this paper number of the variant (REFERENCES)
    max_drop: float | None = None  # ... allowing this many points below it
    options: Mapping[str, Any] = field(default_factory=dict)  # extra eval options (k, epochs, batch size)

    def threshold(self, ref: Reference | None) -> float:
        """The lowest top-1 (percent) that passes, given the variant's paper numbers."""
        if self.min_top1 is not None:
            return self.min_top1
        value = getattr(ref, self.reference or "", None) if ref is not None else None
        if value is None:
            raise RecipeError(f"gate {self.task}/{self.dataset} compares with {self.reference}, which the model lacks")
        return float(value) - float(self.max_drop or 0.0)

    def resolved_data(self) -> str:
        """`data` with environment variables expanded; an unset variable is an error naming it."""
        expanded = os.path.expandvars(self.data)
        if "$" in expanded:
            raise RecipeError(f"gate {self.task}/{self.dataset}: set the environment variable in {self.data!r}")
        return expanded


@dataclass(frozen=True)
class ExportTarget:
    """One export to build and verify."""

    format: str  # "onnx" or "tensorrt"
    precision: str  # "fp32", "fp16" or "int8"
    opset: int = 17  # ONNX opset (>= 17 keeps LayerNorm one node)
    batch: str | int = "dynamic"  # "dynamic" or a fixed batch size
    tolerances: Mapping[str, float] = field(default_factory=dict)  # verification limits (TOLERANCES)
    publish: bool = True  # ship it in the Hub repo (TensorRT engines never are: they are per-GPU)


@dataclass(frozen=True)
class ReleaseRecipe:
    """A model release: what to load, check, export and publish where."""

    path: Path  # the recipe file
    model: str  # zoo name (or model folder) to release
    weights: str | None  # weight-source tag or checkpoint; None takes the default source
    repo: str  # Hub repo id, org/name
    revision: str  # branch to publish to
    private: bool  # create the repo private
    license: str  # license id the card states; must equal the method's
    gates: tuple[Gate, ...]  # validation, in order; the release stops at the first failure
    exports: tuple[ExportTarget, ...]  # exports to build and verify, in order
    message: str | None = None  # commit message

    @property
    def published_exports(self) -> tuple[ExportTarget, ...]:
        return tuple(e for e in self.exports if e.publish)


def load_recipe(path: str | Path, *, check_registry: bool = True) -> ReleaseRecipe:
    """Read and check a release recipe.

    Args:
        path: the recipe file, e.g. ``exports/mae-vit-b.toml``.
        check_registry: also check the model, weights tag, license and reference numbers against the
            installed plugins.

    >>> load_recipe("exports/mae-vit-b.toml").repo  # doctest: +SKIP
    'mimzoo/mae-vit-b'
    """
    path = Path(path)
    raw = _read_toml(path)
    where = str(path)
    _only(raw, ("format", "model", "weights", "hub", "validate", "export"), where)
    if raw.get("format") != FORMAT:
        raise RecipeError(f"{where}: 'format' must be {FORMAT}")
    hub = _table(raw, "hub", where)
    _only(hub, ("repo", "revision", "private", "license", "message"), f"{where} [hub]")
    try:
        repo = validate_repo_id(_str(hub, "repo", f"{where} [hub]"))
        revision = validate_branch(hub.get("revision", "main"))
    except RepoIdError as e:
        raise RecipeError(f"{where} [hub]: {e}") from e
    recipe = ReleaseRecipe(
        path=path,
        model=_str(raw, "model", where),
        weights=_opt_str(raw, "weights", where),
        repo=repo,
        revision=revision,
        private=_bool(hub, "private", f"{where} [hub]", False),
        license=_str(hub, "license", f"{where} [hub]").lower(),
        gates=tuple(_gate(g, f"{where} [[validate]] {i + 1}") for i, g in enumerate(_array(raw, "validate", where))),
        exports=tuple(_export(e, f"{where} [[export]] {i + 1}") for i, e in enumerate(_array(raw, "export", where))),
        message=_opt_str(hub, "message", f"{where} [hub]"),
    )
    if check_registry:
        _check_registry(recipe)
    return recipe


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        from .._deps import require

        tomllib = require("tomli")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RecipeError(f"release recipe {path} not found; recipes live in exports/<model>.toml") from e
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path} is not valid TOML ({e}); fix the file") from e


def _gate(raw: Any, where: str) -> Gate:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where} must be a table")
    _only(raw, ("task", "dataset", "data", "split", "min_top1", "reference", "max_drop", "options"), where)
    gate = Gate(
        task=_choice(raw, "task", TASKS, where),
        dataset=_str(raw, "dataset", where),
        data=_str(raw, "data", where),
        split=_choice(raw, "split", SPLITS, where, "val"),
        min_top1=_opt_num(raw, "min_top1", where, 0.0, 100.0),
        reference=_choice(raw, "reference", REFERENCES, where, None),
        max_drop=_opt_num(raw, "max_drop", where, 0.0, 100.0),
        options=dict(_table(raw, "options", where)),
    )
    if (gate.min_top1 is None) == (gate.reference is None):
        raise RecipeError(f"{where}: give either min_top1 or reference (+ max_drop), not both or neither")
    return gate


def _export(raw: Any, where: str) -> ExportTarget:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where} must be a table")
    _only(raw, ("format", "precision", "opset", "batch", "tolerances", "publish"), where)
    tolerances = _table(raw, "tolerances", where)
    _only(tolerances, TOLERANCES, f"{where} tolerances")
    for key in tolerances:
        _opt_num(tolerances, key, f"{where} tolerances", 0.0, 1.0 if key in ("cosine_min", "knn_top1_agreement") else None)
    target = ExportTarget(
        format=_choice(raw, "format", EXPORT_FORMATS, where),
        precision=_choice(raw, "precision", PRECISIONS, where),
        opset=int(_opt_num(raw, "opset", where, 17, 30) or 17),
        batch=_batch(raw.get("batch", "dynamic"), where),
        tolerances={k: float(v) for k, v in tolerances.items()},
        publish=_bool(raw, "publish", where, raw.get("format") == "onnx"),
    )
    if target.publish and target.format != "onnx":
        raise RecipeError(f"{where}: only ONNX exports are published (TensorRT engines are built per GPU); set publish = false")
    if not target.tolerances:
        raise RecipeError(f"{where}: give the verification tolerances (e.g. cosine_min, max_abs)")
    return target


def _check_registry(recipe: ReleaseRecipe) -> None:
    from ..registry import get_registry

    where = str(recipe.path)
    try:
        entry = get_registry().model(recipe.model)
    except MimzooError as e:
        raise RecipeError(f"{where}: {e}") from e
    v, m = entry.variant, entry.method
    if recipe.weights is not None and v.weight_source(recipe.weights) is None:
        raise RecipeError(f"{where}: '{recipe.model}' has no weight source '{recipe.weights}' "
                          f"(sources: {', '.join(w.name for w in v.weights) or 'none'})")
    if recipe.weights is None and not v.weights:
        raise RecipeError(f"{where}: '{recipe.model}' has no pretrained weights to release")
    license = v.license_for(m)
    if recipe.license != license.lower():
        raise RecipeError(f"{where}: license {recipe.license} differs from the {v.name} weights' license {license}")
    for gate in recipe.gates:
        gate.threshold(v.reference)  # the paper number a gate refers to must exist


# -- small typed getters, each naming the file and key on error ------------------------------------

def _only(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _str(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"{where}: '{key}' must be a non-empty string")
    return value


def _opt_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if raw.get(key) is None else _str(raw, key, where)


def _bool(raw: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise RecipeError(f"{where}: '{key}' must be true or false")
    return value


def _opt_num(raw: Mapping[str, Any], key: str, where: str, lo: float, hi: float | None) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or (hi is not None and value > hi):
        bounds = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise RecipeError(f"{where}: '{key}' must be a number in {bounds}, got {value!r}")
    return float(value)


def _choice(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str, default: Any = ...) -> Any:
    value = raw.get(key, default)
    if value is ...:
        raise RecipeError(f"{where}: '{key}' is required (one of {', '.join(allowed)})")
    if value is not None and value not in allowed:
        raise RecipeError(f"{where}: '{key}' is {value!r}, not one of {', '.join(allowed)}")
    return value


def _table(raw: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: '{key}' must be a table")
    return value


def _array(raw: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise RecipeError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return value


def _batch(value: Any, where: str) -> str | int:
    if value == "dynamic" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise RecipeError(f"{where}: 'batch' must be \"dynamic\" or a positive integer, got {value!r}")
