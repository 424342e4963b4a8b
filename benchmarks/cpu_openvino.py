"""Every CPU backend on ViT-B/16 (random init, 224 px) as a fraction of its precision's measured limit.

    .venv/bin/python benchmarks/cpu_openvino.py --threads 2 --out benchmarks/cpu_openvino

One run, one process:

1. ``mimzoo bench``'s engine exports (verified: fp32 abs <= 1e-4, bf16 cosine >= 0.999, INT8 cosine >= 0.99
   and k-NN drop <= 0.5 point on 512 digits images) and times torch eager, onnxruntime fp32/INT8 and
   OpenVINO fp32/bf16/INT8 at batch 1 and 8: the same intra-op threads for all (--threads), interleaved
   rotating rounds, medians with IQRs, per-round ratios to eager with their IQR;
2. counts the model's GFLOP per image (torch's FlopCounterMode: 2 x multiply-adds of every product);
3. measures this CPU's fp32, bf16 and int8 matrix-product limits (benchmarks/cpu_peak.py) with the same threads;
4. writes OUT.md / OUT.json: per row img/s, x eager, x onnxruntime fp32, min cosine vs PyTorch, achieved
   GFLOP/s = img/s x GFLOP/image, and that as a fraction of the limit of the precision the backend computes in.

Exports are kept in --work and reused when rerun. ``--model mae-vit-test --iters 3 --images 64`` checks the
script in a minute. Figures from a machine shared with other work are noisy: rerun on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8")
# backend -> the precision its matrix products run in (what its limit is)
COMPUTES_IN = {"torch": "fp32", "onnxruntime": "fp32", "onnxruntime-int8": "int8", "openvino": "fp32",
               "openvino-bf16": "bf16", "openvino-int8": "int8"}


def gflop_per_image(model: str, seed: int = 0) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import mimzoo

    torch.manual_seed(seed)
    enc = mimzoo.load(model, pretrained=False)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        enc(torch.zeros(1, *enc.preprocess.input_size))
    return fc.get_total_flops() / 1e9


def cosines(work: Path) -> dict[str, float]:
    out = {}
    for name in BACKENDS:
        f = work / name / "export.json"
        if f.is_file():
            out[name] = json.loads(f.read_text())["verification"]["cosine_min"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mae-vit-b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--images", type=int, default=512, help="real images the exports are verified on")
    ap.add_argument("--work", type=Path, default=Path("bench-work/cpu_openvino"))
    ap.add_argument("--out", type=Path, default=HERE / "cpu_openvino")
    args = ap.parse_args()

    import cpu_peak

    import mimzoo.api.export as api
    from mimzoo.exporters.bench_machine import bench_header

    header = bench_header(args.model + " (random init)", threads=args.threads, device="cpu", batches=args.batches,
                          iters=args.iters, warmup=2)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = api.bench(args.model, pretrained=False, backends=BACKENDS, batches=args.batches, iters=args.iters,
                     threads=args.threads, workdir=args.work, images=args.images, memory=False,
                     progress=lambda s: print(s, file=sys.stderr, flush=True))
    gflop = gflop_per_image(args.model)
    peak = cpu_peak.measure(threads=args.threads, rounds=6)
    cos = cosines(args.work)
    ort = {r["batch"]: r for r in rows if r["backend"] == "onnxruntime" and r["status"] == "ok"}
    table = []
    for r in rows:
        prec = COMPUTES_IN[r["backend"]]
        limit = peak["limits"].get(prec, {}).get("gflops")
        achieved = r["throughput"] * gflop if r.get("throughput") else None
        base = ort.get(r["batch"])
        table.append({**r, "computes_in": prec, "cosine_min": cos.get(r["backend"], 1.0 if r["backend"] == "torch" else None),
                      "gflops": achieved, "limit_gflops": limit,
                      "fraction": achieved / limit if achieved and limit else None,
                      "x_onnxruntime": base["p50_ms"] / r["p50_ms"] if base and r.get("p50_ms") else None})
    md = render(header.lines(), table, gflop, peak)
    print(md)
    args.out.with_suffix(".md").write_text(md)
    args.out.with_suffix(".json").write_text(json.dumps({"header": header.lines(), "gflop_per_image": gflop,
                                                         "peak": peak, "rows": table}, indent=2, default=str) + "\n")


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render(header: list[str], table: list[dict[str, Any]], gflop: float, peak: dict[str, Any]) -> str:
    import cpu_peak

    lines = ["# CPU backends against this CPU's limits", "", *[f"{h}  " for h in header], "",
             f"GFLOP per image: {gflop:.1f} (FlopCounterMode). Limits: "
             + ", ".join(f"{p} {v['gflops']:.0f} GFLOP/s ({v['kernel']})" for p, v in peak["limits"].items()), "",
             "| backend | batch | img/s | p50 ms (IQR) | x eager (IQR) | x onnxruntime fp32 | min cosine | "
             "computes in | GFLOP/s | of limit |", "|---|---:|---:|---|---|---:|---:|---|---:|---:|"]
    for r in table:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['batch']} | {r['status']}: {r['note']} |||||||||")
            continue
        lines.append(f"| {r['backend']} | {r['batch']} | {r['throughput']:.2f} | {r['p50_ms']:.1f} ({r['iqr_ms']}) | "
                     f"{_f(r['speedup'], '.2f')} ({r['speedup_iqr']}) | {_f(r['x_onnxruntime'], '.2f')} | "
                     f"{_f(r['cosine_min'], '.5f')} | {r['computes_in']} | {_f(r['gflops'], '.0f')} | "
                     f"{_f(r['fraction'] and 100 * r['fraction'], '.0f')} % |")
    return "\n".join(lines) + "\n\n" + cpu_peak.to_markdown(peak, "## Matrix-product limits (cpu_peak.py)")


if __name__ == "__main__":
    main()
