"""This CPU's matrix-product limits at fp32, bf16 and int8, measured: the ceilings the CPU backends are held to.

A square product of side --size (default 2048: 17 GFLOP per call, far from memory-bound) is timed with:

- PyTorch (oneDNN): ``a @ b`` in float32 and bfloat16, ``torch._int_mm`` in int8;
- OpenVINO (CPU plugin): one MatMul against a constant weight, compiled with INFERENCE_PRECISION_HINT f32
  and bf16; for int8, the same MatMul with FakeQuantize on both inputs, which OpenVINO's low-precision
  transformations run as an int8 product (VNNI / AMX): the script reads the compiled graph back and
  states which precision the MatMul really ran in.

Every kernel gets the same threads (--threads, default 2), the kernels run in interleaved rotating rounds
(--rounds), and the table gives the median GFLOP/s (int8: GOP/s) with its interquartile range. A
precision's limit is the fastest kernel measured for it: a measured lower bound of the hardware's peak,
not the datasheet figure. benchmarks/cpu_openvino.py states every ViT-B/16 backend as a fraction of it.

    .venv/bin/python benchmarks/cpu_peak.py --threads 2 --out benchmarks/cpu_peak

Run it on a quiet machine: with other processes busy, thread barriers spin and the figures drop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PRECISIONS = ("fp32", "bf16", "int8")


def _torch_kernels(n: int, threads: int) -> dict[str, tuple[str, Callable[[], Any]]]:
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a16, b16 = a.bfloat16(), b.bfloat16()
    a8 = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g)
    b8 = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g)
    return {"torch fp32": ("fp32", lambda: a @ b), "torch bf16": ("bf16", lambda: a16 @ b16),
            "torch int8 (_int_mm)": ("int8", lambda: torch._int_mm(a8, b8))}


def _ov_matmul(n: int, int8: bool) -> Any:
    """An OpenVINO model x[n, n] @ W[n, n]; with int8, FakeQuantize (256 levels) on x and W first."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([n, n], ov.Type.f32, name="x")
    w = ops.constant(rng.standard_normal((n, n)).astype(np.float32))
    if int8:
        def fq(node: Any, lo: float, hi: float) -> Any:
            c = [ops.constant(np.float32(v)) for v in (lo, hi, lo, hi)]
            return ops.fake_quantize(node, *c, 256)

        x_in, w_in = fq(x, 0.0, 4.0), fq(w, -4.0, 4.0 * 127 / 128)  # u8 activations, i8 weights (symmetric)
    else:
        x_in, w_in = x, w
    return ov.Model([ops.matmul(x_in, w_in, False, False)], [x], "matmul")


def _ran_in(compiled: Any) -> str:
    """The runtime precision of the MatMul (FullyConnected) in the compiled graph, as OpenVINO reports it."""
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if str(info["layerType"].astype(str)) in ("FullyConnected", "MatMul"):
            return str(info["runtimePrecision"].astype(str))
    return "?"


def _openvino_kernels(n: int, threads: int) -> tuple[dict[str, tuple[str, Callable[[], Any]]], dict[str, str]]:
    import openvino as ov

    core = ov.Core()
    x = np.abs(np.random.default_rng(1).standard_normal((n, n))).astype(np.float32)
    kernels, ran = {}, {}
    for name, prec, hint, int8 in (("openvino fp32", "fp32", "f32", False), ("openvino bf16", "bf16", "bf16", False),
                                   ("openvino int8", "int8", "f32", True)):
        compiled = core.compile_model(_ov_matmul(n, int8), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                                    "INFERENCE_NUM_THREADS": threads,
                                                                    "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        kernels[name] = (prec, lambda r=request: r.infer({0: x}))
        ran[name] = _ran_in(compiled)
    return kernels, ran


def measure(size: int = 2048, threads: int = 2, rounds: int = 10, warmup: int = 2) -> dict[str, Any]:
    """Median GFLOP/s (int8: GOP/s) of each kernel and each precision's limit (its fastest kernel)."""
    kernels = _torch_kernels(size, threads)
    ran: dict[str, str] = {}
    try:
        ov_kernels, ran = _openvino_kernels(size, threads)
        kernels.update(ov_kernels)
    except ImportError:
        print("openvino is not installed: torch kernels only (pip install 'mimzoo[openvino]')", file=sys.stderr)
    names = list(kernels)
    for name in names:
        for _ in range(warmup):
            kernels[name][1]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):  # interleaved, rotating which kernel runs first
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            kernels[name][1]()
            times[name].append(time.perf_counter() - t0)
    flop = 2.0 * size ** 3
    rows = []
    for name in names:
        rates = sorted(flop / t / 1e9 for t in times[name])
        rows.append({"kernel": name, "precision": kernels[name][0], "gflops": statistics.median(rates),
                     "q1": float(np.percentile(rates, 25)), "q3": float(np.percentile(rates, 75)),
                     "ran_in": ran.get(name, {"torch fp32": "f32", "torch bf16": "bf16"}.get(name, "i8"))})
    limits = {}
    for p in PRECISIONS:
        best = max((r for r in rows if r["precision"] == p), key=lambda r: r["gflops"], default=None)
        if best:
            limits[p] = {"gflops": best["gflops"], "kernel": best["kernel"]}
    return {"size": size, "threads": threads, "rounds": rounds, "rows": rows, "limits": limits}


def to_markdown(res: dict[str, Any], header: str = "") -> str:
    lines = [header, "", f"Square matrix product, side {res['size']}, {res['threads']} threads, {res['rounds']} "
             "interleaved rounds; medians (IQR). int8 figures are GOP/s.", "",
             "| kernel | precision | ran in | GFLOP/s | IQR |", "|---|---|---|---:|---|"]
    lines += [f"| {r['kernel']} | {r['precision']} | {r['ran_in']} | {r['gflops']:.0f} | {r['q1']:.0f}-{r['q3']:.0f} |"
              for r in res["rows"]]
    lines += ["", "| precision | limit GFLOP/s | from |", "|---|---:|---|"]
    lines += [f"| {p} | {v['gflops']:.0f} | {v['kernel']} |" for p, v in res["limits"].items()]
    return "\n".join(lines).strip() + "\n"


def machine_line() -> str:
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
        have = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
        flags = " ".join(f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in have)
    except OSError:
        model = "?"
    return f"{model}; {flags or 'no AVX-512/AMX flags'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    args = ap.parse_args()
    res = measure(args.size, args.threads, args.rounds)
    res["machine"] = machine_line()
    res["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    md = to_markdown(res, f"# CPU matrix-product limits\n\nCommand: `{res['command']}`  \nMachine: {res['machine']}")
    print(md)
    if args.out:
        args.out.with_suffix(".md").write_text(md)
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
