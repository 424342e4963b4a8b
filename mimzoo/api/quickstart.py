"""`mimzoo quickstart`: the main job end to end, offline, on the bundled model and digits.

load -> k-NN and linear probe -> export ONNX -> verify -> bench (torch vs onnxruntime) ->
reconstruction picture -> a Hub-ready folder (dry-run publish). ``video=True`` is the video twin
(``mimzoo quickstart --video``): the bundled videomae-vit-digits on moving-digits clips, an animated
GIF of its reconstructions, and no bench step (its figures are the image quickstart's business).
Every step goes through the
same public API a user calls (``mimzoo.load``, ``mimzoo.evaluate``, ``mimzoo.export``,
``mimzoo.verify``, ``mimzoo.api.export.bench``, ``mimzoo.pretrain.reconstruct``,
``mimzoo.publish``), so a passing quickstart says those work on this machine.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir, atomic_file
from .._lock import output_lock
from .._outputs import check_replaceable, sweep_stale
from ..errors import MimzooError

log = logging.getLogger(__name__)

MARKER = "quickstart.json"  # the run's summary (mimzoo's .mimzoo-output.json says whose the folder is)
# a rerun replaces the folder whole; the feature cache (cache/) moves on, so a rerun's probes cost nothing
NEXT_STEPS = (
    "mimzoo list                                   # the whole zoo: methods, variants, licenses, paper numbers",
    "mimzoo info mae-vit-b                         # weights, provenance and layouts of one model",
    "python -c \"import mimzoo; mimzoo.load('mae-vit-b')\"   # with network: official MAE ViT-B/16 weights",
    "mimzoo eval mae-vit-b --task knn,linear --data cifar100:PATH   # your data (or an image folder)",
    "mimzoo export mae-vit-b --trt --fp16          # on a GPU machine with TensorRT (pip install 'mimzoo[gpu]')",
)


class QuickstartError(MimzooError):
    """The quickstart cannot run as asked (e.g. its output folder holds someone else's files)."""


@dataclass(frozen=True)
class QuickstartConfig:
    """What `mimzoo quickstart` runs on; the defaults need no network."""

    model: str = "mae-vit-digits"  # any name mimzoo.load accepts; the default is bundled in the package
    data: str = "digits"  # eval/verify data spec (scikit-learn's digits ship with scikit-learn)
    output: str = "mimzoo-quickstart"  # folder for every artifact; replaced when it is a previous quickstart's
    repo: str | None = None  # Hub repo id written into the dry-run card (None: your-name/<model's name>)
    bench_batches: tuple[int, ...] = (1, 32)  # batch sizes of the torch vs onnxruntime comparison
    bench_iters: int = 20  # timed rounds per backend and batch (medians are reported)
    reconstruct_images: int = 6  # digits test images in the reconstruction picture
    threads: int | None = 1  # intra-op threads of both bench backends (1: steady figures on a busy machine)
    video: bool = False  # the video twin: clips in, reconstruction.gif out, no bench (see video_config)
    license: str | None = None  # license for the dry-run card of a model that records none (e.g. your own run)


@dataclass(frozen=True)
class Step:
    """One line of the summary table."""

    step: str  # what ran
    result: str  # the figure or artifact it produced
    seconds: float  # wall-clock time of the step
    ok: bool = True  # False when the step's own check failed (the quickstart then exits non-zero)


@dataclass(frozen=True)
class QuickstartReport:
    """What the quickstart did: its steps, the folder it wrote, and the figures behind the table."""

    output: Path
    steps: tuple[Step, ...]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def rows(self) -> list[dict[str, Any]]:
        return [{**asdict(s), "ok": "yes" if s.ok else "FAILED"} for s in self.steps]


def quickstart(config: QuickstartConfig = QuickstartConfig(), *, overwrite: bool = False,
               progress: Callable[[str], None] | None = None) -> QuickstartReport:
    """Run the main job end to end and write its artifacts under ``config.output``.

    Args:
        config: model, data and output folder (defaults: the bundled mae-vit-digits on digits, offline).
        overwrite: kept for compatibility: a previous quickstart's folder is replaced without it, and a
            folder holding other files is never replaced.
        progress: called with one line per step (the CLI prints them on stderr).

    Returns:
        A :class:`QuickstartReport`; ``report.ok`` is False when a step's check failed.

    >>> report = quickstart(QuickstartConfig(output="/tmp/qs"))  # doctest: +SKIP
    >>> [s.step for s in report.steps][:2]  # doctest: +SKIP
    ['load', 'k-NN probe']
    """
    say = progress or log.info
    out = Path(config.output)
    with output_lock(out):  # one quickstart per folder at a time; a killed one's leftovers go first
        _check_output(out)
        # the new run is built in a temp folder and swapped in only once complete: an interrupted
        # run leaves the previous results (and their marker) as they were, and a plain rerun works
        with atomic_dir(out, overwrite=True, kind="quickstart") as tmp:
            cache = out / "cache" if out.is_dir() else tmp / "cache"  # a first run leaves nothing under `out` if cut
            run = _Runner(config, tmp, say, cache=cache)
            steps = (run.load, run.probes, run.export, run.verify, run.bench, run.reconstruct, run.publish)
            if config.video:  # clips: the GIF takes the picture's place, and the bench is left to the images
                steps = (run.load, run.probes, run.export, run.verify, run.reconstruct_clips, run.publish)
            run.total = len(steps)
            for step in steps:
                step()
            report = QuickstartReport(output=out, steps=tuple(run.steps), figures=run.figures)
            with atomic_file(tmp / MARKER) as summary:
                Path(summary).write_text(json.dumps({"config": asdict(config), "steps": report.rows(),
                                                     "figures": run.figures}, indent=2, default=str) + "\n")
            if cache == out / "cache" and cache.is_dir():  # the feature cache moves on with the results
                os.replace(out / "cache", tmp / "cache")
    return report


def _check_output(out: Path) -> None:
    """`out` may be new, empty, or a previous quickstart's (replaced once the new run is complete);
    a folder holding anything else is refused, whatever `overwrite` says."""
    sweep_stale(out)
    if out.exists() and not out.is_dir():
        raise QuickstartError(f"{out} is a file; pass another folder with --output")
    check_replaceable(out, "quickstart", flag="quickstart")


class _Runner:
    """The quickstart's steps; each appends one :class:`Step` and keeps its figures."""

    def __init__(self, config: QuickstartConfig, out: Path, say: Callable[[str], None], cache: Path):
        self.cfg, self.out, self.say, self.cache = config, out, say, cache
        self.steps: list[Step] = []
        self.figures: dict[str, Any] = {}
        self.encoder: Any = None
        self.done = 0
        self.total = 7

    def _timed(self, name: str, fn: Callable[[], tuple[str, bool]]) -> None:
        self.done += 1
        self.say(f"[{self.done}/{self.total}] {name}")
        start = time.perf_counter()
        result, ok = fn()
        self.steps.append(Step(name, result, round(time.perf_counter() - start, 1), ok))

    def load(self) -> None:
        import mimzoo
        from mimzoo.registry.contract import arch_label

        def run() -> tuple[str, bool]:
            self.encoder = mimzoo.load(self.cfg.model)
            enc, rep = self.encoder, self.encoder.info.weights
            params = sum(p.numel() for p in enc.parameters()) / 1e6
            where = str(getattr(rep, "source", None) or "weights")
            where = "bundled weights" if where.startswith("bundled:") else where
            arch = arch_label(enc.info.arch, enc.info.model_args)  # as built: "vit (patch 4, 96-d, depth 6)"
            self.figures["load"] = {"arch": arch, "params_m": round(params, 3), "dim": enc.num_features,
                                    "input_size": list(enc.preprocess.input_size), "weights": str(where)}
            return f"{arch}, {params:.2f} M params, {enc.num_features}-d, {where}", True

        self._timed("load", run)

    def probes(self) -> None:
        import mimzoo

        records: dict[str, Any] = {}

        def run_all() -> tuple[str, bool]:
            recs = mimzoo.evaluate(self.cfg.model, ["knn", "linear"], self.cfg.data, cache_dir=self.cache,
                                   output=self.out / "eval.json")
            records.update({r.task: r for r in recs})
            return _top(records["knn"]), True

        self._timed("k-NN probe", run_all)  # its time includes the feature extraction both probes share
        self.steps.append(Step("linear probe", _top(records["linear"]), records["linear"].config.get("seconds", 0.0)))
        self.say("      linear probe (same features)")
        self.figures["eval"] = {t: r.metrics for t, r in records.items()}

    def export(self) -> None:
        import mimzoo

        def run() -> tuple[str, bool]:
            res = mimzoo.export(self.cfg.model, self.out / "onnx-fp32", data=self.cfg.data, overwrite=True)
            v = res.verification
            self.figures["export"] = {k: v.get(k) for k in ("passed", "max_abs", "cosine_min", "knn_top1_agreement")}
            return f"onnx-fp32/model.onnx (opset {res.meta['opset']}, dynamic batch), max abs err {v['max_abs']:.1e}", \
                bool(v["passed"])

        self._timed("export ONNX", run)

    def verify(self) -> None:
        import mimzoo

        def run() -> tuple[str, bool]:
            rep = mimzoo.verify(self.out / "onnx-fp32", data=self.cfg.data, raise_on_failure=False)
            self.figures["verify"] = {k: rep.get(k) for k in ("passed", "max_abs", "cosine_min", "knn_top1_agreement")}
            knn = rep.get("knn_top1_agreement")
            agree = f", k-NN top-1 agreement {100 * knn:.1f} %" if knn is not None else ""
            return f"{'passed' if rep['passed'] else 'FAILED'}: cosine {rep['cosine_min']:.6f}{agree}", bool(rep["passed"])

        self._timed("verify", run)

    def bench(self) -> None:
        from .export import bench

        def run() -> tuple[str, bool]:
            rows = bench(self.cfg.model, backends=["torch", "onnxruntime"], batches=self.cfg.bench_batches,
                         iters=self.cfg.bench_iters, threads=self.cfg.threads, memory=False,
                         exports={"onnxruntime": self.out / "onnx-fp32"}, data=self.cfg.data)
            _write_bench(self.out / "bench.md", rows)
            ort = [r for r in rows if r.get("backend") == "onnxruntime" and r.get("status") == "ok"]
            self.figures["bench"] = rows
            parts = [f"b{r['batch']} {r['speedup']:.2f}x" for r in ort]
            threads = f", {self.cfg.threads} thread(s)" if self.cfg.threads else ""
            return f"onnxruntime vs torch: {', '.join(parts) or 'not run'}{threads} (bench.md)", bool(ort)

        self._timed("bench", run)

    def reconstruct(self) -> None:
        from ..data import open_dataset
        from ..pretrain.reconstruct import reconstruct

        def run() -> tuple[str, bool]:
            split = open_dataset(self.cfg.data).eval
            images = [split.image(i) for i in range(min(self.cfg.reconstruct_images, len(split)))]
            (self.out / "inputs").mkdir()
            for i, image in enumerate(images):  # the pictures that went in, for `mimzoo reconstruct` by hand
                with atomic_file(self.out / "inputs" / f"digit-{i}.png") as tmp:
                    image.save(tmp, format="PNG")
            path = reconstruct(self.cfg.model, images, self.out / "reconstruction.png")
            return f"{path.name}: original | masked | reconstruction | + visible, {len(images)} digits (inputs/)", True

        self._timed("reconstruct", run)

    def reconstruct_clips(self) -> None:
        from ..data import open_dataset
        from ..pretrain.reconstruct import reconstruct

        def run() -> tuple[str, bool]:
            split = open_dataset(self.cfg.data).eval
            n = min(self.cfg.reconstruct_images // 2 or 1, len(split))
            clips = [split.image(i) for i in range(n)]  # every frame; the encoder's transform takes its own
            path = reconstruct(self.cfg.model, clips, self.out / "reconstruction.gif")
            frames = self.encoder.preprocess.num_frames
            return f"{path.name}: original | masked | reconstruction | + visible, {n} clips x {frames} frames", True

        self._timed("reconstruct", run)

    def publish(self) -> None:
        import mimzoo

        def run() -> tuple[str, bool]:
            res = mimzoo.publish(self.cfg.model, self.cfg.repo or default_repo(self.cfg.model), with_onnx=self.out / "onnx-fp32",
                                 eval_results=self.out / "eval.json", dry_run=True, output=self.out / "hub-folder",
                                 overwrite=True, license=self.cfg.license)
            size = sum(f.size for f in res.files) / 1e6
            return f"hub-folder/: {len(res.files)} files, {size:.1f} MB, card + config + ONNX (nothing uploaded)", True

        self._timed("publish (dry run)", run)


def video_config(**fields: Any) -> QuickstartConfig:
    """The video quickstart's defaults (bundled videomae-vit-digits, moving-digits, its own folder), then `fields`.

    >>> video_config().model, video_config(output="qs").output
    ('videomae-vit-digits', 'qs')
    """
    # 1,000 test clips, as the bundled model's results.json: its figures are the ones this run prints
    base = {"model": "videomae-vit-digits", "data": "moving-digits:test=1000", "output": "mimzoo-quickstart-video",
            "video": True}
    return QuickstartConfig(**{**base, **{k: v for k, v in fields.items() if v is not None}})


def default_repo(model: str) -> str:
    """A placeholder Hub repo id for `model`: ``your-name/<its last path or hub component>``.

    >>> default_repo("mae-vit-digits"), default_repo("hf-hub:acme/my-mae@v2"), default_repo("runs/first/")
    ('your-name/mae-vit-digits', 'your-name/my-mae', 'your-name/first')
    """
    import re

    name = model.split(":", 1)[-1].split("@")[0].rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"
    return f"your-name/{name[:96]}"


def _top(record: Any) -> str:
    top5 = record.metrics.get("top5")
    return f"top-1 {record.metrics['top1']:.1f} %" + (f", top-5 {top5:.1f} %" if top5 is not None else "") + \
        f" on {record.dataset} {record.split}"


def _write_bench(path: Path, rows: list[dict[str, Any]]) -> None:
    from ..exporters.bench import to_markdown

    with atomic_file(path) as tmp:
        Path(tmp).write_text(to_markdown(rows) + "\n")
