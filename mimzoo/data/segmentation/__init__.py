"""Segmentation datasets (image + per-pixel labels), opened from a one-string spec.

- ``digit-scenes``: canvases of scikit-learn digits with per-pixel labels (offline, 11 classes);
- ``ade20k:PATH``: ADE20K's ``ADEChallengeData2016`` (150 classes, zero label ignored);
- ``voc:PATH``: PASCAL VOC 2012 segmentation (21 classes, 255 = void);
- ``seg-folder:PATH``: ``images/`` and ``masks/`` (index PNGs) matched by file stem.

Nothing here imports torch.
"""

from __future__ import annotations

from ..base import DataError
from .base import IGNORE, SegSource, SegSplit, seg_subset

SEG_SPEC_HELP = "digit-scenes, ade20k:PATH, voc:PATH or seg-folder:PATH"
_SCHEMES = ("ade20k", "voc", "seg-folder")


def is_segmentation_spec(spec: str) -> bool:
    """Whether `spec` names a segmentation dataset (``digit-scenes``, ``ade20k:``, ``voc:``, ``seg-folder:``)."""
    spec = spec.strip() if isinstance(spec, str) else ""
    return spec == "digit-scenes" or spec.partition(":")[0] in _SCHEMES and ":" in spec


def open_segmentation(spec: str) -> SegSource:
    """Open a segmentation dataset spec.

    Args:
        spec: ``"digit-scenes"``, ``"ade20k:PATH"``, ``"voc:PATH"`` or ``"seg-folder:PATH"``.

    Returns:
        A :class:`SegSource` with ``train`` and ``eval`` splits of (image, mask) and the class names.

    >>> open_segmentation("digit-scenes").num_classes  # doctest: +SKIP
    11
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty dataset spec; pass {SEG_SPEC_HELP}")
    spec = spec.strip()
    if spec == "digit-scenes":
        from ..digit_scenes import open_digit_scenes

        return open_digit_scenes(spec)
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in _SCHEMES:
        raise DataError(f"'{spec}' is not a segmentation dataset; pass {SEG_SPEC_HELP}")
    if not rest.strip():
        raise DataError(f"'{spec}' names no folder; pass {scheme}:PATH")
    if scheme == "ade20k":
        from .ade20k import open_ade20k

        return open_ade20k(rest, spec)
    if scheme == "voc":
        from .voc import open_voc

        return open_voc(rest, spec)
    from .seg_folder import open_seg_folder

    return open_seg_folder(rest, spec)


__all__ = ["IGNORE", "SEG_SPEC_HELP", "SegSource", "SegSplit", "is_segmentation_spec", "open_segmentation",
           "seg_subset"]
