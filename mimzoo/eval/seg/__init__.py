"""Dense downstream validation: linear (and multi-scale) segmentation probes on frozen patch tokens.

- :mod:`.heads`: :class:`~.heads.LinearSegHead` (BN + 1x1 conv, DINOv2's BNHead), the grids each
  head reads, :class:`~.heads.SegmentationModel`, and :func:`build_task_head` for saved heads;
- :mod:`.features`: grids + masks per split, cached like the other probes' features;
- :mod:`.probe`: :class:`~.probe.SegLinearConfig` and the training loop (DINOv2's recipe);
- :mod:`.metrics`: confusion matrix, mIoU, pixel accuracy;
- :mod:`.picture`: the ``--show`` strip (image | ground truth | prediction);
- :mod:`.run`: ``--task seg-linear`` end to end.

Importing this package imports no torch; its attributes load their module on first use.
"""

from __future__ import annotations

from typing import Any

SEG_TASKS = ("seg-linear",)
_LAZY = {"build_task_head": "heads", "LinearSegHead": "heads", "SegmentationModel": "heads",
         "SegLinearConfig": "probe", "seg_linear_probe": "probe", "run_seg_linear": "run"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SEG_TASKS", *_LAZY]
