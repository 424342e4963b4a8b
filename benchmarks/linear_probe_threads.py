"""Linear probe (full-batch L-BFGS) on digits features: one thread vs two, side by side.

The probe on small feature sets is thousands of tiny ops; with two threads on a machine where other
jobs hold a core, every op waits for the descheduled thread. mimzoo fits problems up to
``mimzoo.eval.linear.ONE_THREAD_MAX`` feature values on one thread. This script measures both.

Run:  .venv/bin/python benchmarks/linear_probe_threads.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mimzoo
import mimzoo.eval.linear as linear
from mimzoo.data import open_dataset


def features(encoder, split):
    x = torch.stack([encoder.transform(split.image(i)) for i in range(len(split))])
    with torch.no_grad():
        return encoder(x), torch.tensor(split.labels())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    encoder = mimzoo.load("mae-vit-digits")
    src = open_dataset("digits")
    (trx, try_), (tex, tey) = features(encoder, src.train), features(encoder, src.eval)
    limit = linear.ONE_THREAD_MAX
    times: dict[str, list[float]] = {"2 threads": [], "1 thread (mimzoo default)": []}
    for _ in range(args.repeat):  # interleaved, so load changes hit both alike
        for label, one_thread_max in (("2 threads", 0), ("1 thread (mimzoo default)", limit)):
            linear.ONE_THREAD_MAX = one_thread_max
            torch.set_num_threads(2)
            start = time.perf_counter()
            metrics, _, _ = linear.linear_probe(trx, try_, tex, tey, 10)
            times[label].append(time.perf_counter() - start)
    base = statistics.median(times["2 threads"])
    print(f"linear probe on {tuple(trx.shape)} digits features, top-1 {metrics['top1']:.1f}, {args.repeat} rounds")
    print("| setting | median s | worst s | runs (s) | median speedup |\n|---|---:|---:|---|---:|")
    for label, ts in times.items():
        print(f"| {label} | {statistics.median(ts):.2f} | {max(ts):.1f} | {', '.join(f'{t:.1f}' for t in ts)} | "
              f"{base / statistics.median(ts):.2f}x |")


if __name__ == "__main__":
    main()
