"""What a pretraining run leaves behind, and reading it back.

The output folder is a mimzoo model folder that ``mimzoo.load``, ``eval``, ``export`` and
``publish`` accept, plus the run's own files::

    config.json            timm/mimzoo config; its mimzoo block records the recipe and the run
    model.safetensors      the encoder (timm keys)
    pretrain.safetensors   the rest of the objective (decoder / head / predictor / mask tokens);
                           its metadata holds the recipe JSON and the encoder's zoo/arch name
    checkpoints/last.pt    the full training state, for --resume
    log.jsonl              one line of loss, learning rate and speed per logged step

Each file is replaced atomically; config.json is written last, so a folder whose config.json
exists always has the matching weights.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_file, default_mode
from .._outputs import MARKER, ForeignOutputError, foreign_entries, marker_text, read_marker, sweep_temps, temp_name
from ..errors import MimzooError
from .recipe import Recipe, recipe_from_dict

PRETRAIN_NAME = "pretrain.safetensors"
LOG_NAME = "log.jsonl"
# the encoder has its own file; targets are rebuilt (an EMA teacher lives in the checkpoints)
SKIP_PREFIXES = ("encoder.", "target.")


def objective_extras(model_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The objective's tensors besides the encoder and the target (what pretrain.safetensors holds)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model_sd.items() if not k.startswith(SKIP_PREFIXES)}


def encoder_state(model_sd: dict[str, torch.Tensor], prefix: str = "encoder.") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in model_sd.items() if k.startswith(prefix)}


def write_model_folder(folder: str | Path, encoder: Any, model_sd: dict[str, torch.Tensor], recipe: Recipe,
                       run: dict[str, Any]) -> Path:
    """Write the encoder (+ config) and the decoder file into ``folder``, each file atomically.

    Args:
        folder: the run's output folder.
        encoder: a CPU :class:`~mimzoo.encoders.encoder.Encoder` of the trained architecture; its
            weights are replaced by the trained ones from ``model_sd``.
        model_sd: the objective's full state dict.
        recipe: the recipe trained with (goes into config.json and pretrain.safetensors).
        run: facts about the run for config.json (data, epochs, steps, final loss, ...).
    """
    from dataclasses import replace

    from safetensors.torch import save_file

    from ..hub.folder import write_folder
    from ..weights import LoadReport

    folder = Path(folder)
    prefix = "target.teacher." if recipe.export_encoder == "teacher" else "encoder."
    sd = encoder_state(model_sd, prefix)
    encoder.model.load_state_dict(sd, strict=True)
    encoder.info = replace(encoder.info, weights=LoadReport(source=f"mimzoo pretrain {recipe.method}", layout="timm",
                                                            tensors=len(sd)),
                           extra={**encoder.info.extra, "recipe": recipe.to_dict(), "pretrain": run})
    meta = {"format": "1", "recipe": json.dumps(recipe.to_dict()), "arch": str(run.get("arch", ""))}
    with atomic_file(folder / PRETRAIN_NAME) as tmp:
        save_file(objective_extras(model_sd), str(tmp), metadata=meta)
    tmp = folder / temp_name("model", "tmp", uuid.uuid4().hex[:8])  # a killed run's is swept on the next start
    tmp.mkdir()
    try:
        write_folder(encoder, tmp)
        for name in ("model.safetensors", "config.json"):  # config.json last: it commits the folder
            default_mode(tmp / name)  # safetensors writes 0600; a model folder is meant to be shared
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def check_output_folder(folder: Path) -> None:
    """Before a run starts (its lock held): `folder` is new, empty or a pretraining run's, and what a killed
    run left in it (temp files of checkpoints, weights and the model folder) is removed."""
    if folder.exists() and not folder.is_dir():
        raise ForeignOutputError(f"{folder} is a file, not a folder; choose another -o")
    if not folder.is_dir():
        return
    foreign = foreign_entries(folder, "pretrain")
    if foreign:
        raise ForeignOutputError(f"{folder} holds files mimzoo did not write as a pretraining run "
                                 f"({', '.join(foreign[:3])}); choose another -o (a new or empty folder)")
    sweep_temps(folder)
    sweep_temps(folder / "checkpoints")


def open_output_folder(folder: Path, *, fresh: bool) -> None:
    """Create the run's folder with mimzoo's marker; a fresh start drops the log of a run that was killed
    before its first checkpoint (a resumed run trims its log to the checkpoint instead)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fresh:
        (folder / LOG_NAME).unlink(missing_ok=True)
    if read_marker(folder) is None:
        with atomic_file(folder / MARKER) as tmp:
            tmp.write_text(marker_text("pretrain"), encoding="utf-8")


def read_pretrain_file(path: str | Path) -> tuple[dict[str, torch.Tensor], Recipe | None, dict[str, str]]:
    """Tensors, recipe and metadata of a ``pretrain.safetensors``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MimzooError(f"no {PRETRAIN_NAME} at {path}; pictures need the decoder a pretraining run writes")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    recipe = recipe_from_dict(json.loads(meta["recipe"])) if "recipe" in meta else None
    return tensors, recipe, meta
