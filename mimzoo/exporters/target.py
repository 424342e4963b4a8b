"""`mimzoo export MODEL --target cpu|cuda`: try every backend and precision this machine runs, keep the fastest
export that passes its gate.

Each candidate is exported and verified with mimzoo's gate for its precision (exactly as ``mimzoo export``
would), inside one hidden work folder beside the output. The ones that pass are timed side by side
(:func:`.bench.time_interleaved`: the same intra-op threads for all, interleaved rotating rounds, medians),
and only the fastest is moved under the output name, through the same atomic swap and marker as any
export. The work folder is removed whatever happens; a killed run leaves a temp folder the next export
to that output sweeps away. The table of every candidate says why it was kept or dropped.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir
from .._outputs import read_marker, temp_name
from .spec import ExportError, ExportSpec, VerificationError

log = logging.getLogger(__name__)
Say = Callable[[str], None]

TARGETS = ("cpu", "cuda")
# (bench backend, export format, precision), in the order they are tried
CPU_CANDIDATES = (("onnxruntime", "onnx", "fp32"), ("onnxruntime-int8", "onnx", "int8"),
                  ("openvino", "openvino", "fp32"), ("openvino-bf16", "openvino", "bf16"),
                  ("openvino-int8", "openvino", "int8"))
CUDA_CANDIDATES = (("onnxruntime", "onnx", "fp32"), ("onnxruntime-fp16", "onnx", "fp16"),
                   ("tensorrt", "tensorrt", "fp16"))
DOCTOR_HINT = "run `mimzoo doctor` to see what is missing"


@dataclass(frozen=True)
class TargetTiming:
    """How the candidates are timed against each other."""

    batch: int = 8  # images per timed call
    iters: int = 5  # interleaved rounds (each runs every candidate once)
    warmup: int = 2  # untimed calls first
    threads: int | None = None  # intra-op threads of every candidate (None: every usable core)


@dataclass(frozen=True)
class Candidate:
    """One backend and precision tried, and what became of it."""

    backend: str  # bench backend name (e.g. "openvino-bf16")
    format: str  # export format
    precision: str  # export precision
    status: str = "pending"  # "kept", "slower", "failed gate", "unavailable", "error"
    cosine_min: float | None = None  # verification figure reached (None: not verified)
    throughput: float | None = None  # images/s at the median of the timed rounds
    p50_ms: float | None = None  # median latency of one call
    iqr_ms: str | None = None  # "q1-q3" of the latencies
    threads: int | None = None  # intra-op threads its runtime used (read back)
    reason: str = ""  # why kept or dropped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TargetResult:
    """The winning export and the table of every candidate."""

    path: Path  # the output folder (the winner's export)
    meta: dict[str, Any]  # its export.json
    candidates: list[Candidate]
    timing: TargetTiming

    @property
    def winner(self) -> Candidate:
        return next(c for c in self.candidates if c.status == "kept")


def unavailable(backend: str, fmt: str, precision: str, target: str) -> str | None:
    """Why a candidate cannot run on this machine (None: it can be tried)."""
    if fmt == "openvino":
        from .openvino import INSTALL_HINT, missing

        why = missing(precision)
        if why:
            return f"{why}: {INSTALL_HINT}"
        caps = _openvino_capabilities()
        need = {"bf16": "BF16", "int8": "INT8"}.get(precision)
        if need and need not in caps:
            return f"this CPU reports no {need} support to OpenVINO ({', '.join(caps) or 'none'})"
    if target == "cuda":
        return _cuda_problem(fmt)
    return None


def _openvino_capabilities() -> list[str]:
    import openvino as ov

    return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def _cuda_problem(fmt: str) -> str | None:
    from .._deps import require

    torch = require("torch")
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if fmt == "tensorrt":
        from .tensorrt import unavailable_reason

        return unavailable_reason()
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
    return None


def candidates_for(target: str) -> list[Candidate]:
    """Every candidate of `target`, those that cannot run here already marked unavailable."""
    if target not in TARGETS:
        raise ExportError(f"unknown target '{target}'; use one of {', '.join(TARGETS)}")
    table = CPU_CANDIDATES if target == "cpu" else CUDA_CANDIDATES
    out = []
    for backend, fmt, precision in table:
        why = unavailable(backend, fmt, precision, target)
        out.append(Candidate(backend, fmt, precision, *(("unavailable",) if why else ()), reason=why or ""))
    if target == "cuda" and all(c.status == "unavailable" for c in out):
        reasons = "; ".join(sorted({c.reason for c in out}))
        raise ExportError(f"--target cuda has nothing to run on here ({reasons}); {DOCTOR_HINT}, or use --target cpu")
    return out


def run_target(src: Any, out: Path, target: str, spec: ExportSpec, *, timing: TargetTiming = TargetTiming(),
               export_one: Callable[[Any, Path, ExportSpec], Any], say: Say = log.info) -> TargetResult:
    """Export, verify and time every candidate of `target`; move the fastest passing one to `out`.

    `export_one(src, folder, spec)` makes one verified export (raising VerificationError beyond the gate):
    the caller passes :func:`.pipeline.run_export` with its verification options.
    """
    cands = candidates_for(target)
    work = out.with_name(temp_name(out.name, "tmp", "target" + uuid.uuid4().hex[:8]))
    work.mkdir(parents=True)
    try:
        cands = [_try(c, src, work, spec, export_one, say) for c in cands]
        passed = [c for c in cands if c.status == "pending"]
        if not passed:
            raise VerificationError(f"no export for --target {target} passed its gate here ("
                                    + "; ".join(f"{c.backend}: {c.reason}" for c in cands) + f"); nothing was written to {out}")
        cands = _time(cands, work, target, timing, say)
        best = max((c for c in cands if c.throughput), key=lambda c: c.throughput or 0.0)
        cands = [_verdict(c, best) for c in cands]
        meta = _promote(work / best.backend, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TargetResult(out, meta, cands, timing)


def _try(c: Candidate, src: Any, work: Path, spec: ExportSpec, export_one: Callable[..., Any], say: Say) -> Candidate:
    if c.status != "pending":
        say(f"{c.backend}: skipped ({c.reason})")
        return c
    say(f"{c.backend}: exporting {c.format} {c.precision} and verifying it")
    try:
        res = export_one(src, work / c.backend, replace(spec, format=c.format, precision=c.precision))
    except VerificationError as e:
        return replace(c, status="failed gate", cosine_min=e.report.get("cosine_min"),
                       reason="; ".join(e.report.get("failures") or [str(e)]))
    except ExportError as e:
        return replace(c, status="error", reason=str(e).splitlines()[0][:200])
    except Exception as e:  # a runtime failing on this model drops that candidate, not the others (as in bench)
        log.debug("candidate %s failed", c.backend, exc_info=True)
        text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return replace(c, status="error", reason=f"{type(e).__name__}: {text}" if text else type(e).__name__)
    return replace(c, cosine_min=res.meta["verification"]["cosine_min"])


def _time(cands: list[Candidate], work: Path, target: str, timing: TargetTiming, say: Say) -> list[Candidate]:
    """Time the verified candidates side by side: same threads, interleaved rotating rounds."""
    import numpy as np

    from .bench import BenchConfig, time_interleaved
    from .bench_backends import load_backend, sync_for
    from .metadata import read_export_folder

    names = [c.backend for c in cands if c.status == "pending"]
    cfg = BenchConfig(backends=tuple(names), batches=(timing.batch,), iters=timing.iters, warmup=timing.warmup,
                      threads=timing.threads, device="cpu" if target == "cpu" else "cuda")
    shape = read_export_folder(work / names[0]).meta["inputs"]["pixel_values"][1:]
    x = np.random.default_rng(0).standard_normal((timing.batch, *shape)).astype(np.float32)
    loaded = []
    for name in names:
        b = load_backend(name, None, cfg, work / name)
        prepared = b.prepare(x)
        for _ in range(cfg.warmup):
            b.call(prepared)
        loaded.append((b, prepared))
    say(f"timing {', '.join(names)}: batch {timing.batch}, {cfg.iters} interleaved rounds, {cfg.threads} threads each")
    times = time_interleaved([b for b, _ in loaded], {b.name: p for b, p in loaded}, cfg.iters, sync_for(cfg.device))
    out = []
    for c in cands:
        if c.backend not in times:
            out.append(c)
            continue
        ts = sorted(times[c.backend])
        p50 = statistics.median(ts)
        q1, q3 = (float(np.percentile(ts, q)) * 1e3 for q in (25, 75))
        backend = next(b for b, _ in loaded if b.name == c.backend)
        out.append(replace(c, throughput=timing.batch / p50, p50_ms=p50 * 1e3, iqr_ms=f"{q1:.3g}-{q3:.3g}",
                           threads=backend.threads()))
    return out


def _verdict(c: Candidate, best: Candidate) -> Candidate:
    if c.backend == best.backend:
        return replace(c, status="kept", reason="fastest that passed its gate")
    if c.throughput is None:
        return c
    return replace(c, status="slower", reason=f"{(best.throughput or 0) / c.throughput:.2f}x slower than {best.backend}")


def _promote(folder: Path, out: Path) -> dict[str, Any]:
    """Move the winner's files under `out` with the atomic swap and the marker every export gets."""
    import json

    from .metadata import EXPORT_JSON

    marker = {k: v for k, v in (read_marker(folder) or {}).items() if k not in ("kind", "mimzoo_version")}
    with atomic_dir(out, overwrite=True, kind="export", info=marker) as tmp:
        for f in folder.iterdir():
            if f.name != ".mimzoo-output.json":
                shutil.move(str(f), str(tmp / f.name))
    return dict(json.loads((out / EXPORT_JSON).read_text(encoding="utf-8")))


COLUMNS = [("backend", "candidate"), ("precision", "precision"), ("status", "status"), ("cosine_min", "min cosine"),
           ("throughput", "img/s"), ("p50_ms", "p50 ms"), ("iqr_ms", "IQR ms"), ("threads", "threads"),
           ("reason", "why")]


def table_rows(cands: list[Candidate]) -> list[dict[str, Any]]:
    """The candidates as table rows (figures rounded for reading)."""
    rows = []
    for c in cands:
        d = c.to_dict()
        d["cosine_min"] = None if c.cosine_min is None else f"{c.cosine_min:.6f}"
        d["throughput"] = None if c.throughput is None else f"{c.throughput:.1f}"
        d["p50_ms"] = None if c.p50_ms is None else f"{c.p50_ms:.2f}"
        rows.append({k: ("" if d[k] is None else d[k]) for k, _ in COLUMNS})
    return rows
