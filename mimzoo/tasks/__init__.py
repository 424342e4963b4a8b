"""Task models: a backbone plus a trained head, saved as a head folder and exported as one model.

Head folder (written by ``mimzoo eval ... --task linear|finetune|seg-linear --save-head DIR`` or
:func:`save_head`; atomic, with mimzoo's output marker of kind ``"head"``)::

    DIR/
      head.json               HeadSpec (mimzoo.tasks.spec): task, kind, labels, num_classes, consumes,
                              backbone name + state sha256, num_features, input_size, mean, std,
                              includes_backbone / finetuned_sha256, dataset, metrics, head_args,
                              mimzoo_version, format
      head.safetensors        the head's state_dict (BatchNorm statistics included)
      backbone.safetensors    kind "finetune" only: the fine-tuned backbone (Encoder.state_dict())
      .mimzoo-output.json     marker, written last

API (no torch at import; the functions import it):

- :func:`make_spec` (encoder, kind, labels, metrics=..., head_args=...) -> :class:`HeadSpec`;
- :func:`save_head` (dir, head, spec, backbone=None, overwrite=False);
- :func:`load_head` (dir, encoder) -> :class:`~mimzoo.tasks.model.TaskModel`: checks the folder as
  untrusted input and refuses a backbone other than the one the head was trained on;
- :func:`read_spec` (dir) -> HeadSpec, JSON only (for verify, cards, the torch-free runtime);
- :func:`register_head_kind` / :func:`head_kind`: the kinds table (mimzoo.tasks.kinds).

Kinds: ``linear`` (BatchNorm1d(D, affine=False) + Linear on the pooled embedding), ``finetune``
(Linear on the pooled embedding of the fine-tuned backbone), ``seg-linear`` (built by
``mimzoo.eval.seg.build_task_head(spec)``: patch grid ``[N, D, h, w]`` -> logits ``[N, K, h', w']``,
upsampled bilinearly to the input size by TaskModel). TaskModel outputs ``logits`` (+ ``probs``)
for classification, ``logits`` ``[N, K, H, W]`` + ``mask`` ``[N, H, W]`` for segmentation.
"""

from __future__ import annotations

from typing import Any

from .spec import HeadFolderError, HeadSpec, read_spec

_LAZY = {"make_spec": "folder", "save_head": "folder", "load_head": "folder", "check_backbone": "folder",
         "TaskModel": "model", "register_head_kind": "kinds", "head_kind": "kinds", "head_kinds": "kinds",
         "HeadKind": "kinds"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HeadFolderError", "HeadSpec", "read_spec", *_LAZY]
