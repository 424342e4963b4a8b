"""`mimzoo release exports/<model>.toml`: one gated run from a recipe to a published Hub repo.

    load --> validate (each gate) --> export (each target) --> verify (each export) --> publish
             a failed gate stops the run here: the later stages are skipped, nothing is uploaded

Every stage goes through the public API (`mimzoo.load`, `mimzoo.evaluate`, `mimzoo.export`,
`mimzoo.verify`, `mimzoo.publish`), so a release does exactly what a person typing the commands
would. The run returns a :class:`ReleaseReport` (one row per stage); a failed gate raises
:class:`ReleaseGateError`, which carries that report so the CLI can print the table.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import MimzooError
from .recipe import ExportTarget, Gate, ReleaseRecipe, load_recipe
from .shipped import resolve_recipe

log = logging.getLogger(__name__)
Say = Callable[[str], None]

STAGES = ("load", "validate", "export", "verify", "publish")
STATUSES = ("passed", "failed", "skipped")
# how each verification figure compares with its tolerance to pass
TOLERANCE_OPS = {"max_abs": "<=", "max_rel": "<=", "cosine_min": ">=", "knn_top1_agreement": ">=", "knn_top1_drop": "<="}
EVAL_FILE = "eval.json"  # the eval records of the gates, in the work dir (what `mimzoo eval -o` writes)


class ReleaseError(MimzooError):
    """A release cannot start (bad arguments, missing data, no token); nothing was run."""


class ReleaseGateError(MimzooError):
    """A gate failed: the release stopped there and nothing was uploaded. ``.report`` has the table."""

    def __init__(self, message: str, report: ReleaseReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class StageResult:
    """One row of the release table: a stage applied to one thing."""

    stage: str  # one of STAGES
    target: str  # what the row is about: the model, "knn digits", "onnx fp32", "org/name@main"
    status: str  # one of STATUSES
    metric: str | None = None  # name of the measured figure: "top1", "cosine_min", "max_abs", ...
    value: float | None = None  # the measured figure
    threshold: float | None = None  # the limit it is compared with
    op: str | None = None  # ">=" or "<=": how value must compare with threshold to pass
    artifacts: tuple[str, ...] = ()  # folders, files or URLs this stage produced
    note: str = ""  # one more line: other figures, the commit, why it was skipped
    seconds: float | None = None  # how long the stage took (None: skipped)

    def figure(self) -> str:
        """The measured figure against its limit, e.g. ``top1 62.44 >= 55.00`` ('' when none)."""
        if self.metric is None or self.value is None:
            return ""
        if self.threshold is None:
            return f"{self.metric} {_num(self.metric, self.value)}"
        ok = self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold
        op = self.op if ok else {">=": "<", "<=": ">"}[self.op or ">="]
        return f"{self.metric} {_num(self.metric, self.value)} {op} {_num(self.metric, self.threshold)}"


@dataclass(frozen=True)
class ReleaseReport:
    """What `mimzoo release` did, stage by stage."""

    recipe: str  # the recipe file
    model: str  # the model released
    repo: str  # Hub repo id, org/name
    revision: str  # branch published to
    dry_run: bool  # True when nothing was (to be) uploaded
    stages: tuple[StageResult, ...]  # one row per stage and item, in run order
    workdir: str | None = None  # where the exports and eval.json were kept (None: a temporary folder, removed)
    folder: str | None = None  # the Hub-ready repo folder written (dry run or output)
    commit: str | None = None  # the commit published (None: dry run or stopped)
    previous: str | None = None  # the branch head before publishing
    url: str | None = None  # the repo's URL

    @property
    def passed(self) -> bool:
        return all(s.status == "passed" for s in self.stages)

    @property
    def failed(self) -> StageResult | None:
        """The gate that stopped the release, if any."""
        return next((s for s in self.stages if s.status == "failed"), None)

    @property
    def load_name(self) -> str | None:
        """What `mimzoo.load` takes to get exactly this release (None when nothing was published)."""
        return f"hf-hub:{self.repo}@{self.commit}" if self.commit else None


@dataclass
class _Context:
    """What the stages hand on to each other (internal, mutable)."""

    recipe: ReleaseRecipe
    work: Path
    say: Say
    encoder: Any = None
    records: list[Any] = field(default_factory=list)
    exports: dict[int, Path] = field(default_factory=dict)
    published: Any = None  # the PublishResult


@dataclass(frozen=True)
class _Step:
    stage: str  # one of STAGES
    target: str  # row label
    run: Callable[[_Context], StageResult]  # does the work, returns the row


def release(
    recipe_path: str | Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    workdir: str | Path | None = None,
    dry_run: bool = False,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: Say | None = None,
) -> ReleaseReport:
    """Release a model as its recipe says: load, validate, export, verify, publish; stop at the first failed gate.

    Args:
        recipe_path: the release recipe, e.g. ``exports/mae-vit-digits.toml`` (format: exports/README.md), or
            the name of a model whose recipe ships with mimzoo, e.g. ``"mae-vit-digits"``.
        endpoint: Hub URL to publish to (default: ``HF_ENDPOINT`` or huggingface.co). The weights
            themselves load from where the model's weight source says.
        token: Hub token (default: ``HF_TOKEN`` or the huggingface_hub login); never logged or printed.
        workdir: folder for the exports and the eval results, kept afterwards (default: a temporary
            folder, removed). Export folders of an earlier release there are replaced.
        dry_run: write the Hub-ready repo folder to `output` and upload nothing.
        output: where to write the repo folder (required with `dry_run`); written atomically.
        overwrite: replace an existing `output` folder.
        progress: called with one line per step (the CLI prints them on stderr).

    Returns:
        A :class:`ReleaseReport` whose stages all passed.

    Raises:
        ReleaseGateError: a gate failed; ``.report`` holds the table (later stages "skipped") and
            nothing was uploaded.

    >>> report = mimzoo.release("exports/mae-vit-digits.toml", dry_run=True, output="out/repo")  # doctest: +SKIP
    >>> [(s.stage, s.status) for s in report.stages][:2]  # doctest: +SKIP
    [('load', 'passed'), ('validate', 'passed')]
    """
    say = progress or log.info
    recipe = load_recipe(resolve_recipe(recipe_path))
    _preflight(recipe, dry_run=dry_run, output=output, overwrite=overwrite, token=token)
    publish_opts = dict(endpoint=endpoint, token=token, dry_run=dry_run, output=output, overwrite=overwrite)
    with _work_dir(workdir) as work:
        ctx = _Context(recipe=recipe, work=work, say=say)
        rows = _run(_plan(recipe, work, publish_opts), ctx)
    result = ctx.published
    report = ReleaseReport(
        recipe=str(recipe.path), model=recipe.model, repo=recipe.repo, revision=recipe.revision, dry_run=dry_run,
        stages=tuple(rows), workdir=str(workdir) if workdir is not None else None,
        folder=str(result.folder) if result is not None and result.folder is not None else None,
        commit=getattr(result, "commit", None), previous=getattr(result, "previous", None),
        url=getattr(result, "url", None),
    )
    if report.failed is not None:
        raise ReleaseGateError(_gate_message(report, report.failed), report)
    return report


# -- before any work -------------------------------------------------------------------------------

def _preflight(recipe: ReleaseRecipe, *, dry_run: bool, output: Any, overwrite: bool, token: str | None) -> None:
    """Everything that can be refused in a second, before hours of evaluation."""
    if dry_run and output is None:
        raise ReleaseError("a dry run writes the Hub-ready repo folder locally: pass output (-o DIR)")
    if output is not None and Path(output).exists() and not overwrite:
        raise ReleaseError(f"{output} already exists; choose another folder or pass --overwrite (overwrite=True)")
    for gate in recipe.gates:
        gate.resolved_data()  # an unset $VAR is an error naming it
    if any(e.format == "tensorrt" for e in recipe.exports):
        from ..exporters.tensorrt import unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise ReleaseError(f"{recipe.path} has TensorRT exports, which need TensorRT and an NVIDIA GPU ({reason}); "
                               "run the release on such a machine")
    if not dry_run and not (token or _login_token()):
        raise ReleaseError("publishing needs a Hub token with write access: set HF_TOKEN (or `hf auth login`), "
                           "or pass --dry-run -o DIR to write the repo folder only")


def _login_token() -> str | None:
    from .._deps import require

    return require("huggingface_hub").get_token()


@contextlib.contextmanager
def _work_dir(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    from .publish import staging_folder

    with staging_folder("release") as tmp:  # in mimzoo's cache, swept if a run is killed; never /tmp
        yield tmp


# -- the plan: one step per row --------------------------------------------------------------------

def _plan(recipe: ReleaseRecipe, work: Path, publish_opts: dict[str, Any]) -> list[_Step]:
    names = _export_names(recipe.exports)
    steps = [_Step("load", recipe.model, _load)]
    for i, gate in enumerate(recipe.gates):
        steps.append(_Step("validate", f"{gate.task} {gate.dataset}", lambda c, i=i: _validate(c, i)))
    for i, name in enumerate(names):
        steps.append(_Step("export", name, lambda c, i=i, n=name: _export(c, i, work / n)))
    for i, name in enumerate(names):
        steps.append(_Step("verify", name, lambda c, i=i: _verify(c, i)))
    steps.append(_Step("publish", f"{recipe.repo}@{recipe.revision}", lambda c: _publish(c, publish_opts)))
    return steps


def _export_names(exports: tuple[ExportTarget, ...]) -> list[str]:
    """Folder names in the work dir: onnx-fp32, onnx-fp16, ... (numbered when a pair repeats)."""
    names: list[str] = []
    for e in exports:
        base = f"{e.format}-{e.precision}" + (f"-b{e.batch}" if e.batch != "dynamic" else "")
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def _run(steps: list[_Step], ctx: _Context) -> list[StageResult]:
    """Run the steps in order; after the first failed gate, the rest are reported skipped."""
    rows: list[StageResult] = []
    for i, step in enumerate(steps):
        ctx.say(f"[{step.stage}] {step.target}")
        start = time.perf_counter()
        row = replace(step.run(ctx), seconds=round(time.perf_counter() - start, 2))
        rows.append(row)
        ctx.say(f"[{step.stage}] {step.target}: {row.status}" + (f" ({row.figure()})" if row.figure() else ""))
        if row.status == "failed":
            why = f"stopped at the failed {row.stage} gate ({row.target})"
            rows += [StageResult(s.stage, s.target, "skipped", note=why) for s in steps[i + 1:]]
            break
    return rows


# -- the stages ------------------------------------------------------------------------------------

def _load(ctx: _Context) -> StageResult:
    from ..api.load import load

    r = ctx.recipe
    ctx.encoder = enc = load(r.model, weights=r.weights)
    w = enc.info.weights
    params = sum(p.numel() for p in enc.parameters()) / 1e6
    note = f"{enc.info.arch}, {params:.2f}M params, weights {w.source if w else 'random init'}"
    if w is not None and w.sha256:
        note += f" (sha256 {w.sha256[:12]})"
    return StageResult("load", r.model, "passed", note=note)


def _validate(ctx: _Context, i: int) -> StageResult:
    from ..api.evaluate import evaluate

    gate = ctx.recipe.gates[i]
    threshold = gate.threshold(_reference(ctx.recipe.model))
    (record,) = evaluate(ctx.encoder, gate.task, gate.resolved_data(), **dict(gate.options))
    record = _card_record(record, gate, ctx.encoder)
    ctx.records.append(record)
    note = f"{gate.task} on {gate.dataset}, {record.split} split, {record.config.get('eval_images', '?')} images"
    if record.split != gate.split:
        log.warning("gate %s/%s: the recipe says split %s, the data's evaluation split is %s",
                    gate.task, gate.dataset, gate.split, record.split)
        note += f" (recipe says {gate.split})"
    status = "passed" if record.top1 >= threshold else "failed"
    return StageResult("validate", f"{gate.task} {gate.dataset}", status, "top1", record.top1, threshold, ">=",
                       note=note)


def _reference(model: str) -> Any:
    from ..registry import get_registry

    try:
        return get_registry().model(model).variant.reference
    except MimzooError:  # a model folder: gates give min_top1
        return None


def _card_record(record: Any, gate: Gate, encoder: Any) -> Any:
    """The record as the card shows it: the recipe's dataset name, the released model's name."""
    return replace(record, model=encoder.info.name, dataset=gate.dataset)


def _export(ctx: _Context, i: int, out: Path) -> StageResult:
    from ..api.export import export
    from ..exporters.spec import VerificationError

    target = ctx.recipe.exports[i]
    if out.exists() or out.is_symlink():  # an earlier release's export: never left beside this one
        _check_own_export(out)
        ctx.say(f"removing {out} from an earlier release")
        shutil.rmtree(out)
    try:
        result = export(ctx.encoder, out, format=target.format, precision=target.precision, batch=target.batch,
                        opset=target.opset, tolerances=dict(target.tolerances), progress=ctx.say)
    except VerificationError as e:  # the export API wrote nothing under `out`
        return _tolerance_row("export", out.name, e.report, target, note=f"nothing was written to {out}")
    ctx.exports[i] = result.path
    return _tolerance_row("export", out.name, result.verification, target, artifacts=(str(result.path),))


def _check_own_export(out: Path) -> None:
    """Refuse to delete a folder in the work dir that mimzoo's export did not write (no marker, or foreign files)."""
    from .._outputs import ForeignOutputError, check_replaceable

    try:
        check_replaceable(out, "export")
    except ForeignOutputError as e:
        what = str(e).split(";")[0]
        raise ReleaseError(f"{what}; release replaces only exports mimzoo wrote: choose another --workdir, or move "
                           f"{out} away yourself") from e


def _verify(ctx: _Context, i: int) -> StageResult:
    """Check the written export again, from disk, against the very encoder that passed the gates."""
    from ..api.export import verify

    target, path = ctx.recipe.exports[i], ctx.exports[i]
    rep = verify(path, model=ctx.encoder, tolerances=dict(target.tolerances), raise_on_failure=False,
                 progress=ctx.say)
    if not rep["passed"]:  # never leave an export that looks valid but is not
        shutil.rmtree(path, ignore_errors=True)
        return _tolerance_row("verify", path.name, rep, target, note=f"{path} removed")
    return _tolerance_row("verify", path.name, rep, target, artifacts=(str(path),))


def _tolerance_row(stage: str, target: str, rep: dict[str, Any], spec: ExportTarget,
                   artifacts: tuple[str, ...] = (), note: str = "") -> StageResult:
    """A row for a verification report: the first broken tolerance, else the recipe's first one."""
    limits = dict(rep.get("tolerances") or {})
    keys = [k for k in spec.tolerances if k in limits] + [k for k in limits if k not in spec.tolerances]
    broken = [k for k in keys if not _within(rep.get(k), limits[k], TOLERANCE_OPS.get(k, "<="))]
    key = (broken or keys or [None])[0]
    others = ", ".join(f"{k}={_num(k, rep[k])}" for k in TOLERANCE_OPS if k != key and rep.get(k) is not None)
    status = "passed" if rep.get("passed") and not broken else "failed"
    return StageResult(stage, target, status, key, rep.get(key) if key else None, limits.get(key) if key else None,
                       TOLERANCE_OPS.get(key or "", "<="), artifacts, "; ".join(p for p in (others, note) if p))


def _within(value: Any, limit: float, op: str) -> bool:
    if value is None:
        return False
    return value >= limit if op == ">=" else value <= limit  # NaN fails both ways


def _publish(ctx: _Context, opts: dict[str, Any]) -> StageResult:
    from ..api.publish import publish
    from ..eval.results import write_results
    from .publish import PublishError

    r = ctx.recipe
    eval_file = None
    if ctx.records:  # the card's eval results, as `mimzoo eval -o` writes them
        eval_file = ctx.work / EVAL_FILE
        write_results(eval_file, ctx.records, merge=False)
    onnx = [ctx.exports[i] for i, e in enumerate(r.exports) if e.publish]
    try:
        res = publish(ctx.encoder, r.repo, revision=r.revision, private=r.private, with_onnx=onnx,
                      eval_results=eval_file, license=r.license,
                      commit_message=r.message or f"Release {r.model} with mimzoo", progress=ctx.say, **opts)
    except PublishError as e:  # its re-run hint names the API call; a release re-runs the recipe
        raise PublishError(str(e).replace(_encoder_rerun(r.repo), f"mimzoo release {r.path}")) from e
    ctx.published = res
    target = f"{r.repo}@{r.revision}"
    if res.dry_run:
        return StageResult("publish", target, "passed", artifacts=(str(res.folder),),
                           note=f"dry run: {len(res.files)} files written; nothing uploaded")
    changed = "nothing changed, already at" if res.commit == res.previous else "committed"
    return StageResult("publish", target, "passed", artifacts=(res.url, res.load_name),
                       note=f"{changed} {res.commit}; {len(res.files)} files, license {res.license}")


def _encoder_rerun(repo: str) -> str:
    return f"mimzoo.publish(encoder, {repo!r}, ...) with the same arguments"


# -- messages --------------------------------------------------------------------------------------

def _gate_message(report: ReleaseReport, row: StageResult) -> str:
    recipe = report.recipe
    done = "nothing was exported or uploaded" if row.stage == "validate" else "nothing was uploaded"
    fixes = {
        "validate": f"check the weights and preprocessing with `mimzoo eval`, or recalibrate the gate in {recipe} "
                    "if its floor is wrong",
        "export": f"try another opset or precision, or loosen [export.tolerances] in {recipe} only if that "
                  "difference is acceptable",
        "verify": f"the written export no longer matches PyTorch; re-run `mimzoo release {recipe}` and report "
                  "it if it persists",
    }
    figure = row.figure() or row.note or "failed"
    return (f"release of {report.model} stopped at {row.stage} ({row.target}): {figure}; {done}; "
            f"fix: {fixes.get(row.stage, 'see the table')}")


def _num(metric: str, value: float) -> str:
    """A figure at the precision that matters for it."""
    if metric in ("cosine_min", "knn_top1_agreement"):
        return f"{value:.6f}"
    if metric in ("top1", "top5", "knn_top1_drop"):
        return f"{value:.2f}"
    return f"{value:.3g}"
