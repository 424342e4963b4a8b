"""`mimzoo doctor` (imported by `mimzoo --help`: no torch, onnx or onnxruntime at module level)."""

from __future__ import annotations

import json

import click

from .table import render

BACKEND_CHOICES = ("torch", "torch-cuda", "onnxruntime", "onnxruntime-cuda", "tensorrt", "openvino")
COLUMNS = [("area", "check"), ("status", "status"), ("found", "found"), ("fix", "how to fix")]


@click.command("doctor")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES),
              help="Only check this backend: exit 0 when it can run here, 1 (with the fix) when not.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every check and every backend's verdict).")
def doctor(backend: str | None, as_json: bool) -> None:
    """Check what can run here: torch and CUDA, the GPUs, onnxruntime's providers (run for real),
    TensorRT, OpenVINO and free disk in the caches; each problem with its fix.

    \b
    Examples:
      mimzoo doctor
      mimzoo doctor --backend tensorrt && mimzoo export mae-vit-b --trt
    """
    from ..api.doctor import backend_verdict, report, require_backend

    if backend:
        verdict = require_backend(backend) if not as_json else backend_verdict(backend)
        if as_json:
            click.echo(json.dumps({"backend": backend, "ready": verdict.ready, "reason": verdict.reason}, indent=2))
            if not verdict.ready:
                raise SystemExit(1)
            return
        click.echo(f"{backend}: ready ({verdict.reason})")
        return
    data = report()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(render(data["checks"], COLUMNS))
    ready = [b for b, v in data["backends"].items() if v["ready"]]
    not_ready = [b for b, v in data["backends"].items() if not v["ready"]]
    click.echo(f"\nready here: {', '.join(ready) or 'none'}"
               + (f"; not ready: {', '.join(not_ready)} (mimzoo doctor --backend NAME says why)" if not_ready else ""))
