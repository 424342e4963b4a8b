"""Peak memory of one benchmark backend, measured in a fresh interpreter.

Inside the benchmarking process, memory freed by earlier work (exports, other backends) is reused
without growing the resident size, so per-backend figures would be meaningless there. Here a new
interpreter imports what it needs, notes its resident size (and GPU memory in use), loads the one
backend, runs each batch size, and reports the peak growth per batch size as JSON on stdout:

    python -m mimzoo.exporters.bench_memory '{"backend": "onnxruntime", "folder": "...", ...}'
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

MIB = 2**20


def _measure(job: dict[str, Any]) -> dict[str, float]:
    import numpy as np

    from .bench import BenchConfig, MemorySampler
    from .bench_backends import device_memory, load_backend

    cfg = BenchConfig(backends=(job["backend"],), batches=tuple(job["batches"]), warmup=max(1, job["warmup"]),
                      threads=job.get("threads"), device=job["device"])
    needs_torch = job["backend"].startswith("torch") or job["backend"] == "tensorrt" or cfg.device != "cpu"
    if job["backend"] == "tensorrt":
        import tensorrt  # noqa: F401  (its libraries are not the engine's memory either)
    if needs_torch:
        import timm  # noqa: F401  (libraries are imported before the baseline: their code is not the backend's)
        import torch

        from ..api import load as _load  # noqa: F401

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
    import onnxruntime  # noqa: F401

    if job["backend"].startswith("openvino"):
        import openvino  # noqa: F401  (its libraries are not the model's memory)
    gc.collect()
    base_rss, base_dev = MemorySampler.rss(), device_memory(cfg.device, reset=True)
    encoder = None
    if job.get("model_folder"):
        from ..api.load import load

        encoder = load(job["model_folder"])
    backend = load_backend(job["backend"], encoder, cfg, Path(job["folder"]) if job.get("folder") else None)
    out = {}
    rng = np.random.default_rng(0)
    for n in cfg.batches:
        x = backend.prepare(rng.standard_normal((n, *job["input_size"])).astype(np.float32))
        with MemorySampler() as mem:
            for _ in range(cfg.warmup):
                backend.call(x)
        used = device_memory(cfg.device, reset=False) - base_dev if cfg.device != "cpu" else mem.peak - base_rss
        out[str(n)] = used / MIB
    return out


def measure(backend: str, *, batches: tuple[int, ...], input_size: tuple[int, ...], device: str, threads: int | None,
            warmup: int, folder: Path | None = None, model_folder: Path | None = None,
            timeout: float = 1800) -> dict[int, float]:
    """Peak memory growth (MiB) per batch size of `backend`, measured in a child interpreter."""
    job = {"backend": backend, "batches": list(batches), "input_size": list(input_size), "device": device,
           "threads": threads, "warmup": warmup, "folder": str(folder) if folder else None,
           "model_folder": str(model_folder) if model_folder else None}
    r = subprocess.run([sys.executable, "-m", "mimzoo.exporters.bench_memory", json.dumps(job)],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory measurement of {backend} failed: {tail[:200]}")
    return {int(k): float(v) for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}


if __name__ == "__main__":
    print(json.dumps(_measure(json.loads(sys.argv[1]))))
