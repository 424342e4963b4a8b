"""GPU acceptance run (issue 12): everything mimzoo promises on one NVIDIA GPU, in at most 10 minutes.

Steps, each through the public CLI where it has one (``python -m mimzoo.cli.main``):

1. ``mimzoo doctor --json``: what is installed and what runs here;
2. ``mimzoo export MODEL --random-init --trt`` in fp32, fp16 and int8, each then ``mimzoo verify``-ed;
3. throughput at batch 1 and 32: torch eager (fp32, fp16), torch.compile (fp16, bf16) measured here
   with CUDA synchronisation, and ``mimzoo bench`` for onnxruntime on CUDA and for TensorRT;
4. one fp16 and one bf16 CUDA pretraining step (``mimzoo pretrain mae``);
5. ``mimzoo eval mae-vit-digits --task knn --data digits`` on CUDA.

A step that cannot run here is recorded as ``skipped: <reason>`` (no CUDA GPU, TensorRT missing,
onnxruntime-gpu missing, time budget spent); a step that ran and failed is ``failed: <error>`` and
makes the exit code 1. The report goes to ``benchmarks/gpu_<device>.md`` (device name sanitised).

Run it through ``benchmarks/gpu_acceptance.sh`` (which picks or makes the Python environment), or
directly: ``python benchmarks/gpu_acceptance.py [--model mae-vit-b] [--out FILE] [--workdir DIR]``.
``--device cpu --model mae-vit-test`` runs the same commands on a CPU at toy size (a wiring check).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 600.0  # the whole run, as issue 12 asks
NO_CUDA = "no CUDA GPU"
BATCHES = (1, 32)
TORCH_MODES = ("eager-fp32", "eager-fp16", "compile-fp16", "compile-bf16")
# module -> distribution: what the CLI steps import (a GPU machine without network may lack some;
# carry their wheels and set MIMZOO_WHEELS, see gpu_acceptance.sh)
CLI_MODULES = {"click": "click", "numpy": "numpy", "PIL": "pillow", "safetensors": "safetensors",
               "huggingface_hub": "huggingface_hub", "timm": "timm", "onnx": "onnx", "onnxruntime": "onnxruntime"}
DIGITS_MODULES = {"sklearn": "scikit-learn"}  # the digits images ship inside scikit-learn
EXPORT_MODULES = {"onnxscript": "onnxscript"}  # torch.onnx.export(dynamo=True)


class StepFailed(Exception):
    """A step ran and did not do what it should (one line)."""


@dataclass
class Step:
    name: str  # what ran, e.g. "export --trt fp16 + verify"
    result: str = ""  # the figure or outcome
    seconds: float = 0.0  # wall time of the step
    status: str = "ran"  # ran | failed: why | skipped: why


# --- the environment the CLI runs in ----------------------------------------------------------


def cli_env(workdir: Path) -> dict[str, str]:
    """Caches inside the work folder; mimzoo importable from this checkout even when not installed
    (a fresh clone on a machine without network): the repo, its plugins and a generated entry-point
    record go on PYTHONPATH."""
    env = dict(os.environ)
    env.setdefault("MIMZOO_CACHE", str(workdir / "cache"))
    env["HF_HUB_OFFLINE"] = env.get("HF_HUB_OFFLINE", "1")
    state = _install_state()
    if state != "here":
        parts = [str(REPO), str(REPO / "plugins")]
        if state == "none":  # no plugin registered at all: register this checkout's
            parts.append(str(_entry_point_site(workdir / "site")))
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*parts, env.get("PYTHONPATH", "")] if p)
    return env


def _install_state() -> str:
    """'here' (mimzoo installed from this checkout), 'elsewhere' (another checkout's plugins are
    registered) or 'none' (mimzoo's plugins are not registered in this Python)."""
    probe = ("import importlib.metadata as m, pathlib, sys\n"
             "if not any(e.name == 'mae' for e in m.entry_points(group='mimzoo.methods')): sys.exit(3)\n"
             "import mimzoo\n"
             f"sys.exit(0 if pathlib.Path(mimzoo.__file__).resolve().is_relative_to({str(REPO)!r}) else 2)")
    rc = subprocess.run([sys.executable, "-c", probe], capture_output=True, cwd=tempfile.gettempdir()).returncode
    return {0: "here", 2: "elsewhere"}.get(rc, "none")


def _entry_point_site(site: Path) -> Path:
    """A folder holding a .dist-info whose entry_points.txt copies pyproject's plugin table."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    table = re.search(r'\[project\.entry-points\."mimzoo\.methods"\]\n(.*?)(?:\n\[|\Z)', text, re.S)
    info = site / "mimzoo_checkout-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mimzoo-checkout\nVersion: 0.0\n")
    lines = [ln.replace('"', "") for ln in (table.group(1) if table else "").splitlines()
             if "=" in ln and not ln.startswith("#")]  # TOML `mae = "mimzoo_mae:METHOD"` -> INI
    (info / "entry_points.txt").write_text("[mimzoo.methods]\n" + "\n".join(lines) + "\n")
    return site


# --- one run ----------------------------------------------------------------------------------


class Acceptance:
    def __init__(self, args: argparse.Namespace):
        self.args, self.t0, self.steps = args, time.monotonic(), []
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="mimzoo-gpu-acceptance-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = cli_env(self.work)
        self.doctor: dict[str, Any] | None = None
        self.gpu_name = ""

    # running things

    def cli(self, *args: str, timeout: float = 300) -> str:
        """Run `mimzoo ARGS`; its stdout, or StepFailed with its error line."""
        return self._run([sys.executable, "-m", "mimzoo.cli.main", *args], timeout)

    def _run(self, cmd: list[str], timeout: float) -> str:
        timeout = min(timeout, max(self.left() - 5, 1))
        log = self.work / "logs" / f"{len(self.steps):02d}.log"
        log.parent.mkdir(exist_ok=True)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=self.work, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise StepFailed(f"timed out after {timeout:.0f} s: {' '.join(cmd[2:])}") from e
        with log.open("a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n[exit {p.returncode}]\n{p.stdout}\n{p.stderr}\n")
        if p.returncode != 0:
            errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
            raise StepFailed((errors or p.stderr.strip().splitlines()[-1:] or [f"exit {p.returncode}"])[-1][:300])
        return p.stdout

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.t0)

    def step(self, name: str, work: Callable[[], str], needs: Callable[[], str | None] = lambda: None) -> None:
        reason = needs()
        if reason is None and self.left() < 15:
            reason = f"time budget of {self.args.budget:.0f} s spent"
        if reason:
            self.steps.append(Step(name, status=f"skipped: {reason}"))
            print(f"[skip] {name}: {reason}", flush=True)
            return
        print(f"[run ] {name}", flush=True)
        t = time.monotonic()
        try:
            step = Step(name, result=work())
        except StepFailed as e:
            step = Step(name, status=f"failed: {e}")
        step.seconds = round(time.monotonic() - t, 1)
        self.steps.append(step)
        print(f"[{'ok' if step.status == 'ran' else 'FAIL'}  ] {name}: {step.result or step.status} ({step.seconds} s)",
              flush=True)

    # what a step needs

    def verdict(self, backend: str) -> str | None:
        if self.doctor is None:
            return "mimzoo doctor did not run"
        v = self.doctor["backends"][backend]
        return None if v["ready"] else v["reason"]

    def needs_modules(self, modules: dict[str, str]) -> str | None:
        import importlib.util

        missing = [dist for mod, dist in modules.items() if importlib.util.find_spec(mod) is None]
        if not missing:
            return None
        return (f"python packages missing: {', '.join(missing)} (pip install them, or carry their wheels "
                "and set MIMZOO_WHEELS=DIR)")

    def needs_device(self) -> str | None:
        if self.args.device == "cpu":
            return None
        if self.doctor is None:  # doctor could not run: ask torch directly
            try:
                import torch
            except ImportError:
                return "torch is not installed"
            return None if torch.cuda.is_available() else NO_CUDA
        cuda = next((r for r in self.doctor["checks"] if r["area"] == "cuda"), None)
        if cuda is None or cuda["status"] != "ok":
            return NO_CUDA
        reason = self.verdict("torch-cuda")
        return f"torch-cuda not ready: {reason}" if reason else None

    def needs(self, backend: str) -> Callable[[], str | None]:
        def check() -> str | None:
            if self.args.device != "cpu" and self.needs_device():
                return self.needs_device()
            if self.args.device == "cpu" and backend in ("tensorrt", "onnxruntime-cuda"):
                return f"{backend} needs a CUDA GPU (this run is --device cpu)"
            if backend == "tensorrt" and self.needs_modules(EXPORT_MODULES):
                return self.needs_modules(EXPORT_MODULES)
            reason = self.verdict(backend)
            return f"{backend} not ready: {reason}" if reason else None
        return check

    # the steps

    def run_all(self) -> int:
        a = self.args
        self.step("mimzoo doctor", self.run_doctor, lambda: self.needs_modules(CLI_MODULES))
        # the cheap CUDA steps first: when TensorRT is there and its builds run long, the budget
        # guard skips what is left rather than the whole run running past 10 minutes
        for mode in TORCH_MODES:
            self.step(f"torch {mode.replace('-', ' ')}, batch 1/32", lambda m=mode: self.torch_bench(m),
                      self.needs_device)
        for prec in ("fp16", "bf16"):
            self.step(f"pretrain mae {prec}, one step ({a.model})", lambda p=prec: self.pretrain(p),
                      lambda p=prec: self.needs_device() or self.needs_modules({**CLI_MODULES, **DIGITS_MODULES}) or
                      ("fp16 pretraining is offered on GPUs only" if p == "fp16" and a.device == "cpu" else None))
        self.step("eval mae-vit-digits k-NN on digits", self.eval_knn,
                  lambda: self.needs_device() or self.needs_modules({**CLI_MODULES, **DIGITS_MODULES}))
        self.step("mimzoo bench onnxruntime (CUDA provider), batch 1/32", self.bench_ort_cuda,
                  self.needs("onnxruntime-cuda"))
        for prec in ("fp32", "fp16", "int8"):
            self.step(f"export --trt {prec} + verify ({a.model}, random init)", lambda p=prec: self.export_trt(p),
                      self.needs("tensorrt"))
        self.step("mimzoo bench tensorrt fp16 vs torch fp16, batch 1/32", self.bench_trt, self.needs("tensorrt"))
        path = self.write_report()
        print(f"wrote {path}")
        return 1 if any(s.status.startswith("failed") for s in self.steps) else 0

    def run_doctor(self) -> str:
        self.doctor = json.loads(self.cli("doctor", "--json", timeout=120))
        rows = {r["area"]: r for r in self.doctor["checks"]}
        self.gpu_name = rows["gpu 0"]["found"].split(",")[0] if "gpu 0" in rows else ""
        ready = [b for b, v in self.doctor["backends"].items() if v["ready"]]
        gpus = "; ".join(r["found"] for a, r in rows.items() if a.startswith("gpu ")) or NO_CUDA
        return f"{gpus}; torch {rows['torch']['found']}; backends ready: {', '.join(ready)}"

    def export_trt(self, precision: str) -> str:
        folder = self.work / f"trt-{precision}"
        self.cli("export", self.args.model, "--random-init", "--trt", "--precision", precision, "-o", str(folder),
                 "--overwrite", "--json", timeout=300)
        report = json.loads(self.cli("verify", str(folder), "--random-init", "--json", timeout=180))
        cosine = _find(report, "cosine")
        return f"verified: cosine {cosine:.5f}" if isinstance(cosine, float) else "verified"

    def torch_bench(self, mode: str) -> str:
        out = self._run([sys.executable, str(Path(__file__).resolve()), "--torch-bench", mode, "--model", self.args.model,
                         "--device", self.args.device], timeout=240)
        res = json.loads(out.strip().splitlines()[-1])
        figures = ", ".join(f"b{b} {res[str(b)]:.0f} img/s" for b in BATCHES)
        return figures + (f" (compile {res['compile_s']:.0f} s)" if res.get("compile_s") else "")

    def bench_ort_cuda(self) -> str:
        rows = self._bench("onnxruntime")
        mine = [r for r in rows if r["backend"] == "onnxruntime"]
        # bench skips a row whose session really ran on another provider than CUDA (it reads session.get_providers())
        fallback = [r for r in mine if r.get("status") != "ok" or "fell back" in r.get("note", "")]
        if fallback or not mine:
            notes = " ".join(r.get("note", "") for r in fallback)
            raise StepFailed(f"onnxruntime did not run on CUDA: {notes[:200] or 'no rows'}")
        return _bench_figures(rows, "onnxruntime")

    def bench_trt(self) -> str:
        rows = self._bench("torch,torch-fp16,tensorrt", "--export", f"tensorrt={self.work / 'trt-fp16'}")
        text = _bench_figures(rows, "tensorrt")
        fp16 = {r["batch"]: r for r in rows if r["backend"] == "torch-fp16" and r.get("throughput")}
        trt = {r["batch"]: r for r in rows if r["backend"] == "tensorrt" and r.get("throughput")}
        if 32 in fp16 and 32 in trt:
            text += f"; b32 TensorRT fp16 / torch eager fp16 = {trt[32]['throughput'] / fp16[32]['throughput']:.2f}x"
        return text

    def _bench(self, backends: str, *extra: str) -> list[dict[str, Any]]:
        out = self.cli("bench", self.args.model, "--random-init", "--device", "cuda", "--backends", backends,
                       "--batch-sizes", ",".join(map(str, BATCHES)), "--no-memory", "--json",
                       "--workdir", str(self.work / "bench"), *extra, timeout=300)
        rows = _dicts_with(json.loads(out), "backend")
        target = backends.split(",")[-1]  # the backend this step is about; the others are its baselines
        bad = [r for r in rows if r["backend"] == target and r.get("status") != "ok"] or \
            ([] if any(r["backend"] == target for r in rows) else [{"backend": target, "batch": "-", "status": "missing"}])
        if bad:
            raise StepFailed(f"{bad[0]['backend']} batch {bad[0]['batch']}: {bad[0]['status']} {bad[0].get('note', '')}")
        return rows

    def pretrain(self, precision: str) -> str:
        folder = self.work / f"pretrain-{precision}"
        self.cli("pretrain", "mae", "--arch", self.args.model, "--data", "digits", "--device", self.args.device,
                 "--precision", precision, "--max-steps", "1", "--batch-size", "32", "--log-every", "1",
                 "-o", str(folder), timeout=240)
        records = [json.loads(ln) for ln in (folder / "log.jsonl").read_text().splitlines() if ln.strip()]
        losses = [r["loss"] for r in records if isinstance(r.get("loss"), (int, float))]
        if not losses or not math.isfinite(losses[-1]):
            raise StepFailed(f"no finite loss in {folder / 'log.jsonl'}: {losses}")
        return f"1 step, loss {losses[-1]:.4f}"

    def eval_knn(self) -> str:
        out = self.cli("eval", "mae-vit-digits", "--task", "knn", "--data", "digits", "--device", self.args.device,
                       "--json", "--quiet", "--cache-dir", str(self.work / "eval-cache"), timeout=240)
        top1 = _find(json.loads(out), "top1")
        return f"top-1 {top1:.1f} %" if isinstance(top1, float) else "ran"

    # the report

    def write_report(self) -> Path:
        name = self.gpu_name or ("cpu" if self.args.device == "cpu" else "no-cuda")
        path = Path(self.args.out) if self.args.out else REPO / "benchmarks" / f"gpu_{sanitise(name)}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.report_text(name), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def report_text(self, device: str) -> str:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
        head = [f"# GPU acceptance: {device}", "",
                f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; mimzoo commit {commit}; "
                f"python {platform.python_version()}; model {self.args.model}; device {self.args.device}",
                f"- command: `benchmarks/gpu_acceptance.sh {' '.join(self.args.argv)}`".replace("  ", " "),
                f"- total {time.monotonic() - self.t0:.0f} s (budget {self.args.budget:.0f} s)", "",
                "| step | result | seconds | status |", "|---|---|---:|---|"]
        cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        rows = [f"| {cell(s.name)} | {cell(s.result) or '-'} | {s.seconds if s.status == 'ran' or s.seconds else '-'} "
                f"| {cell(s.status)} |" for s in self.steps]
        return "\n".join(head + rows) + "\n"


def sanitise(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (safe as a file name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def _find(obj: Any, key: str) -> Any:
    """The first value of `key` anywhere in nested JSON."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            found = _find(item, key)
            if found is not None:
                return found
    return None


def _dicts_with(obj: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(obj, dict):
        return [obj] if key in obj else [d for v in obj.values() for d in _dicts_with(v, key)]
    if isinstance(obj, list):
        return [d for v in obj for d in _dicts_with(v, key)]
    return []


def _bench_figures(rows: list[dict[str, Any]], backend: str) -> str:
    mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["batch"])
    text = ", ".join(f"b{r['batch']} {r['throughput']:.0f} img/s" for r in mine)
    notes = {r.get("note") for r in mine if r.get("note")}
    return text + (f" ({'; '.join(sorted(notes))})" if notes else "")


# --- torch eager / compile throughput (run in its own interpreter) ---------------------------


def torch_bench(mode: str, model: str, device: str, iters: int = 20, warmup: int = 3) -> dict[str, float]:
    """Images/s of MODEL (random init) at each batch of BATCHES, timed with device synchronisation."""
    import torch

    import mimzoo

    kind, precision = mode.split("-")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    encoder = mimzoo.load(model, pretrained=False, device=device).to(dtype).eval()
    fn = torch.compile(encoder, dynamic=False) if kind == "compile" else encoder
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out: dict[str, float] = {"compile_s": 0.0}
    with torch.inference_mode():
        for batch in BATCHES:
            x = torch.randn(batch, *encoder.preprocess.input_size, device=device, dtype=dtype)
            t = time.perf_counter()
            for _ in range(warmup):
                fn(x)
            sync()
            out["compile_s"] += (time.perf_counter() - t) if kind == "compile" else 0.0
            t = time.perf_counter()
            for _ in range(iters):
                fn(x)
            sync()
            out[str(batch)] = batch * iters / (time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mae-vit-b", help="zoo model, random init (default: ViT-B/16 MAE)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cuda (the acceptance run), or cpu to check the wiring at toy size")
    p.add_argument("--out", help="report path (default: benchmarks/gpu_<device>.md)")
    p.add_argument("--workdir", help="where exports, runs and logs go (default: a new temp folder)")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run")
    p.add_argument("--torch-bench", choices=TORCH_MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = argv
    if args.torch_bench:
        print(json.dumps(torch_bench(args.torch_bench, args.model, args.device)))
        return 0
    return Acceptance(args).run_all()


if __name__ == "__main__":
    sys.exit(main())
