"""`mimzoo export` and `mimzoo verify`.

Imports nothing heavy at module level: `mimzoo --help` imports this module.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .table import render

VERIFY_COLUMNS = [("check", "check"), ("value", "value"), ("limit", "limit"), ("ok", "ok")]
_FORMATS = {"onnx": "onnx", "trt": "tensorrt", "tensorrt": "tensorrt", "openvino": "openvino"}
# figure in the report -> (label, tolerance key, direction of the limit)
_ROWS = (
    ("max_abs", "max abs error", "max_abs", "<="),
    ("max_rel", "max rel error", "max_rel", "<="),
    ("cosine_min", "min cosine", "cosine_min", ">="),
    ("knn_top1_torch", "k-NN top-1 PyTorch (%)", None, ""),
    ("knn_top1_export", "k-NN top-1 export (%)", None, ""),
    ("knn_top1_agreement", "k-NN agreement", "knn_top1_agreement", ">="),
    ("knn_top1_drop", "k-NN top-1 drop (points)", "knn_top1_drop", "<="),
    ("top1_agreement", "top-1 agreement", None, ""),
    ("top1_torch", "top-1 PyTorch (%)", None, ""),
    ("top1_export", "top-1 export (%)", None, ""),
    ("top1_drop", "top-1 drop (points)", "top1_drop", "<="),
    ("pixel_agreement", "pixel agreement", None, ""),
    ("miou_torch", "mIoU PyTorch (%)", None, ""),
    ("miou_export", "mIoU export (%)", None, ""),
    ("miou_drop", "mIoU drop (points)", "miou_drop", "<="),
)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _tolerances(pairs: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"'{pair}' is not KEY=NUMBER (e.g. cosine_min=0.999)", param_hint="--tol")
    return out


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6f}" if abs(value) < 1e4 and abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    return value


def report_rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The verification report as table rows: figure, value, limit and whether it passes."""
    tol = rep.get("tolerances") or {}
    rows = []
    for key, label, tol_key, op in _ROWS:
        value = rep.get(key)
        if value is None:
            continue
        limit = tol.get(tol_key) if tol_key else None
        ok = "" if limit is None else ("yes" if (value <= limit if op == "<=" else value >= limit) else "NO")
        rows.append({"check": label, "value": _fmt(value), "limit": f"{op} {limit:g}" if limit is not None else "", "ok": ok})
    return rows


def _common_model_options(f: Any) -> Any:
    """Options shared by export and verify (listed in this order by --help)."""
    options = [
        click.option("--weights", metavar="PATH|TAG", help="Checkpoint file or weight-source tag."),
        click.option("--random-init", is_flag=True, help="Random weights (seeded with --seed) instead of pretrained."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of random weights, images and batches."),
        click.option("--data", default="digits", show_default=True,
                     help="Real images to verify on: 'digits', an image folder (one sub-folder per class), or 'none'."),
        click.option("--images", type=int, help="How many real images to compare (default 128; 512 for INT8)."),
        click.option("--tol", "tol", multiple=True, metavar="KEY=VALUE",
                     help="Tolerance override, repeatable: max_abs, max_rel, cosine_min, knn_top1_agreement, "
                          "knn_top1_drop (task exports: top1_drop, miou_drop)."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("export")
@click.argument("model")
@click.option("--format", "fmt", type=click.Choice(sorted(_FORMATS)), default="onnx", show_default=True,
              help="onnx, trt/tensorrt (a TensorRT engine: needs TensorRT and a GPU) or openvino (IR for CPUs: "
                   "pip install 'mimzoo[openvino]').")
@click.option("--trt", is_flag=True, help="Alias for --format trt.")
@click.option("--fp16", is_flag=True, help="Same as --precision fp16: half precision (LayerNorm/softmax stay fp32).")
@click.option("--int8", is_flag=True, help="Same as --precision int8 (searched until the accuracy gate passes).")
@click.option("--precision", "precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), default=None,
              help="fp32 (default), fp16, int8, or bf16 (OpenVINO only: --format openvino).")
@click.option("--target", type=click.Choice(["cpu", "cuda"]),
              help="Try every backend and precision this machine runs, keep the fastest that passes its gate "
                   "(replaces --format/--precision).")
@click.option("--threads", type=int, help="--target: intra-op threads of every candidate (default every usable core).")
@click.option("--batch", default="dynamic", show_default=True,
              help="The exported model's batch dimension: 'dynamic' (any batch) or one fixed size.")
@click.option("--img-size", type=int, help="Input side other than the model's own.")
@click.option("--min-frames", type=int, metavar="N",
              help="Video models: also accept clips of N up to the model's frames (T axis dynamic, verified at "
                   "both ends; the TensorRT profile spans it). N is a multiple of the tubelet size.")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset (17-23).")
@click.option("--tokens", is_flag=True, help="Also output the [N, L, D] tokens.")
@click.option("--head", metavar="DIR", type=click.Path(file_okay=False),
              help="Export MODEL plus this head (mimzoo eval --save-head DIR) as one task model: logits, or a mask.")
@click.option("-o", "--output", metavar="DIR", help="Folder to write (default <model>-<onnx|trt>-<precision>).")
@click.option("--overwrite", is_flag=True, help="Replace an existing DIR (once the new export has passed).")
@click.option("--int8-method", type=click.Choice(["auto", "dynamic", "static"]), default="auto", show_default=True,
              help="INT8 quantization: dynamic, static (QDQ, calibrated on real images) or auto (dynamic plans first).")
@click.option("--calibration-images", type=int, default=64, show_default=True, help="Images for INT8 calibration.")
@click.option("--max-batch", type=int, default=64, show_default=True, help="TensorRT profile: largest batch.")
@click.option("--opt-batch", type=int, default=8, show_default=True, help="TensorRT profile: batch tuned for.")
@_common_model_options
@click.pass_context
def export(ctx: click.Context, model: str, fmt: str, trt: bool, fp16: bool, int8: bool, precision: str | None,
           target: str | None,
           threads: int | None, batch: str, img_size: int | None, opset: int, tokens: bool,
           output: str | None, overwrite: bool, int8_method: str, calibration_images: int, max_batch: int,
           opt_batch: int, weights: str | None, random_init: bool, seed: int, data: str, images: int | None,
           tol: tuple[str, ...], as_json: bool, head: str | None = None, min_frames: int | None = None) -> None:
    """Export MODEL to ONNX, TensorRT or OpenVINO and verify it against PyTorch.

    Nothing is written unless verification passes. Examples:

      mimzoo export mae-vit-b --int8 -o mae-vit-b-int8

      mimzoo export mae-vit-b --trt --fp16

      mimzoo export mae-vit-b --format openvino --precision bf16

      mimzoo export mae-vit-b --target cpu -o mae-vit-b-cpu

      mimzoo export mae-vit-b --head digits-head --int8   (backbone + head: logits)
    """
    from ..api.export import export as run
    from .outputs import check_output

    precision = _one_precision(ctx, fmt, trt, fp16, int8, precision, random_init, weights)
    check_output(output, folder=True)
    if target and head:
        raise click.UsageError("--target does not take --head yet; pick --format and --precision for a task model")
    if target and min_frames is not None:
        raise click.UsageError("--target does not take --min-frames yet; pick --format and --precision for it")
    if target:
        return _export_target(ctx, model, target, threads, output, batch, img_size, opset, tokens, overwrite,
                              calibration_images, weights, random_init, seed, data, images, tol, as_json)
    result = run(
        model, output, format="tensorrt" if trt else _FORMATS[fmt], precision=precision, batch=batch, img_size=img_size,
        opset=opset, tokens=tokens, pretrained=not random_init, weights=weights, seed=seed,
        data=None if data == "none" else data, images=images, calibration_images=calibration_images,
        tolerances=_tolerances(tol), int8_method=int8_method, max_batch=max_batch, opt_batch=opt_batch,
        overwrite=overwrite, progress=_say, head=head, min_frames=min_frames,
    )
    if as_json:
        click.echo(json.dumps(result.meta, indent=2))
        return
    click.echo(render(report_rows(result.verification), VERIFY_COLUMNS))
    click.echo(f"wrote {result.path} ({result.meta['format']} {result.meta['precision']}, verified)")


def _one_precision(ctx: click.Context, fmt: str, trt: bool, fp16: bool, int8: bool, precision: str | None,
                   random_init: bool, weights: str | None) -> str:
    """The one precision asked for: --fp16 --int8 (or --int8 --precision fp16) is an error, not the last one."""
    from .options import refuse_conflicts

    asked = {"--fp16": "fp16" if fp16 else None, "--int8": "int8" if int8 else None,
             f"--precision {precision}": precision}
    if len({v for v in asked.values() if v}) > 1:
        refuse_conflicts("pass one precision (--fp16, --int8 or --precision NAME)", **asked)
    typed_format = ctx.get_parameter_source("fmt") is click.core.ParameterSource.COMMANDLINE
    if trt and typed_format and _FORMATS[fmt] != "tensorrt":
        refuse_conflicts("--trt means --format trt; pass one of them", **{"--trt": trt, f"--format {fmt}": fmt})
    refuse_conflicts("--random-init means no weights; pass one of them", **{"--random-init": random_init,
                                                                             "--weights": weights})
    return precision or next((v for v in asked.values() if v), "fp32")


def _export_target(ctx: click.Context, model: str, target: str, threads: int | None, output: str | None, batch: str,
                   img_size: int | None, opset: int, tokens: bool, overwrite: bool, calibration_images: int,
                   weights: str | None, random_init: bool, seed: int, data: str, images: int | None,
                   tol: tuple[str, ...], as_json: bool) -> None:
    from click.core import ParameterSource

    from ..api.export import export_target
    from ..exporters.target import COLUMNS, table_rows

    chosen = [f"--{n.replace('_', '-')}" for n in ("fmt", "trt", "fp16", "int8", "precision", "int8_method")
              if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)]
    if chosen:
        raise click.UsageError(f"--target picks the format and precision itself; drop {', '.join(chosen)}"
                               .replace("--fmt", "--format"))
    res = export_target(model, output, target=target, batch=batch, img_size=img_size, opset=opset, tokens=tokens,
                        pretrained=not random_init, weights=weights, seed=seed, data=None if data == "none" else data,
                        images=images, calibration_images=calibration_images, tolerances=_tolerances(tol),
                        threads=threads, overwrite=overwrite, progress=_say)
    if as_json:
        click.echo(json.dumps({"candidates": [c.to_dict() for c in res.candidates], "export": res.meta}, indent=2))
        return
    click.echo(render(table_rows(res.candidates), COLUMNS))
    w = res.winner
    click.echo(f"wrote {res.path} ({w.backend}: {w.format} {w.precision}, verified, fastest of "
               f"{sum(c.throughput is not None for c in res.candidates)} timed at batch {res.timing.batch})")


@click.command("verify")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--model", metavar="NAME", help="Model to compare with (default: rebuilt from the export's provenance).")
@_common_model_options
def verify(folder: str, model: str | None, weights: str | None, random_init: bool, seed: int, data: str,
           images: int | None, tol: tuple[str, ...], as_json: bool) -> None:
    """Check the export in FOLDER against PyTorch again; exit 1 when a tolerance is broken."""
    from ..api.export import verify as run

    rep = run(folder, model, pretrained=not random_init, weights=weights, seed=seed,
              data=None if data == "none" else data, images=images, tolerances=_tolerances(tol),
              raise_on_failure=False, progress=_say)
    click.echo(json.dumps(rep, indent=2) if as_json else render(report_rows(rep), VERIFY_COLUMNS))
    if not rep["passed"]:
        click.echo(f"error: {folder} fails verification: {'; '.join(rep['failures'])}", err=True)
        sys.exit(1)
    if not as_json:
        click.echo(f"{folder}: verification passed")
