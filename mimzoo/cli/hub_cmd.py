"""`mimzoo publish`: put a checked model on the Hugging Face Hub (or write the repo folder locally).

Imports nothing heavy at module level: `mimzoo --help` imports this module.
"""

from __future__ import annotations

import dataclasses
import json

import click

from .table import render

FILE_COLUMNS = [("path", "file"), ("size", "size"), ("sha256", "sha256")]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@click.command("publish")
@click.argument("source")
@click.option("--repo", required=True, help="Hub repo id, org/name (created if missing).")
@click.option("--revision", default="main", show_default=True, help="Branch to commit to (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--with-onnx", "with_onnx", multiple=True, metavar="DIR",
              help="Export folder (`mimzoo export`) to ship under onnx/<precision>/; repeatable.")
@click.option("--with-export", "with_export", multiple=True, metavar="DIR",
              help="Export folder, ONNX or OpenVINO (under openvino/<precision>/); repeatable.")
@click.option("--eval-results", metavar="FILE", help="`mimzoo eval -o` JSON file; its results go into the card.")
@click.option("--license", "license_id", metavar="ID", help="License id for weights whose license is unknown.")
@click.option("--weights", metavar="PATH|TAG", help="Checkpoint file or weight-source tag (zoo-name sources).")
@click.option("--endpoint", metavar="URL", help="Hub URL for private hubs and mirrors (default: HF_ENDPOINT).")
@click.option("--dry-run", is_flag=True, help="Write the repo folder to -o DIR and upload nothing.")
@click.option("-o", "--output", metavar="DIR", help="Also keep the repo folder here (required with --dry-run).")
@click.option("--overwrite", is_flag=True, help="Replace an existing -o folder.")
@click.option("-m", "--message", metavar="TEXT", help="Commit message.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def publish(source: str, repo: str, revision: str, private: bool, with_onnx: tuple[str, ...],
            with_export: tuple[str, ...], eval_results: str | None,
            license_id: str | None, weights: str | None, endpoint: str | None, dry_run: bool, output: str | None,
            overwrite: bool, message: str | None, as_json: bool) -> None:
    """Publish SOURCE (a zoo name, a model folder or an export folder) to the Hub repo --repo.

    The token comes from HF_TOKEN (or `hf auth login`); it is never printed.
    """
    from ..api.publish import publish as run
    from .outputs import check_output

    check_output(output, folder=True)
    result = run(
        source, repo, revision=revision, private=private, with_onnx=with_onnx + with_export, eval_results=eval_results,
        license=license_id, weights=weights, endpoint=endpoint, dry_run=dry_run, output=output,
        overwrite=overwrite, commit_message=message, progress=lambda line: click.echo(line, err=True),
    )
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        return
    rows = [{"path": f.path, "size": _size(f.size), "sha256": f.sha256[:16]} for f in result.files]
    click.echo(render(rows, FILE_COLUMNS))
    if result.noncommercial:
        click.echo(f"license: {result.license} (non-commercial; stated at the top of the model card)")
    if result.dry_run:
        click.echo(f"dry run: repo folder written to {result.folder}; nothing was uploaded")
    elif result.commit == result.previous:
        click.echo(f"nothing changed: {result.url} is already at {result.commit}")
    else:
        was = f" (was {result.previous[:12]})" if result.previous else ""
        click.echo(f"published {result.url} at {result.commit}{was}")
        click.echo(f"load it with: mimzoo.load(\"{result.load_name}\")")


STAGE_COLUMNS = [("stage", "stage"), ("target", "target"), ("status", "status"), ("figure", "figure"),
                 ("seconds", "s"), ("artifacts", "artifacts / note")]


@click.command("release")
@click.argument("recipe", metavar="RECIPE")
@click.option("--endpoint", metavar="URL", help="Hub URL to publish to (default: HF_ENDPOINT).")
@click.option("--dry-run", is_flag=True, help="Run every gate, write the repo folder to -o DIR, upload nothing.")
@click.option("-o", "--output", metavar="DIR", help="Also keep the Hub-ready repo folder here (required with --dry-run).")
@click.option("--overwrite", is_flag=True, help="Replace an existing -o folder.")
@click.option("--workdir", metavar="DIR", help="Keep the exports and eval results here (default: a temporary folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def release(recipe: str, endpoint: str | None, dry_run: bool, output: str | None, overwrite: bool,
            workdir: str | None, as_json: bool) -> None:
    """Release a model as RECIPE (exports/<model>.toml) says: load, validate, export, verify, publish.

    Stops at the first failed gate (exit 1, after printing the table): nothing is uploaded then.
    The token comes from HF_TOKEN (or `hf auth login`); it is never printed.
    """
    from ..api.release import ReleaseGateError
    from ..api.release import release as run
    from .outputs import check_output

    check_output(output, folder=True)
    check_output(workdir, option="--workdir", folder=True)

    try:
        report = run(recipe, endpoint=endpoint, workdir=workdir, dry_run=dry_run, output=output, overwrite=overwrite,
                     progress=lambda line: click.echo(line, err=True))
    except ReleaseGateError as e:
        _print_release(e.report, as_json)
        raise  # the group prints `error: ...` and exits 1
    _print_release(report, as_json)


def _print_release(report, as_json: bool) -> None:  # noqa: ANN001 - a ReleaseReport (imported lazily)
    if as_json:
        data = dataclasses.asdict(report)
        click.echo(json.dumps({**data, "passed": report.passed, "load_name": report.load_name}, indent=2, default=str))
        return
    rows = [{"stage": s.stage, "target": s.target, "status": s.status, "figure": s.figure(),
             "seconds": s.seconds, "artifacts": "; ".join(p for p in (", ".join(s.artifacts), s.note) if p)} for s in report.stages]
    click.echo(render(rows, STAGE_COLUMNS))
    if report.failed is not None:
        return
    if report.dry_run:
        click.echo(f"dry run: every gate passed; repo folder written to {report.folder}; nothing was uploaded")
    else:
        click.echo(f"released {report.url} at {report.commit}")
        click.echo(f"load it with: mimzoo.load(\"{report.load_name}\")")
