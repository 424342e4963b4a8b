"""`mimzoo eval`: k-NN, linear / attentive probes and fine-tuning from the command line.

Imported by `mimzoo --help`: nothing heavy at module level. Under torchrun only rank 0 prints
and writes; every rank computes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from .options import checked_device, device_option, refuse_conflicts
from .table import render

TASK_CHOICES = ("knn", "linear", "attentive", "finetune", "all", "seg-linear")


class ProgressBar:
    """A one-line progress bar on stderr: redrawn in place on a terminal; otherwise a line per quarter
    and at least every ``every_s`` seconds (ViT-B feature extraction on a CPU takes long per quarter)."""

    every_s = 10.0

    def __init__(self, stream: Any = None, width: int = 28):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.stage, self.start, self.last_draw, self.last_quarter = "", 0.0, 0.0, -1

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self.stage:
            self.stage, self.start, self.last_quarter = stage, now, -1
        finished = done >= total
        if self.tty:
            if finished or now - self.last_draw > 0.1:
                self.last_draw = now
                end = "\n" if finished else ""
                self.stream.write(f"\r{self._line(done, total, now)}{end}")
                self.stream.flush()
            return
        quarter = 4 * done // max(total, 1)
        if quarter > self.last_quarter or now - self.last_draw >= self.every_s:
            self.last_quarter, self.last_draw = max(quarter, self.last_quarter), now
            self.stream.write(self._line(done, total, now) + "\n")
            self.stream.flush()

    def _line(self, done: int, total: int, now: float) -> str:
        frac = done / max(total, 1)
        fill = int(self.width * frac)
        bar = "#" * fill + "." * (self.width - fill)
        elapsed = now - self.start
        eta = f"  eta {elapsed * (total - done) / done:.0f}s" if 0 < done < total and elapsed > 0 else ""
        return f"{self.stage:<18} [{bar}] {done}/{total} {elapsed:6.1f}s{eta}"


@click.command("eval")
@click.argument("model")
@click.option("--task", "-t", "tasks", multiple=True, default=("knn",), show_default=True,
              help="knn, linear, attentive, finetune or all; repeat or comma-separate for several; "
                   "seg-linear (alone) on segmentation data.")
@click.option("--data", "-d", default="digits", show_default=True,
              help="digits, cifar10:PATH, cifar100:PATH, an image folder with train/ and val/; for video "
                   "models moving-digits[:frames=16,label=pair|direction] or video-folder:PATH; for seg-linear "
                   "digit-scenes, ade20k:PATH, voc:PATH or seg-folder:PATH.")
@click.option("--random-init", is_flag=True, help="Do not load pretrained weights (zoo names).")
@click.option("--weights", help="Checkpoint file or weight-source tag to load into a zoo model.")
@click.option("--img-size", type=int, help="Evaluate at this input size (position embeddings interpolated).")
@device_option
@click.option("--subset", type=int, help="Use at most N training images (seeded sample).")
@click.option("--eval-subset", type=int, help="Use at most N evaluation images.")
@click.option("--k", type=int, help="k-NN neighbours (default 20).")
@click.option("--temperature", type=float, help="k-NN vote temperature (default 0.07).")
@click.option("--voting", type=click.Choice(["distance", "uniform"]), help="k-NN votes: exp(cos/T) (default) or 1 each.")
@click.option("--epochs", type=int, help="Epochs of every trained head (linear, attentive, finetune).")
@click.option("--lr", "base_lr", type=float, help="Base learning rate (scaled by batch/256) of trained heads.")
@click.option("--batch-size", type=int, help="Batch size of trained heads and fine-tuning (global under torchrun).")
@click.option("--extract-batch-size", type=int, help="Images per forward when extracting features.")
@click.option("--workers", type=int, help="Image-decoding processes per process (default up to 4).")
@click.option("--layer-decay", type=float, help="Fine-tuning layer-wise lr decay (default 0.65).")
@click.option("--drop-path", type=float, help="Fine-tuning drop-path rate (default 0.1).")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), help="Fine-tuning mixed precision.")
@click.option("--checkpoint-every", type=int, help="Fine-tuning: steps between checkpoints (default 100).")
@click.option("--run-dir", help="Fine-tuning: checkpoint folder (default: under the cache).")
@click.option("--restart", is_flag=True, help="Fine-tuning: ignore an existing checkpoint and start over.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random init, heads and data order.")
@click.option("--cache-dir", help="Cache root for features and checkpoints (default ~/.cache/mimzoo).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached features.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other setting, e.g. --set linear_optimizer=lars --set attentive_num_queries=4.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write (merge) the records into this JSON file.")
@click.option("--save-head", type=click.Path(file_okay=False),
              help="Save the trained head (one --task: linear, finetune or seg-linear) for mimzoo export --head DIR.")
@click.option("--overwrite", is_flag=True, help="Replace the --save-head folder if mimzoo wrote it.")
@click.option("--show", type=int, help="seg-linear: write image | ground truth | prediction of N test images "
                                       "beside -o FILE (FILE.seg.png).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON instead of a table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def eval_cmd(model: str, tasks: tuple[str, ...], data: str, random_init: bool, weights: str | None,
             img_size: int | None, device: str | None, subset: int | None, eval_subset: int | None, settings: tuple[str, ...],
             output: str | None, as_json: bool, quiet: bool, restart: bool, no_cache: bool, cache_dir: str | None,
             extract_batch_size: int | None, save_head: str | None, overwrite: bool, **opts: Any) -> None:
    """Measure MODEL on a labelled dataset: k-NN, linear probe, attentive probe, fine-tuning.

    MODEL is a zoo name (with --random-init or --weights), hf-hub:org/name or a model folder.
    Runs unchanged under torchrun (e.g. torchrun --nproc-per-node 2 -m mimzoo.cli.main eval ...).

    \b
    Examples:
      mimzoo eval mae-vit-b --task knn --data digits
      mimzoo eval mae-vit-b --task linear --task attentive --data cifar100:~/data -o eval.json
      mimzoo eval ./my-encoder --task finetune --data ~/data/imagenette --epochs 20
      mimzoo eval mae-vit-digits --task seg-linear --data digit-scenes --show 6 -o seg.json
      mimzoo eval videomae-vit-digits --task knn,linear --data moving-digits
    """
    from ..api.evaluate import evaluate
    from ..eval.dist import shutdown
    from ..eval.results import table_columns, table_rows
    from ..errors import MimzooError
    from .outputs import check_output

    refuse_conflicts("--random-init means no weights; pass one of them", **{"--random-init": random_init,
                                                                             "--weights": weights})
    device = checked_device(device)
    check_output(output)
    check_output(cache_dir, option="--cache-dir", folder=True)
    check_output(opts.get("run_dir"), option="--run-dir", folder=True)
    check_output(save_head, option="--save-head", folder=True)
    if opts.get("show") and not output:
        raise MimzooError("--show writes its picture beside the results file; pass -o FILE as well")

    main = int(os.environ.get("RANK", "0")) == 0
    opts = {k: v for k, v in opts.items() if v is not None}
    opts.update(_settings(settings, MimzooError))
    if extract_batch_size is not None:
        opts["extract_batch_size"] = extract_batch_size
    if restart:
        opts["resume"] = False
    if no_cache:
        opts["cache"] = False
    try:
        records = evaluate(model, list(tasks), data, pretrained=not random_init, weights=weights, img_size=img_size,
                           device=device, subset=subset, eval_subset=eval_subset, cache_dir=cache_dir, output=output,
                           save_head=save_head, overwrite=overwrite,
                           progress=None if quiet or not main else ProgressBar(), **opts)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; run the same command again to continue fine-tuning from its last checkpoint",
                   err=True)
        sys.exit(130)
    finally:
        shutdown()
    if not main:
        return
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        click.echo(render(table_rows(records), table_columns(records)))
    skipped = max((r.config.get("skipped") or 0 for r in records), default=0)
    if skipped:
        click.echo(f"note: {skipped} images could not be decoded and were skipped (run with -v for the first)", err=True)
    if output:
        click.echo(f"wrote {output}", err=True)
    if save_head:
        click.echo(f"wrote head {save_head} (export it with: mimzoo export {model} --head {save_head})", err=True)


def _settings(pairs: tuple[str, ...], error: type[Exception]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise error(f"--set takes KEY=VALUE, got '{pair}'")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
