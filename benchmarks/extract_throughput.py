"""Feature-extraction throughput through the full data pipeline vs the bare model forward.

    .venv/bin/python benchmarks/extract_throughput.py [--model mae-vit-b] [--images 64]
        [--batch-size 32] [--workers 1] [--repeat 3] [--threads 2] [--md PATH]

"pipeline" is ``mimzoo.eval.features.extract_features`` end to end with the cache off: digits
images decoded into PIL, the encoder's transform (resize, crop, normalise) in DataLoader
worker processes, the forward (tokens + pooled), the gather and the sort by index. "bare" is
the same forward (``forward_features`` + ``forward_head``) on the same images already turned
into tensors and batched. The two alternate, so drift in machine load hits both alike; the
medians and their ratio are reported: overhead = pipeline / bare - 1.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path


def bare_seconds(encoder, batches) -> float:
    import torch

    t = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            encoder.model.forward_head(encoder.forward_features(b), pre_logits=True)
    return time.perf_counter() - t


def pipeline_seconds(encoder, split, batch_size: int, workers: int) -> float:
    from mimzoo.eval.features import ExtractConfig, extract_features

    t = time.perf_counter()
    feats = extract_features(encoder, split, config=ExtractConfig(batch_size=batch_size, workers=workers, cache=False))
    assert len(feats) == len(split)
    return time.perf_counter() - t


def measure(args: argparse.Namespace) -> dict:
    import torch

    import mimzoo
    from mimzoo.data import open_dataset, subset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = mimzoo.load(args.model, pretrained=False)
    split = subset(open_dataset("digits").eval, args.images)
    tensors = torch.stack([encoder.transform(split.image(i)) for i in range(len(split))])
    batches = list(tensors.split(args.batch_size))
    bare_seconds(encoder, batches[:1])  # warm-up: allocator, kernels
    bare, pipe = [], []
    for _ in range(args.repeat):
        bare.append(bare_seconds(encoder, batches))
        pipe.append(pipeline_seconds(encoder, split, args.batch_size, args.workers))
    return {"bare": bare, "pipeline": pipe}


def report(args: argparse.Namespace, times: dict) -> str:
    import torch

    b, p = statistics.median(times["bare"]), statistics.median(times["pipeline"])
    n = args.images
    ratios = [pt / bt for bt, pt in zip(times["bare"], times["pipeline"])]
    rows = [
        "| path | median s | min s | images/s (median) | all runs (s) |",
        "|---|---:|---:|---:|---|",
        *(f"| {label} | {statistics.median(times[k]):.3f} | {min(times[k]):.3f} | {n / statistics.median(times[k]):.1f} | "
          f"{', '.join(f'{t:.2f}' for t in times[k])} |"
          for k, label in (("bare", "bare forward on pre-made batches"), ("pipeline", "full pipeline (`extract_features`)"))),
    ]
    head = (f"model `{args.model}` (random init), {n} digits images, batch {args.batch_size}, "
            f"{args.workers} loader worker(s), {args.threads} torch thread(s), {args.repeat} alternating repeats; "
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU")
    verdict = (f"**pipeline overhead: {100 * (p / b - 1):+.1f}%** (pipeline median / bare median - 1); "
               f"median of the per-repeat ratios: {100 * (statistics.median(ratios) - 1):+.1f}%; "
               f"of the minima: {100 * (min(times['pipeline']) / min(times['bare']) - 1):+.1f}%")
    return "\n".join([head, "", *rows, "", verdict])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mae-vit-b")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--md", type=Path, help="append the result (markdown) to this file")
    args = ap.parse_args()
    text = report(args, measure(args))
    print(text)
    if args.md:
        cmd = " ".join(["python", *sys.argv])
        with args.md.open("a", encoding="utf-8") as f:
            f.write(f"\n### `{cmd}`\n\n{text}\n")


if __name__ == "__main__":
    main()
