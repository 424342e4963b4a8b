"""`mimzoo pretrain` and `mimzoo reconstruct` (imported by `mimzoo --help`: no torch at module level)."""

from __future__ import annotations

import time
from typing import Any

import click

from .options import checked_device, device_option
from .table import render

RESULT_COLUMNS = [("folder", "model folder"), ("method", "method"), ("arch", "arch"), ("steps", "steps"),
                  ("loss", "final loss"), ("minutes", "minutes")]


def _pairs(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{v}' is not KEY=VALUE (e.g. masking.ratio=0.6)", param_hint="--set")
        out.append((key.strip(), val.strip()))
    return tuple(out)


# option -> smallest value it takes: checked before any work (0 or a negative batch must not run)
_MINIMUM = {"batch_size": 1, "epochs": 1, "accum_steps": 1, "max_steps": 1, "threads": 1, "log_every": 1,
            "img_size": 1, "save_every": 0, "workers": 0, "warmup_epochs": 0.0}


def _check_ranges(options: dict[str, Any]) -> None:
    import math

    from ..errors import MimzooError

    for name, low in _MINIMUM.items():
        value = options.get(name)
        if value is not None and not (math.isfinite(value) and value >= low):
            flag = "--" + name.replace("_", "-")
            raise MimzooError(f"{flag} must be at least {low}, got {value}; pass {flag} {max(low, 1)} or more "
                              "(or leave it out for the recipe's default)")
    lr = options.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise MimzooError(f"--lr must be a positive number, got {lr}; pass e.g. --lr 1.5e-4, or leave it out "
                          "(the recipe's base lr x batch / 256)")


def _progress(rec: dict[str, Any]) -> None:
    eta = time.strftime("%H:%M:%S", time.gmtime(rec["eta_s"]))
    click.echo(f"step {rec['step']}/{rec['total']}  epoch {rec['epoch']}  loss {rec['loss']:.4f}  "
               f"lr {rec['lr']:.2e}  {rec['images_per_s']:.0f} img/s  eta {eta}", err=True)


def _report(rec: dict[str, Any]) -> None:
    from ..pretrain.progress import describe

    click.echo(describe(rec), err=True)


@click.command("pretrain")
@click.argument("method")
@click.option("--arch", help="Zoo model (mae-vit-b), module:VARIANT, or timm architecture. Default: the recipe's.")
@click.option("--data", default="digits", show_default=True, help="digits, or a folder of images (recursive).")
@click.option("--epochs", type=int, help="Passes over the data. Default: the recipe's.")
@click.option("-o", "--output", help="Output folder, a mimzoo model folder (default: runs/METHOD-ARCH).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/checkpoints/last.pt.")
@click.option("--batch-size", type=int, help="Global batch (all processes). Default: the recipe's, capped by the data.")
@click.option("--accum-steps", type=int, default=1, show_default=True, help="Micro-batches per optimiser step.")
@click.option("--lr", type=float, help="Peak learning rate. Default: recipe base lr x batch / 256.")
@click.option("--warmup-epochs", type=float, help="Linear warmup length. Default: the recipe's.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="bf16: autocast on CPU or GPU; fp16: autocast + gradient scaler, GPU only.")
@device_option
@click.option("--img-size", type=int, help="Input size other than the architecture's.")
@click.option("--seed", type=int, default=0, show_default=True, help="Weights, data order, augmentation, masks.")
@click.option("--save-every", type=int, default=0, show_default=True, help="Checkpoint every N steps (0: every epoch).")
@click.option("--log-every", type=int, default=10, show_default=True, help="Report the loss every N steps.")
@click.option("--max-steps", type=int, help="Stop after N steps (the schedule still spans --epochs).")
@click.option("--fsdp", is_flag=True, help="Shard parameters with FSDP (largest encoders; with torchrun).")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the objective.")
@click.option("--threads", type=int, help="CPU threads per process (1 is often fastest on a busy machine).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field, e.g. --set masking.ratio=0.6 --set target.kind=hog (repeatable).")
@click.option("--step-delay", type=float, default=0.0, hidden=True)
def pretrain(method: str, output: str | None, compile_: bool, sets: tuple[str, ...], **options: Any) -> None:
    """Pretrain an encoder with METHOD's recipe (mae, simmim, data2vec, ijepa, fcmae, eva02, maskfeat).

    Writes a model folder that `mimzoo.load`, `mimzoo eval`, `export` and `publish` accept. Run it
    under `torchrun --nproc-per-node N -m mimzoo.cli.main pretrain ...` for several processes.
    """
    import os

    _check_ranges(options)
    options["device"] = checked_device(options.get("device"))
    from ..pretrain.trainer import TrainConfig, pretrain as run

    from .outputs import check_output

    arch = options["arch"]
    out = output or f"runs/{method}-{(arch or 'default').replace('/', '_').replace(':', '_')}"
    check_output(out, folder=True)
    cfg = TrainConfig(method=method, output=out, compile=compile_, overrides=_pairs(sets), **options)
    main = os.environ.get("RANK", "0") == "0"
    t0 = time.perf_counter()
    result = run(cfg, on_log=_progress if main else None, on_progress=_report if main else None)
    if main:
        minutes = round((time.perf_counter() - t0) / 60, 2)
        row = {"folder": str(result.folder), "method": result.recipe.method, "arch": arch or result.recipe.arch,
               "steps": result.steps, "loss": round(result.loss, 4), "minutes": minutes}
        click.echo(render([row], RESULT_COLUMNS))


@click.command("reconstruct")
@click.argument("model")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", default="reconstruction.png", show_default=True,
              help="PNG to write; for a video model .gif (animation) or .png (frame strip).")
@click.option("--decoder", type=click.Path(dir_okay=False),
              help="pretrain.safetensors, or an official / transformers MAE checkpoint.")
@click.option("--weights", help="Weight-source tag or checkpoint file for MODEL (as mimzoo.load's weights=).")
@click.option("--mask-ratio", type=float, help="Masking ratio other than the recipe's.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the masks.")
def reconstruct(model: str, images: tuple[str, ...], output: str, decoder: str | None, weights: str | None,
                mask_ratio: float | None, seed: int) -> None:
    """Picture MODEL's reconstructions of IMAGES: original | masked | reconstruction | + visible patches.

    For a video model (VideoMAE), IMAGES are clips: video files, frame folders or moving-digits:INDEX,
    drawn frame by frame into an animated GIF (-o out.gif) or a frame strip (-o out.png).
    """
    from ..pretrain.reconstruct import reconstruct as draw
    from .outputs import check_output

    check_output(output)

    path = draw(model, list(images), output, decoder=decoder, weights=weights, mask_ratio=mask_ratio, seed=seed)
    from pathlib import Path

    from ..data.video_folder import VIDEO_SUFFIXES

    clips = path.suffix.lower() == ".gif" or any(
        i.startswith("moving-digits") or Path(i).is_dir() or Path(i).suffix.lower() in VIDEO_SUFFIXES for i in images)
    what = "clip" if clips else "image"
    click.echo(f"wrote {path} ({len(images)} {what}{'s' if len(images) > 1 else ''})")
