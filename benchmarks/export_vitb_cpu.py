"""ViT-B/16 at 224 px on this CPU: ONNX Runtime fp32 and INT8 against PyTorch eager, side by side.

    .venv/bin/python benchmarks/export_vitb_cpu.py [--iters 10] [--workdir /tmp/mimzoo-vitb]

What it does, in one run:

1. loads ``mae-vit-b`` with random weights (seed 0: no pretrained weights can be downloaded here);
2. exports it with ``mimzoo.export``: ONNX fp32 (verified, abs <= 1e-4) and ONNX INT8 (verified by
   the INT8 gate: cosine >= 0.99 and k-NN top-1 drop <= 0.5 point on 512 real digits images);
3. ``mimzoo bench``'s engine times torch eager, torch.compile, onnxruntime fp32 and INT8 at batch 1
   and 8, interleaved (every round runs every backend once), and reports medians and ratios; then
   again with one intra-op thread each (2 threads suffer most from the other jobs on these cores);
4. ablations at batch 1, again interleaved with eager in one run: onnxruntime graph optimisation
   level (basic / extended / all), intra-op threads (1 / 2), opset 23's fused Attention op, and
   onnxruntime's offline transformer fusions;
5. writes ``export_vitb_cpu.md`` (tables), ``export_vitb_cpu.json`` (raw) and ``export_vitb_cpu.png``.

The machine is shared (2 cores, other jobs running): only the ratios of one run mean something.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = "mae-vit-b"


def export_all(work: Path, images: int, reuse: bool) -> dict[str, Path]:
    import mimzoo

    plans = {"fp32": dict(precision="fp32", images=64), "int8": dict(precision="int8", images=images),
             "fp32-opset23": dict(precision="fp32", images=16, opset=23)}
    out = {}
    for tag, opts in plans.items():
        folder = work / f"{MODEL}-{tag}"
        if reuse and (folder / "export.json").is_file():
            if json.loads((folder / "export.json").read_text())["verification"]["passed"]:
                print(f"[{tag}] reusing {folder}", file=sys.stderr, flush=True)
                out[tag] = folder
                continue
        t0 = time.perf_counter()
        r = mimzoo.export(MODEL, folder, pretrained=False, seed=0, overwrite=True,
                          progress=lambda line, tag=tag: print(f"[{tag}] {line}", file=sys.stderr, flush=True), **opts)
        print(f"[{tag}] exported in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        out[tag] = r.path
    return out


def main_bench(folders: dict[str, Path], iters: int, compile_: bool, threads: int | None) -> list[dict]:
    from mimzoo.api.export import bench

    backends = ["torch", *(["torch-compile"] if compile_ else []), "onnxruntime", "onnxruntime-int8"]
    return bench(MODEL, pretrained=False, seed=0, backends=backends, batches=(1, 8), iters=iters, warmup=1,
                 threads=threads, memory=threads is None,
                 exports={"onnxruntime": folders["fp32"], "onnxruntime-int8": folders["int8"]},
                 progress=lambda line: print(line, file=sys.stderr, flush=True))


def ablations(folders: dict[str, Path], iters: int) -> list[dict]:
    """ORT fp32 variants at batch 1, each round interleaved with PyTorch eager."""
    import torch

    import mimzoo
    from mimzoo.exporters.runtime import OnnxModel

    torch.set_num_threads(2)  # eager on both cores, as the default-thread benchmark above
    torch.manual_seed(0)
    enc = mimzoo.load(MODEL, pretrained=False)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    xt = torch.from_numpy(x)
    fused = transformer_optimized(folders["fp32"])
    variants = {
        "ORT fp32, opt=all, 2 threads (default)": OnnxModel(folders["fp32"] / "model.onnx", threads=2),
        "ORT fp32, opt=extended, 2 threads": OnnxModel(folders["fp32"] / "model.onnx", threads=2, optimization="extended"),
        "ORT fp32, opt=basic, 2 threads": OnnxModel(folders["fp32"] / "model.onnx", threads=2, optimization="basic"),
        "ORT fp32, opt=all, 1 thread": OnnxModel(folders["fp32"] / "model.onnx", threads=1),
        "ORT fp32, opset 23 (fused Attention op)": OnnxModel(folders["fp32-opset23"] / "model.onnx", threads=2),
        "ORT fp32 + onnxruntime.transformers optimizer (SkipLayerNorm, BiasGelu)": OnnxModel(fused, threads=2),
    }
    calls = {"PyTorch eager, 2 threads (baseline)": lambda: enc(xt)}
    calls.update({k: (lambda m=m: m.session.run(None, {m.input_name: x})) for k, m in variants.items()})
    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for f in calls.values():
            f()  # warm-up
        for _ in range(iters):
            for k, f in calls.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["PyTorch eager, 2 threads (baseline)"])
    default = statistics.median(times["ORT fp32, opt=all, 2 threads (default)"])
    return [{"variant": k, "p50_ms": statistics.median(v) * 1e3, "speedup": base / statistics.median(v),
             "vs_default": default / statistics.median(v)} for k, v in times.items()]


def transformer_optimized(folder: Path) -> Path:
    """onnxruntime's transformer fusions applied offline (ORT-only ops: an ablation, not an export option)."""
    from onnxruntime.transformers.optimizer import optimize_model

    out = folder.parent / "fp32-ort-fused.onnx"
    model = optimize_model(str(folder / "model.onnx"), model_type="vit", num_heads=12, hidden_size=768, opt_level=0)
    print(f"transformer fusions: {model.get_fused_operator_statistics()}", file=sys.stderr, flush=True)
    model.save_model_to_file(str(out), use_external_data_format=True)
    return out


def gate_rows(folders: dict[str, Path]) -> list[dict]:
    rows = []
    for tag in ("fp32", "int8"):
        meta = json.loads((folders[tag] / "export.json").read_text())
        v = meta["verification"]
        knn = v.get("knn_top1_torch") is not None
        rows.append({"export": tag, "passed": v["passed"], "max_abs": f"{v['max_abs']:.2e}",
                     "cosine_min": f"{v['cosine_min']:.6f}",
                     "knn_torch": f"{v['knn_top1_torch']:.2f}" if knn else "-",
                     "knn_export": f"{v['knn_top1_export']:.2f}" if knn else "-",
                     "knn_drop": f"{v['knn_top1_drop']:+.2f}" if knn else "-",
                     "agreement": f"{v['knn_top1_agreement']:.3f}" if knn else "-", "images": v["images"],
                     "gate": ", ".join(f"{k} {v['tolerances'][k]:g}" for k in v["tolerances"]),
                     "plan": meta.get("int8", {}).get("method"), "attempts": meta.get("int8", {}).get("attempts")})
    return rows


CAVEAT = """Read the INT8 gate with care. These are random-init weights (no pretrained weights can be downloaded
here): their embeddings hardly separate the digits (k-NN top-1 around 30 %, chance is 10 %), so roughly one
k-NN prediction in eight flips under any small perturbation, and the net change on 512 images has a standard
deviation of about 1.5 points, three times the 0.5-point limit. Which INT8 plan passes first is partly chance:
an earlier run of this script, on another draw of 512 digits, saw plans 1 and 2 (everything quantized; first
and last layers float) fail with drops of 1.56 and 1.17 points at cosine 0.999, and plan 3 (MLP output
projections float too) pass at 0.20, at a lower speed-up. Pretrained weights behave differently (their
features separate classes; their activations have outliers that random weights lack), so none of these
accuracy figures carries over: re-run the gate with your weights and data. The issue's earlier note of
cosine 0.93 for naive dynamic INT8 could not be reproduced here with onnxruntime 1.32 on these weights:
default `quantize_dynamic` (all ops, per tensor) gave 0.9987, QUInt8 weights 0.9988, reduce_range 0.9968."""


def write_report(rows: list[dict], rows1: list[dict], abl: list[dict], gates: list[dict], args: argparse.Namespace,
                 seconds: float) -> None:
    from mimzoo.exporters.bench import to_markdown
    from mimzoo.exporters.chart import bar_chart

    bar_chart(rows, HERE / "export_vitb_cpu.png", title="mae-vit-b (ViT-B/16, 224 px, random init): images/s on 2 CPU cores")
    ok = {(r["backend"], r["batch"]): r for r in rows if r["status"] == "ok"}
    b1, b8 = ok.get(("onnxruntime", 1)), ok.get(("onnxruntime-int8", 8))
    ok1 = {(r["backend"], r["batch"]): r for r in rows1 if r["status"] == "ok"}
    c1, c8 = ok1.get(("onnxruntime", 1)), ok1.get(("onnxruntime-int8", 8))
    lines = [
        "# ViT-B/16 export on this CPU (generated by benchmarks/export_vitb_cpu.py)",
        "",
        f"Command: `.venv/bin/python benchmarks/export_vitb_cpu.py --iters {args.iters}"
        f"{'' if args.compile else ' --no-compile'}{' --reuse' if args.reuse else ''}`; {platform.processor() or platform.machine()}, "
        f"2 shared cores; total {seconds / 60:.0f} min. Random-init weights (seed 0). Medians of "
        f"{args.iters} interleaved rounds; ratios are from this one run.",
        "",
        "## Goals",
        "",
        f"- ONNX Runtime fp32 vs PyTorch eager, batch 1: **{b1['speedup']:.2f}x** (goal >= 1.2x)" if b1 else "- fp32: not measured",
        f"- ONNX Runtime INT8 vs PyTorch eager, batch 8: **{b8['speedup']:.2f}x** (goal >= 2.5x), "
        f"INT8 gate passed: **{gates[1]['passed']}**" if b8 else "- int8: not measured",
        "",
        f"- the same with one intra-op thread for both (less exposed to the other jobs on the 2 cores): "
        f"fp32 batch 1 **{c1['speedup']:.2f}x**, INT8 batch 8 **{c8['speedup']:.2f}x**" if c1 and c8 else "",
        "",
        "## Backends side by side (default threads: torch and onnxruntime use both cores)", "", to_markdown(rows), "",
        "Peak MiB: resident memory above a fresh interpreter's, each backend measured alone in a child process.", "",
        "## The same, one intra-op thread each", "", to_markdown(rows1), "",
        "## Verification (PyTorch vs export)", "",
        to_markdown(gates, [("export", "export"), ("passed", "passed"), ("gate", "gate"), ("max_abs", "max abs"),
                            ("cosine_min", "min cosine"), ("knn_torch", "k-NN top-1 torch %"),
                            ("knn_export", "k-NN top-1 export %"), ("knn_drop", "drop (points)"),
                            ("agreement", "agreement"), ("images", "images"), ("plan", "INT8 plan")]), "",
        "INT8 attempts (in order; the first that passes the gate is kept): "
        + "; ".join(f"{a['method']} float={'+'.join(a['keep_float']) or 'none'} cosine={a['cosine_min']:.4f} "
                    f"drop={a['knn_top1_drop']:+.2f} passed={a['passed']}" for a in (gates[1]["attempts"] or [])), "",
        CAVEAT, "",
        "## What was tried for ONNX Runtime fp32 (batch 1, interleaved with eager)", "",
        to_markdown(abl, [("variant", "variant"), ("p50_ms", "p50 ms"), ("speedup", "x eager"),
                          ("vs_default", "x ORT default")]), "",
        "Kept: graph optimisation level all and one intra-op thread per core (one thread wins only while other "
        "jobs hold a core). Opset 23's fused Attention op was 3 to 15 % faster than opset 18 in three quiet runs "
        "here: it is offered as `--opset 23`, not the default, because older runtimes and TensorRT parsers may not "
        "take that op. onnxruntime's offline transformer fusions (they match SkipLayerNorm and BiasGelu in the "
        "dynamo graph, not its attention) were slower than its own online fusions.", "",
    ]
    (HERE / "export_vitb_cpu.md").write_text("\n".join(lines) + "\n")
    (HERE / "export_vitb_cpu.json").write_text(json.dumps({"bench": rows, "bench_1_thread": rows1, "ablations": abl,
                                                          "gates": gates}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--images", type=int, default=512, help="real images the INT8 gate compares")
    ap.add_argument("--workdir", default="/tmp/mimzoo-vitb-bench")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="leave torch.compile out")
    ap.add_argument("--reuse", action="store_true", help="reuse verified exports already in --workdir")
    args = ap.parse_args()
    t0 = time.perf_counter()
    work = Path(args.workdir)
    folders = export_all(work, args.images, args.reuse)
    rows = main_bench(folders, args.iters, args.compile, threads=None)
    rows1 = main_bench(folders, args.iters, False, threads=1)
    abl = ablations(folders, args.iters)
    write_report(rows, rows1, abl, gate_rows(folders), args, time.perf_counter() - t0)
    print((HERE / "export_vitb_cpu.md").read_text())


if __name__ == "__main__":
    main()
