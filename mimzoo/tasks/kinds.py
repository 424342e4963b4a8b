"""Head kinds: the name in ``head.json`` -> what the head consumes and how to build an empty one.

Loading a head folder builds the kind's module from the spec alone, then fills it from
``head.safetensors`` (keys and shapes must match exactly). A kind is looked up in this table,
never imported from a path read out of a file:

- ``linear``     BatchNorm1d(D, affine=False) + Linear(D, K) on the pooled embedding (mimzoo's probe);
- ``finetune``   Linear(D, K) on the pooled embedding of the fine-tuned backbone (which the folder holds);
- ``seg-linear`` the segmentation probe of :mod:`mimzoo.eval.seg`: built by its ``build_task_head(spec)``,
                 a module mapping the patch grid ``[N, D, h, w]`` to logits ``[N, K, h', w']``
                 (:class:`~mimzoo.tasks.model.TaskModel` upsamples them to the input size).

Other code (a plugin, a test) adds kinds with :func:`register_head_kind`; a name taken is an error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .spec import HeadFolderError, HeadSpec


@dataclass(frozen=True)
class HeadKind:
    """One kind of head."""

    name: str  # as head.json spells it
    task: str  # "classification" or "segmentation"
    consumes: str  # "pooled" or "patch-grid"
    build: Callable[[HeadSpec], Any]  # spec -> untrained nn.Module with the saved head's state_dict keys
    includes_backbone: bool = False  # the folder carries the (fine-tuned) backbone weights too


def _linear(spec: HeadSpec) -> Any:
    from ..eval.linear import linear_head

    return linear_head(spec.num_features, spec.num_classes)


def _finetune(spec: HeadSpec) -> Any:
    from torch import nn

    return nn.Linear(spec.num_features, spec.num_classes)


def _seg_linear(spec: HeadSpec) -> Any:
    seg = importlib.import_module("mimzoo.eval.seg")  # a fixed module: the segmentation probe's own package
    build = getattr(seg, "build_task_head", None)
    if build is None:
        raise HeadFolderError("this mimzoo's mimzoo.eval.seg cannot build seg-linear heads; upgrade mimzoo")
    return build(spec)


_KINDS: dict[str, HeadKind] = {
    "linear": HeadKind("linear", "classification", "pooled", _linear),
    "finetune": HeadKind("finetune", "classification", "pooled", _finetune, includes_backbone=True),
    "seg-linear": HeadKind("seg-linear", "segmentation", "patch-grid", _seg_linear),
}


def register_head_kind(kind: HeadKind) -> None:
    """Add a head kind; refuses a name already taken (two heads under one name would load wrongly)."""
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise HeadFolderError(f"head kind '{kind.name}' is already registered; choose another name")
    _KINDS[kind.name] = kind


def head_kind(name: str) -> HeadKind:
    """The registered kind `name`, or a one-line error listing the known ones."""
    try:
        return _KINDS[name]
    except KeyError:
        raise HeadFolderError(f"unknown head kind '{name}'; this mimzoo loads {', '.join(sorted(_KINDS))}: "
                              "upgrade mimzoo, or save the head with a known kind") from None


def head_kinds() -> list[str]:
    return sorted(_KINDS)
