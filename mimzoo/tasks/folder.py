"""Head folders: ``save_head`` writes one atomically, ``load_head`` checks it and builds a TaskModel.

A head folder is untrusted input when loaded: only JSON and safetensors are read, the JSON is
checked field by field (:mod:`mimzoo.tasks.spec`), tensor names / shapes / dtypes must equal those
of the module the kind builds from the spec, file sizes are bounded by what those tensors need,
and the backbone it was trained on must be the one given (same state digest).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .._outputs import read_marker
from .._version import __version__
from .kinds import head_kind
from .spec import HeadFolderError, HeadSpec, read_spec

KIND = "head"  # marker kind of a head folder
SPEC_JSON = "head.json"
HEAD_WEIGHTS = "head.safetensors"
BACKBONE_WEIGHTS = "backbone.safetensors"
_HEADER_SLACK = 1 << 20  # bytes a safetensors header may take beyond the tensors themselves


def make_spec(encoder: Any, kind: str, labels: list[str] | tuple[str, ...], *, dataset: str | None = None,
              metrics: dict[str, float] | None = None, head_args: dict[str, Any] | None = None,
              backbone_sha256: str | None = None, finetuned: Any = None) -> HeadSpec:
    """The spec of a head of `kind` trained on `encoder` (and, for "finetune", the fine-tuned copy)."""
    from ..exporters.metadata import state_sha256

    k = head_kind(kind)
    pre = encoder.preprocess
    return HeadSpec(task=k.task, kind=kind, labels=tuple(str(s) for s in labels), consumes=k.consumes,
                    backbone=encoder.info.name, backbone_sha256=backbone_sha256 or state_sha256(encoder),
                    num_features=int(encoder.num_features), input_size=tuple(int(v) for v in pre.input_size),
                    mean=tuple(float(v) for v in pre.mean), std=tuple(float(v) for v in pre.std),
                    includes_backbone=k.includes_backbone,
                    finetuned_sha256=state_sha256(finetuned) if k.includes_backbone else None,
                    dataset=dataset, metrics={k_: round(float(v), 4) for k_, v in (metrics or {}).items()},
                    head_args=dict(head_args or {}), mimzoo_version=__version__).check()


def save_head(folder: str | Path, head: Any, spec: HeadSpec, *, backbone: Any = None, overwrite: bool = False) -> Path:
    """Write `head` (and, for kinds that include it, the fine-tuned `backbone`) as a head folder.

    Args:
        folder: the folder to write (atomically, with mimzoo's output marker).
        head: the trained head module; its state_dict must match what the kind builds from `spec`.
        spec: from :func:`make_spec`.
        backbone: the fine-tuned encoder (kind "finetune"); None otherwise.
        overwrite: replace an existing head folder mimzoo wrote.

    >>> spec = make_spec(encoder, "linear", [str(i) for i in range(10)], metrics={"top1": 94.4})  # doctest: +SKIP
    >>> save_head("digits-head", head, spec)  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    from .._atomic import atomic_dir

    spec.check()
    kind = head_kind(spec.kind)
    _state(head, kind.build(spec).state_dict(), "the head")  # what we write must load back
    if kind.includes_backbone != (backbone is not None):
        raise HeadFolderError(f"a {spec.kind} head folder {'needs' if kind.includes_backbone else 'takes no'} "
                              "backbone weights")
    try:
        with atomic_dir(folder, overwrite=overwrite, kind=KIND, info={"head_kind": spec.kind}) as tmp:
            (tmp / SPEC_JSON).write_text(json.dumps(spec.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
            save_file(_cpu(head.state_dict()), str(tmp / HEAD_WEIGHTS))
            if backbone is not None:
                save_file(_cpu(backbone.state_dict()), str(tmp / BACKBONE_WEIGHTS))
    except FileExistsError:
        raise HeadFolderError(f"{folder} exists; pass --overwrite to replace it, or choose another folder") from None
    return Path(folder)


def load_head(folder: str | Path, encoder: Any, *, probs: bool = False, mask_dtype: Any = None) -> Any:
    """Check head folder `folder` against `encoder` (the backbone it was trained on) and join them.

    Returns:
        A :class:`~mimzoo.tasks.model.TaskModel` in eval mode (a copy of `encoder` when the folder
        holds fine-tuned backbone weights; `encoder` itself is never modified).

    >>> task = load_head("digits-head", mimzoo.load("mae-vit-digits"))  # doctest: +SKIP
    >>> task(images)[0].argmax(1)  # doctest: +SKIP
    """
    import torch

    from ..exporters.metadata import state_sha256
    from .model import TaskModel

    folder = Path(folder)
    marker = read_marker(folder)
    if marker is not None and marker["kind"] != KIND:
        raise HeadFolderError(f"{folder} is a {marker['kind']} output, not a head folder; pass the folder that "
                              "mimzoo eval --save-head wrote")
    spec = read_spec(folder)
    check_backbone(spec, encoder, state_sha256(encoder))
    kind = head_kind(spec.kind)
    if (kind.task, kind.consumes, kind.includes_backbone) != (spec.task, spec.consumes, spec.includes_backbone):
        raise HeadFolderError(f"{folder}/{SPEC_JSON} describes a {spec.task} head on {spec.consumes} features, but "
                              f"a {spec.kind} head is a {kind.task} head on {kind.consumes}; save the head again")
    head = kind.build(spec)
    head.load_state_dict(_read(folder / HEAD_WEIGHTS, head.state_dict()), strict=True)
    if spec.includes_backbone:
        encoder = copy.deepcopy(encoder)
        encoder.load_state_dict(_read(folder / BACKBONE_WEIGHTS, encoder.state_dict()), strict=True)
        if state_sha256(encoder) != spec.finetuned_sha256:
            raise HeadFolderError(f"{folder}/{BACKBONE_WEIGHTS} is not the fine-tuned backbone {SPEC_JSON} records; "
                                  "save the head again")
    opts = {} if mask_dtype is None else {"mask_dtype": mask_dtype}
    return TaskModel(encoder, head.to(torch.float32), spec, probs=probs, **opts).eval()


def check_backbone(spec: HeadSpec, encoder: Any, digest: str) -> None:
    """Refuse a backbone other than the one the head was trained on, in one line naming that one."""
    size = tuple(int(v) for v in encoder.preprocess.input_size)
    if size != spec.input_size:  # first: another size also changes the digest (resampled position embeddings)
        raise HeadFolderError(f"this head was trained at input size {spec.input_size[1]}x{spec.input_size[2]}, the "
                              f"backbone is loaded at {size[1]}x{size[2]}: pass --img-size {spec.input_size[1]}")
    if int(encoder.num_features) != spec.num_features or digest != spec.backbone_sha256:
        what = (f"{encoder.num_features}-d embeddings, not {spec.num_features}"
                if int(encoder.num_features) != spec.num_features else "other weights")
        raise HeadFolderError(f"this head was trained on {spec.backbone} (weights sha256 {spec.backbone_sha256[:12]}), "
                              f"but {encoder.info.name} has {what}: pass {spec.backbone} with the same weights "
                              "(and --random-init/--seed/--weights as when the head was trained)")


def _cpu(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _state(module: Any, reference: dict[str, Any], what: str) -> None:
    got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in reference.items()}
    if got != want:
        diff = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want[k])
        raise HeadFolderError(f"{what} does not have the tensors its kind builds (first difference: {diff[0]})")


def _read(path: Path, reference: dict[str, Any]) -> dict[str, Any]:
    """Tensors of safetensors file `path`, which must hold exactly `reference`'s names, shapes and dtypes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    need = sum(t.numel() * t.element_size() for t in reference.values())
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise HeadFolderError(f"{path.parent} lacks {path.name}; copy the whole head folder, or save it again") from None
    if size > need + _HEADER_SLACK:
        raise HeadFolderError(f"{path} is {size} bytes, more than its tensors need ({need}); not a head mimzoo wrote")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise HeadFolderError(f"{path} is not a readable safetensors file ({e}); save the head again") from e
    for name in sorted(set(state) | set(reference)):
        t, ref = state.get(name), reference.get(name)
        if t is None or ref is None or t.shape != ref.shape or t.dtype != ref.dtype:
            got = "missing" if t is None else ("unexpected" if ref is None else f"{t.dtype} {tuple(t.shape)}")
            want = "" if ref is None else f", expected {ref.dtype} {tuple(ref.shape)}"
            raise HeadFolderError(f"{path}: tensor {name} is {got}{want}; the head does not fit this backbone "
                                  "or kind: save it again")
    return state
