"""The compositional pretraining engine: masking x target x loss x encoder/decoder -> trainer.

A method is a :class:`Recipe` (plain data, importable without torch); the heavy parts load on use:

>>> from mimzoo.pretrain import find_recipe, pretrain  # doctest: +SKIP
>>> result = pretrain("mae", arch="mae-vit-test", data="digits", epochs=1, output="runs/mae")  # doctest: +SKIP
>>> mimzoo.load(result.folder)  # doctest: +SKIP

Modules: :mod:`.recipe` (the contract), :mod:`.masking`, :mod:`.targets`, :mod:`.losses`,
:mod:`.models` (encoders with masks, decoders, heads, predictor), :mod:`.data`, :mod:`.trainer`,
:mod:`.checkpoint`, :mod:`.distributed`, :mod:`.reconstruct`.
"""

from __future__ import annotations

from typing import Any

from .recipe import Augment, Decoder, Loss, Masking, Optim, Recipe, RecipeError, Target, find_recipe, with_overrides

_LAZY = {
    "pretrain": "mimzoo.pretrain.trainer:pretrain",
    "TrainConfig": "mimzoo.pretrain.trainer:TrainConfig",
    "reconstruct": "mimzoo.pretrain.reconstruct:reconstruct",
    "build_objective": "mimzoo.pretrain.models:build_objective",
}


def __getattr__(name: str) -> Any:  # PEP 562: torch-heavy parts load on first use
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mimzoo.pretrain' has no attribute '{name}'")


__all__ = ["Augment", "Decoder", "Loss", "Masking", "Optim", "Recipe", "RecipeError", "Target", "find_recipe",
           "with_overrides", *_LAZY]
