"""ViT-B/16 on a GPU: torch eager vs torch.compile vs ONNX Runtime vs TensorRT, fp32 and fp16.

    .venv/bin/python benchmarks/export_gpu.py [--model mae-vit-b] [--batch 1,8,32] [--iters 20]

For a machine with a CUDA GPU (not run on the build machines, which have none). Backends that
cannot run there are reported as skipped with the reason: onnxruntime needs onnxruntime-gpu
*instead of* onnxruntime for its CUDA provider (``pip uninstall -y onnxruntime onnxruntime-gpu &&
pip install onnxruntime-gpu``; a session that falls back to the CPU is reported, not timed), and
`tensorrt` needs TensorRT 10 (``pip install 'mimzoo[gpu]'``, i.e. tensorrt-cu13>=10.13.2,<11). Each
row's note says how it was timed: every backend gets its input already on the GPU (onnxruntime through
IO binding, TensorRT on its own CUDA stream). Writes ``export_gpu.md``, ``export_gpu.json`` and
``export_gpu.png`` next to this script; the ratios are against torch eager fp32 at the same batch size,
measured in the same interleaved run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("torch", "torch-fp16", "torch-compile", "onnxruntime", "onnxruntime-fp16", "tensorrt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mae-vit-b")
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--workdir", default=None, help="keep the exports here (reused on the next run)")
    args = ap.parse_args()
    import torch

    from mimzoo.api.export import bench
    from mimzoo.exporters.bench import to_markdown
    from mimzoo.exporters.chart import bar_chart

    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible: this benchmark is for a GPU machine")
    gpu = torch.cuda.get_device_name()
    rows = bench(args.model, pretrained=False, seed=0, backends=BACKENDS, batches=[int(b) for b in args.batch.split(",")],
                 iters=args.iters, warmup=3, device="cuda", workdir=args.workdir,
                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    title = f"{args.model} (random init) on {gpu}: images/s"
    bar_chart(rows, HERE / "export_gpu.png", title=title)
    (HERE / "export_gpu.json").write_text(json.dumps({"gpu": gpu, "rows": rows}, indent=2))
    md = [f"# {title}", "", f"Command: `.venv/bin/python benchmarks/export_gpu.py --batch {args.batch} --iters {args.iters}`",
          "", to_markdown(rows), ""]
    (HERE / "export_gpu.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
