"""`mimzoo bench`: every backend side by side in one run — throughput, latency p50/p95, peak memory.

Backends are loaded one after the other, their memory measured alone in a child interpreter, and
timed interleaved in this one:
for each batch size, each round runs every backend once (starting one backend later each round), so
drifts in machine load (shared CPUs, GPU clocks) hit all of them alike. Speedups are ratios to ``torch``
at the same batch size; each row also gives the interquartile range (IQR) of its latencies and of its
per-round ratios to ``torch``, so a reader sees how far the figures spread.

Every backend gets the same intra-op thread count (``BenchConfig.threads``, default every usable core;
never each runtime's own default): ``torch.set_num_threads``, onnxruntime's ``intra_op_num_threads``
(``inter_op_num_threads`` 1, sequential execution) and OpenVINO's ``INFERENCE_NUM_THREADS`` (one stream,
latency hint). Each row reports the count its runtime really used,
read back from torch and from the session. :mod:`.bench_machine` writes the header that states them.

ONNX backends run verified exports (``mimzoo.export``; INT8 passes its accuracy gate first), built
into a work folder or reused from ``exports``. A backend that cannot run here (no GPU, no TensorRT,
no C++ compiler for torch.compile) is reported as skipped, with the reason.

Every row's note says how the backend was timed. Each call's time covers the forward pass only,
with its input already where the backend reads it: torch tensors on the device, TensorRT buffers on
the GPU (executed on the engine's own CUDA stream), onnxruntime-CUDA through IO binding with input
and outputs in device memory; on the CPU, onnxruntime takes and returns numpy arrays as usual.
An onnxruntime row reports the provider its session really runs on (``session.get_providers()``).
"""

from __future__ import annotations

import logging
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .spec import ExportError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "torch-fp16", "torch-compile", "onnxruntime", "onnxruntime-fp16", "onnxruntime-int8", "tensorrt",
            "openvino", "openvino-bf16", "openvino-int8")
DEFAULT_BACKENDS = ("torch", "torch-compile", "onnxruntime", "onnxruntime-int8", "tensorrt")
# backend -> (export format, precision) of the export folder it runs
EXPORTS = {"onnxruntime": ("onnx", "fp32"), "onnxruntime-fp16": ("onnx", "fp16"),
           "onnxruntime-int8": ("onnx", "int8"), "tensorrt": ("tensorrt", "fp16"),
           "openvino": ("openvino", "fp32"), "openvino-bf16": ("openvino", "bf16"), "openvino-int8": ("openvino", "int8")}


class Skip(Exception):
    """A backend cannot run here; the message says why."""


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run."""

    backends: tuple[str, ...] = DEFAULT_BACKENDS  # in table order; "torch" is the baseline of the speedups
    batches: tuple[int, ...] = (1, 8, 32)  # batch sizes
    iters: int = 10  # timed calls per backend and batch (interleaved rounds)
    warmup: int = 2  # untimed calls per backend and batch first (torch.compile compiles here)
    threads: int | None = None  # intra-op threads of torch and onnxruntime alike (None: every usable core)
    device: str = "cpu"  # "cpu" or "cuda"
    exports: dict[str, str] = field(default_factory=dict)  # backend -> existing export folder to reuse
    export_options: dict[str, Any] = field(default_factory=dict)  # extra mimzoo.export options (data, images)
    memory: bool = True  # measure each backend's peak memory (in a child interpreter: takes a while)

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ExportError(f"unknown backend {', '.join(unknown)}; use {', '.join(BACKENDS)}")
        if not self.batches or min(self.batches) < 1 or self.iters < 1 or self.warmup < 0:
            raise ExportError("batches must be positive, --iters >= 1 and --warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise ExportError(f"--threads must be >= 1 (got {self.threads}); leave it out for every usable core")
        if self.threads is None:  # one stated number for every backend, never each runtime's own default
            from .bench_machine import default_threads

            object.__setattr__(self, "threads", default_threads())


@dataclass
class Backend:
    """A loaded backend: how to put a batch where it runs, and one forward pass."""

    name: str
    prepare: Callable[[np.ndarray], Any]  # numpy batch -> native input (tensor, device array)
    call: Callable[[Any], Any]  # one forward pass
    note: str = ""  # shown in the table (e.g. the export used, compile time)
    timing: str = ""  # how a call is timed (where input and outputs live, streams): shown in the note
    failed: dict[int, str] = field(default_factory=dict)  # batch size -> why it failed there (others still run)
    threads: Callable[[], int | None] = lambda: None  # intra-op threads its runtime really uses (None: not CPU-threaded)


@dataclass
class BenchRow:
    """One backend at one batch size."""

    backend: str
    batch: int
    status: str  # "ok", "skipped" or "failed"
    throughput: float | None = None  # inputs (images, or clips for a video encoder) per second at the median latency
    p50_ms: float | None = None  # median latency of one batch
    p95_ms: float | None = None  # 95th percentile latency
    q1_ms: float | None = None  # first quartile of the latencies
    q3_ms: float | None = None  # third quartile of the latencies
    min_ms: float | None = None  # fastest call
    max_ms: float | None = None  # slowest call
    peak_mib: float | None = None  # peak memory above a fresh interpreter's (RSS on CPU, device memory on GPU)
    speedup: float | None = None  # torch p50 / this p50, same batch
    speedup_q1: float | None = None  # first quartile of the per-round ratios torch time / this time
    speedup_q3: float | None = None  # third quartile of the per-round ratios
    threads: int | None = None  # intra-op threads its runtime used while timed (read back from torch / the session)
    note: str = ""  # why skipped, or what ran
    unit: str = "img/s"  # what throughput counts: "img/s", or "clips/s" for a video encoder

    def to_dict(self) -> dict[str, Any]:
        """The fields, plus the spreads as text for tables (``iqr_ms`` "q1-q3", ``speedup_iqr``)."""
        out = asdict(self)
        out["iqr_ms"] = _span(self.q1_ms, self.q3_ms)
        out["speedup_iqr"] = _span(self.speedup_q1, self.speedup_q3, ratio=True)
        return out


def _span(lo: float | None, hi: float | None, ratio: bool = False) -> str | None:
    """"lo-hi" as tables show a spread: ratios with two decimals, times with three significant digits."""
    if lo is None or hi is None:
        return None
    if ratio:
        return f"{lo:.2f}-{hi:.2f}"
    fmt = (lambda v: f"{v:.3g}") if max(abs(lo), abs(hi)) < 100 else (lambda v: f"{v:.0f}")
    return f"{fmt(lo)}-{fmt(hi)}"


class MemorySampler:
    """Peak resident memory of this process while a block runs (sampled every 2 ms from /proc)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                import os

                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the peak so far (never decreases, so deltas are conservative)
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.002)

    def __enter__(self) -> MemorySampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def time_interleaved(backends: list[Backend], inputs: dict[str, Any], iters: int,
                     sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call of each backend, measured in rounds that run every backend once.

    Round r starts with backend r (mod their number), so none always runs first or right after the same
    neighbour. Each backend's list holds one time per round, in round order (ratios pair them by round).
    """
    times: dict[str, list[float]] = {b.name: [] for b in backends}
    for r in range(iters):
        k = r % len(backends) if backends else 0
        for b in backends[k:] + backends[:k]:
            x = inputs[b.name]
            t0 = time.perf_counter()
            b.call(x)
            sync()
            times[b.name].append(time.perf_counter() - t0)
    return times


def rows_from_times(times: dict[str, list[float]], batch: int, memory: dict[str, float], notes: dict[str, str],
                    baseline: str = "torch", threads: dict[str, int | None] | None = None) -> list[BenchRow]:
    """Table rows of one batch size, with speedups against `baseline` when it ran.

    The speedup is the ratio of the medians; its spread is the IQR of the per-round ratios (the lists
    are paired by round, as :func:`time_interleaved` returns them).
    """
    base_ts = times.get(baseline)
    base = statistics.median(base_ts) if base_ts else None
    rows = []
    for name, ts in times.items():
        p50 = statistics.median(ts)
        ms = [t * 1e3 for t in ts]
        ratios = [b / t for b, t in zip(base_ts, ts)] if base_ts and len(base_ts) == len(ts) else None
        rows.append(BenchRow(name, batch, "ok", throughput=batch / p50, p50_ms=p50 * 1e3, p95_ms=percentile(ms, 95),
                             q1_ms=percentile(ms, 25), q3_ms=percentile(ms, 75), min_ms=min(ms), max_ms=max(ms),
                             peak_mib=memory.get(name), speedup=(base / p50) if base else None,
                             speedup_q1=percentile(ratios, 25) if ratios else None,
                             speedup_q3=percentile(ratios, 75) if ratios else None,
                             threads=(threads or {}).get(name), note=notes.get(name, "")))
    return rows


def run_bench(encoder: Any, model: Any, cfg: BenchConfig, workdir: Path,
              say: Callable[[str], None] = log.info) -> list[BenchRow]:
    """Benchmark `encoder` on every backend of `cfg`; rows in backend order for each batch size.

    Phases: build (or reuse) the verified exports the ONNX/TensorRT backends run; load every backend
    and warm it up at each batch size; measure each one's peak memory in a fresh interpreter
    (bench_memory); then time all loaded backends in interleaved rounds.

    >>> rows = run_bench(mimzoo.load("mae-vit-test", pretrained=False), "mae-vit-test",
    ...                  BenchConfig(backends=("torch", "onnxruntime"), batches=(1, 8)), Path("bench"))  # doctest: +SKIP
    """
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # onnxruntime sessions get the same number (bench_backends)
    try:
        return _run(encoder, model, cfg, workdir, say)
    finally:
        torch.set_num_threads(threads_before)  # the caller's setting, whatever the benchmark used


def _run(encoder: Any, model: Any, cfg: BenchConfig, workdir: Path, say: Callable[[str], None]) -> list[BenchRow]:
    from .bench_backends import ensure_export, load_backend, sync_for

    rng = np.random.default_rng(0)  # images [N, C, H, W], or clips [N, C, T, H, W] for a video encoder
    data = {n: rng.standard_normal(encoder.preprocess.batch_shape(n)).astype(np.float32) for n in cfg.batches}
    skipped: dict[str, tuple[str, str]] = {}
    folders: dict[str, Path] = {}
    for name in cfg.backends:
        if name in EXPORTS:
            _guard(name, skipped, say, lambda n=name: folders.__setitem__(n, ensure_export(n, encoder, model, cfg, workdir, say)))
    loaded: list[Backend] = []
    for name in (b for b in cfg.backends if b not in skipped):
        say(f"loading {name} and warming it up")
        _guard(name, skipped, say, lambda n=name: loaded.append(_warm(load_backend(n, encoder, cfg, folders.get(n)), data, cfg)))
    memory = _memory(loaded, encoder, folders, cfg, workdir, say) if cfg.memory else {}
    rows = _timed_rows(loaded, skipped, memory, data, cfg, say, sync_for(cfg.device))
    unit = "clips/s" if getattr(encoder.preprocess, "num_frames", None) else "img/s"
    return [replace(r, unit=unit) for r in rows]


def _guard(name: str, skipped: dict[str, tuple[str, str]], say: Callable[[str], None], step: Callable[[], Any]) -> None:
    """Run one backend step; a Skip or a failure is recorded for that backend and the others go on."""
    try:
        step()
    except Skip as e:
        skipped[name] = ("skipped", str(e))
        say(f"  {name} skipped: {e}")
    except Exception as e:  # a broken backend must not take the others down
        text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        skipped[name] = ("failed", f"{type(e).__name__}: {text}" if text else type(e).__name__)
        log.debug("backend %s failed", name, exc_info=True)
        say(f"  {name} failed: {skipped[name][1]}")


def _warm(backend: Backend, data: dict[int, np.ndarray], cfg: BenchConfig) -> Backend:
    """First calls allocate (and torch.compile compiles): never timed. A batch size the backend cannot take
    (e.g. beyond a TensorRT profile) fails that row only; failing at every size fails the backend."""
    for n in cfg.batches:
        try:
            x = backend.prepare(data[n])
            for _ in range(cfg.warmup):
                backend.call(x)
        except Exception as e:
            if len(backend.failed) == len(cfg.batches) - 1:
                raise
            backend.failed[n] = _one_line(e)
    return backend


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0][:240] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _memory(loaded: list[Backend], encoder: Any, folders: dict[str, Path], cfg: BenchConfig, workdir: Path,
            say: Callable[[str], None]) -> dict[tuple[str, int], float]:
    """Peak memory per (backend, batch), each backend measured alone in a child interpreter."""
    from .bench_memory import measure

    model_folder = None
    if any(b.name.startswith("torch") for b in loaded):
        from ..hub.folder import save_folder

        model_folder = save_folder(encoder, workdir / ".bench-model")  # the child loads the very same weights
    out: dict[tuple[str, int], float] = {}
    try:
        for b in loaded:
            say(f"measuring the memory of {b.name} in a fresh interpreter")
            try:
                peaks = measure(b.name, batches=cfg.batches, input_size=tuple(encoder.preprocess.batch_shape(1)[1:]),
                                device=cfg.device, threads=cfg.threads, warmup=cfg.warmup, folder=folders.get(b.name),
                                model_folder=model_folder if b.name.startswith("torch") else None)
            except Exception as e:  # memory is a column, not a reason to lose the timings
                say(f"  {e}")
                continue
            out.update({(b.name, n): v for n, v in peaks.items()})
    finally:
        if model_folder is not None:
            shutil.rmtree(model_folder, ignore_errors=True)
    return out


def _timed_rows(loaded: list[Backend], skipped: dict[str, tuple[str, str]], memory: dict[tuple[str, int], float],
                data: dict[int, np.ndarray], cfg: BenchConfig, say: Callable[[str], None],
                sync: Callable[[], None]) -> list[BenchRow]:
    rows: list[BenchRow] = []
    notes = {b.name: "; ".join(p for p in (b.note, f"timed: {b.timing}" if b.timing else "") if p) for b in loaded}
    for n in cfg.batches:
        say(f"timing batch {n}: {cfg.iters} interleaved rounds of {', '.join(b.name for b in loaded) or 'nothing'}")
        runnable = [b for b in loaded if n not in b.failed]
        inputs = {b.name: b.prepare(data[n]) for b in runnable}
        times = time_interleaved(runnable, inputs, cfg.iters, sync) if runnable else {}
        threads = {b.name: b.threads() for b in runnable}  # what each runtime really used, read back after timing
        failed = {b.name: b.failed[n] for b in loaded if n in b.failed}
        by_name = {r.backend: r for r in rows_from_times(times, n, {k: v for (k, b), v in memory.items() if b == n},
                                                         notes, threads=threads)}
        for name in cfg.backends:
            if name in by_name:
                rows.append(by_name[name])
            elif name in failed:
                rows.append(BenchRow(name, n, "failed", note=failed[name]))
            elif name in skipped:
                rows.append(BenchRow(name, n, skipped[name][0], note=skipped[name][1]))
    return rows


COLUMNS = [("backend", "backend"), ("batch", "batch"), ("throughput", "img/s"), ("p50_ms", "p50 ms"),
           ("iqr_ms", "IQR ms"), ("p95_ms", "p95 ms"), ("peak_mib", "peak MiB"), ("speedup", "x torch"),
           ("speedup_iqr", "x IQR"), ("threads", "threads"), ("status", "status"), ("note", "note")]


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The table's columns for `rows`: the throughput heading says what was counted (img/s or clips/s).

    >>> columns([{"unit": "clips/s"}])[2]
    ('throughput', 'clips/s')
    """
    unit = next((r["unit"] for r in rows if r.get("unit")), "img/s")
    return [(k, unit if k == "throughput" else h) for k, h in COLUMNS]


def _md_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value).replace("|", "\\|")


def to_markdown(rows: list[dict[str, Any]], cols: list[tuple[str, str]] | None = None) -> str:
    """Rows as a GitHub markdown table (columns: :func:`columns` of the rows unless given)."""
    cols = cols or columns(rows)
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_md_cell(r.get(k)) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)
