"""`mimzoo quickstart`: the main job end to end, offline, in about a minute on 2 CPU cores.

Imported by `mimzoo --help`: nothing heavy at module level.
"""

from __future__ import annotations

import click

from .table import render

COLUMNS = [("step", "step"), ("result", "result"), ("seconds", "s"), ("ok", "ok")]


@click.command("quickstart")
@click.option("-o", "--output", metavar="DIR",
              help="Folder for every artifact (a previous quickstart's folder is replaced). "
                   "[default: mimzoo-quickstart, with --video mimzoo-quickstart-video]")
@click.option("--model", help="Any model mimzoo.load accepts; the default is bundled and needs no network. "
                              "[default: mae-vit-digits, with --video videomae-vit-digits]")
@click.option("--data", help="Eval and verification data spec. [default: digits, with --video moving-digits:test=1000]")
@click.option("--license", "license_id", metavar="ID",
              help="License for the dry-run card when the model records none (your own pretraining run).")
@click.option("--video", is_flag=True,
              help="The video twin: a VideoMAE on moving-digits clips, reconstructions as an animated GIF.")
@click.option("--repo", metavar="ORG/NAME",
              help="Hub repo id written into the dry-run folder's model card (default: your-name/<model name>).")
@click.option("--overwrite", is_flag=True, help="Not needed: a previous quickstart's folder is replaced; a folder with other files never is.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="Threads of both bench backends (default 1: steady figures on a busy machine).")
def quickstart(output: str | None, model: str | None, data: str | None, repo: str, overwrite: bool,
               threads: int | None, license_id: str | None, video: bool) -> None:
    """Load -> k-NN + linear probe -> export ONNX -> verify -> bench -> reconstruct -> Hub-ready folder.

    Runs offline on the bundled mae-vit-digits model and scikit-learn's digits, prints one summary
    table and says what to run next. With --video: the bundled videomae-vit-digits on moving-digits
    clips (no bench step; reconstruction.gif instead of the picture).
    """
    from ..api.quickstart import NEXT_STEPS, QuickstartConfig, video_config
    from ..api.quickstart import quickstart as run

    given = {"model": model, "data": data, "output": output, "repo": repo, "threads": threads, "license": license_id}
    if video:
        cfg = video_config(**given)
    else:
        cfg = QuickstartConfig(**{k: v for k, v in given.items() if v is not None or k == "repo"})
    report = run(cfg, overwrite=overwrite, progress=lambda line: click.echo(line, err=True))
    click.echo(render(report.rows(), COLUMNS))
    click.echo(f"\nartifacts: {report.output}/ (summary in {report.output}/quickstart.json)")
    click.echo("next, on real models:")
    for line in NEXT_STEPS:
        click.echo(f"  {line}")
    if not report.ok:
        failed = ", ".join(s.step for s in report.steps if not s.ok)
        raise click.ClickException(f"quickstart finished with failed checks: {failed}; see the table above")
