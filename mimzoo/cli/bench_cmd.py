"""`mimzoo bench`: backends side by side in one run.

Imports nothing heavy at module level: `mimzoo --help` imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import deprecated_alias, device_option, refuse_conflicts, resolved_device
from .table import render


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of positive integers", param_hint=what)
    return values


def _exports(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        backend, sep, folder = pair.partition("=")
        if not sep or not folder:
            raise click.BadParameter(f"'{pair}' is not BACKEND=DIR (e.g. onnxruntime-int8=mae-vit-b-onnx-int8)",
                                     param_hint="--export")
        out[backend.strip()] = folder
    return out


@click.command("bench")
@click.argument("model")
@click.option("--backends", default="torch,torch-compile,onnxruntime,onnxruntime-int8,tensorrt", show_default=True,
              help="Comma-separated: torch, torch-fp16, torch-compile, onnxruntime, onnxruntime-fp16, "
                   "onnxruntime-int8, tensorrt, openvino, openvino-bf16, openvino-int8 (pip install 'mimzoo[openvino]').")
@click.option("--batch-sizes", "batches", default="1,8,32", show_default=True,
              help="Comma-separated batch sizes, each timed separately.")
@click.option("--batch", "old_batches", metavar="SIZES", callback=deprecated_alias("--batch", "--batch-sizes"),
              help="Deprecated alias of --batch-sizes.")
@click.option("--iters", type=int, default=10, show_default=True, help="Timed rounds; each runs every backend once.")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed calls per backend and batch first.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Intra-op threads, the same for every backend (default: every core this process may use).")
@device_option
@click.option("--img-size", type=int, help="Input side other than the model's own.")
@click.option("--random-init", is_flag=True, help="Random weights (seeded with --seed) instead of pretrained.")
@click.option("--weights", metavar="PATH|TAG", help="Checkpoint file or weight-source tag.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random weights (--random-init) and inputs.")
@click.option("--export", "exports", multiple=True, metavar="BACKEND=DIR", help="Run this verified export folder for BACKEND.")
@click.option("--workdir", metavar="DIR", help="Build the exports here and keep them (reused next time).")
@click.option("--data", default="digits", show_default=True, help="Images the exports are verified on.")
@click.option("--images", type=int, help="How many real images verification compares.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory column (measured in child interpreters).")
@click.option("--chart", metavar="PNG", help="Also draw the throughput as a bar chart.")
@click.option("-o", "--output", metavar="FILE", help="Write the results with their header (threads, command, machine): FILE.json or FILE.md.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench(model: str, backends: str, batches: str, old_batches: str | None, iters: int, warmup: int, threads: int | None, device: str,
          img_size: int | None, random_init: bool, weights: str | None, seed: int, exports: tuple[str, ...],
          workdir: str | None, data: str, images: int | None, no_memory: bool, chart: str | None, output: str | None, as_json: bool) -> None:
    """Throughput, latency p50/p95 and peak memory of MODEL on each backend, side by side.

    Every backend gets the same intra-op threads (--threads), rounds are interleaved, and a header states
    the threads, the command and the machine; it warns when other processes load the machine.
    Backends that cannot run here are listed as skipped, with the reason.

    \b
    Example:
      mimzoo bench mae-vit-b --backends torch,onnxruntime,onnxruntime-int8 --batch-sizes 1,8
    """
    from ..api.export import bench as run
    from ..exporters.bench import columns, to_markdown
    from ..exporters.bench_machine import LoadProbe, bench_header, default_threads
    from ..exporters.chart import bar_chart
    from ..exporters.metadata import write_json
    from .._atomic import atomic_file

    flag = "--batch-sizes"
    if old_batches is not None:
        refuse_conflicts("use --batch-sizes only", **{"--batch-sizes": _given("batches"), "--batch": True})
        batches, flag = old_batches, "--batch"
    sizes = _ints(batches, flag)
    refuse_conflicts("pass one of them", **{"--random-init": random_init, "--weights": weights})
    device = resolved_device(device)
    threads = threads or default_threads()
    probe = (click.get_current_context().obj or {}).get("load_probe") or LoadProbe()  # tests pass a fake load via obj
    header = bench_header(model, threads=threads, device=device, batches=sizes, iters=iters,
                          warmup=warmup, command=_command(), probe=probe)
    if header.warning:
        click.echo(f"warning: {header.warning}", err=True)
    with probe.watching():  # samples this process's CPU time, so its own share of the load can be subtracted
        rows = run(model, backends=[b.strip() for b in backends.split(",") if b.strip()], batches=sizes,
                   iters=iters, warmup=warmup, threads=threads, device=device, pretrained=not random_init, weights=weights,
                   seed=seed, img_size=img_size, exports=_exports(exports), workdir=workdir,
                   data=None if data == "none" else data, images=images, memory=not no_memory, progress=lambda line: click.echo(line, err=True))
    warned = header.warning
    header = header.with_load(probe.read(), after=True)  # the load while it ran, this process's share subtracted
    if header.warning and not warned:
        click.echo(f"warning: {header.warning}", err=True)
    if output:
        path = Path(output)
        if path.suffix == ".md":
            with atomic_file(path) as tmp:
                tmp.write_text(header.markdown() + "\n\n" + to_markdown(rows) + "\n", encoding="utf-8")
        else:
            write_json(path, {"model": model, "device": device, "header": header.to_dict(), "rows": rows})
    if chart:
        bar_chart(rows, chart, title=f"{model}: throughput on {device}, {threads} thread(s) each")
    if as_json:  # stdout stays the rows (scripts parse it); the header goes to stderr, and into -o FILE.json
        click.echo("\n".join(header.lines()), err=True)
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo("\n".join(header.lines()) + "\n\n" + render(rows, columns(rows)))


def _given(name: str) -> bool:
    """Whether option `name` was typed on the command line (not its default)."""
    ctx = click.get_current_context()
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _command() -> str:
    """The command as typed (`mimzoo bench ...`), to rerun the figures."""
    import sys

    from ..exporters.bench_machine import command_line

    return command_line(sys.argv, program="mimzoo")
