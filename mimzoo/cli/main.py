"""`mimzoo` CLI entry point.

Every failure prints one `error: ...` line and exits non-zero (130 when interrupted): a
:class:`~mimzoo.errors.MimzooError` with its own message, an OSError as the path and the fix, anything
else as a bug to rerun with `-v`, which shows the traceback. Commands that only read metadata never
import torch.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from .._version import __version__
from .table import markdown, render

MODEL_COLUMNS = [
    ("name", "name"),
    ("method", "method"),
    ("family", "family"),
    ("arch", "architecture"),
    ("params_m", "params (M)"),
    ("input", "input"),
    ("license", "license"),
    ("ft_top1", "FT top-1"),
    ("lin_top1", "LIN top-1"),
    ("knn_top1", "k-NN top-1"),
]
TAXONOMY_COLUMNS = [
    ("method", "method"),
    ("masking", "masking"),
    ("target", "target"),
    ("objective", "objective"),
    ("architecture", "architecture"),
    ("encoder_input", "encoder sees"),
    ("survey_nodes", "survey nodes"),
    ("paper", "paper"),
]


# Commands living in their own modules, imported only when used (or when --help lists them);
# those modules must not import torch at module level. A command appears once its module exists.
LAZY_COMMANDS: dict[str, str] = {
    "export": "mimzoo.cli.export_cmd:export",
    "verify": "mimzoo.cli.export_cmd:verify",
    "bench": "mimzoo.cli.bench_cmd:bench",
    "publish": "mimzoo.cli.hub_cmd:publish",
    "release": "mimzoo.cli.hub_cmd:release",
    "eval": "mimzoo.cli.eval_cmd:eval_cmd",
    "pretrain": "mimzoo.cli.pretrain_cmd:pretrain",
    "reconstruct": "mimzoo.cli.pretrain_cmd:reconstruct",
    "quickstart": "mimzoo.cli.quickstart_cmd:quickstart",
    "doctor": "mimzoo.cli.doctor_cmd:doctor",
}


def _lazy_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(LAZY_COMMANDS[name].split(":")[0]) is not None


class MimzooGroup(click.Group):
    """A click group that turns mimzoo's user errors into one line and a non-zero exit,
    and loads the heavier commands from their modules on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | {n for n in LAZY_COMMANDS if _lazy_available(n)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands and _lazy_available(name):
            import importlib

            module, attr = LAZY_COMMANDS[name].split(":")
            command = getattr(importlib.import_module(module), attr, None)
            if command is None:  # the module exists but does not define this command (yet)
                return None
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors and exits stay as they are
        except (Exception, KeyboardInterrupt) as e:
            from .failure import report

            ctx.exit(report(e, verbose=bool(ctx.params.get("verbose"))))


@click.group(cls=MimzooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="mimzoo")
@click.option("-v", "--verbose", is_flag=True, help="Log what mimzoo does (downloads, conversions).")
def cli(verbose: bool) -> None:
    """mimzoo: Masked Image Modeling backbones you can trust and ship."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.command("list", short_help="List the zoo models matching a glob PATTERN.")
@click.argument("pattern", default="*")
@click.option("--taxonomy", is_flag=True, help="Group the methods by the survey's classification.")
@click.option("--all", "include_test", is_flag=True, help="Include the tiny variants that exist for tests.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print a markdown table (the README's are generated so).")
def list_cmd(pattern: str, taxonomy: bool, include_test: bool, as_json: bool, as_markdown: bool) -> None:
    """List the zoo models matching PATTERN, a glob such as 'mae-*' (default: all)."""
    from ..api.listing import model_table, taxonomy_table

    if taxonomy:
        rows = taxonomy_table()
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if as_markdown:
            click.echo(markdown(rows, [("family", "family"), *TAXONOMY_COLUMNS]))
            return
        for family in ("reconstruction", "contrastive", "hybrid"):
            group = [r for r in rows if r["family"] == family]
            if group:
                click.echo(f"\n{family}-based ({len(group)})\n")
                click.echo(render(group, TAXONOMY_COLUMNS))
        return
    rows = model_table(pattern, include_test=include_test)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif rows and as_markdown:
        click.echo(markdown(rows, MODEL_COLUMNS))
    elif rows:
        click.echo(render(rows, MODEL_COLUMNS))
    else:
        click.echo(f"no models match '{pattern}'", err=True)
        sys.exit(1)


@cli.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(name: str, as_json: bool) -> None:
    """Show everything known about model NAME: method, taxonomy, weights, preprocessing."""
    from ..api.listing import info

    data = info(name)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    m, enc, pp, ref = data["method"], data["encoder"], data["preprocess"], data["reference"]
    t = m["taxonomy"]
    lines = [
        f"{data['name']}: {data['description']}",
        f"  method       {m['title']} ({m['family']}), {m['paper']['title']}, {m['paper']['year']}, {m['paper']['url']}",
        f"  taxonomy     masking={t['masking']} ratio={t['mask_ratio']} target={t['target']} "
        f"objective={t['objective']} encoder sees={t['encoder_input']}",
        f"  encoder      timm {enc['arch']} {enc['model_kwargs'] or ''} pooling={enc['pooling']} "
        f"params={enc['params_m']}M",
        f"  preprocess   input {pp['input_size']} mean {pp['mean']} std {pp['std']} "
        f"{pp['interpolation']} crop_pct={pp['crop_pct']} ({pp['crop_mode']})",
        f"  license      {m['license']}",
    ]
    if ref:
        epochs = f"{ref['epochs']} ep, " if ref["epochs"] else ""  # DINOv2 trains by iterations: no epoch count
        figures = [f"{what} {ref[key]}" for what, key in
                   (("fine-tune", "finetune_top1"), ("linear", "linear_top1"), ("k-NN", "knn_top1"))
                   if ref[key] is not None]  # only the figures the paper states
        lines.append(
            f"  paper top-1  {' / '.join(figures) or 'none stated'} "
            f"on {ref['dataset']} ({epochs}pretrained on {ref['pretrain_data']}) [{ref['source']}]"
        )
    for w in data["weights"]:
        lines.append(f"  weights      [{w['name']}] {_weights_where(w)}")
        if w["note"]:
            lines.append(f"               {w['note']}")
    for lay in data["layouts"]:
        lines.append(f"  layout       {lay['name']}: {lay['description']}")
    lines.append(f"  provided by  {data['distribution']}")
    click.echo("\n".join(lines))


def _weights_where(w: dict) -> str:
    """Where a weight source's file comes from, as `mimzoo info` shows it."""
    if w.get("repo_id"):
        rev = f"@{w['revision']}" if w["revision"] else ""
        where = f"hf-hub:{w['repo_id']}/{w['filename']}{rev}" + (f"  (from {w['url']})" if w["url"] else "")
    else:
        where = w["url"] or ""
    if w.get("bundled"):
        where = f"bundled:{w['bundled']}" + (f"  (also {where})" if where else "")
    return where + (f"  sha256 {w['sha256'][:12]}..." if w.get("sha256") else "")


@cli.command("plugins")
def plugins_cmd() -> None:
    """Show each installed method plugin, its distribution, version and status."""
    from ..registry import Registry, discover
    from ..errors import DuplicateNameError

    plugins = discover()
    rows = [
        {
            "method": p.entry_point,
            "distribution": p.distribution,
            "version": p.version,
            "models": _model_count(p.method.variants) if p.method else None,
            "status": p.status,
        }
        for p in plugins
    ]
    click.echo(render(rows, [("method", "method"), ("distribution", "distribution"), ("version", "version"),
                             ("models", "models"), ("status", "status")]))
    try:
        Registry(plugins)
    except DuplicateNameError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if any(p.error for p in plugins):
        sys.exit(1)


def _model_count(variants: tuple) -> str:
    """'4 (+1 test)': the models `mimzoo list` shows, then the tiny test variants it hides (`list --all`)."""
    tests = sum(1 for v in variants if v.test_only)
    return f"{len(variants) - tests}" + (f" (+{tests} test)" if tests else "")


def main() -> None:
    cli(prog_name="mimzoo")


if __name__ == "__main__":
    main()
