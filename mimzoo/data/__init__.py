"""Datasets for evaluation, opened from a one-string spec.

- ``digits``: scikit-learn's handwritten digits (offline, 10 classes);
- ``cifar10:PATH`` / ``cifar100:PATH``: the official python-pickle batches, read safely;
- ``PATH`` (or ``folder:PATH``): an image folder with ``train/<class>/`` and ``val/<class>/``;
- ``moving-digits[:frames=16,label=pair,...]``: clips of two bouncing digits (offline, see moving_digits.py);
- ``video-folder:PATH``: class folders of video files or frame folders (see video_folder.py).

Nothing here imports torch; :mod:`mimzoo.data.loader` turns a split into a DataLoader.
"""

from __future__ import annotations

from .base import EVAL, TRAIN, ClipSplit, DataError, DataSource, ImageSplit, UnsafeDataError, subset

SPEC_HELP = ("digits, cifar10:PATH, cifar100:PATH, an image folder PATH with train/ and val/, moving-digits "
             "or video-folder:PATH")


def open_dataset(spec: str) -> DataSource:
    """Open a dataset spec.

    Args:
        spec: ``"digits"``, ``"cifar10:PATH"``, ``"cifar100:PATH"``, or a folder path
            (``"folder:PATH"`` also works) holding ``train/<class>/`` and ``val/<class>/``.

    Returns:
        A :class:`DataSource` with ``train`` and ``eval`` splits and the class names.

    >>> src = open_dataset("digits")  # doctest: +SKIP
    >>> src.name, src.num_classes  # doctest: +SKIP
    ('digits', 10)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty dataset spec; pass {SPEC_HELP}")
    spec = spec.strip()
    from .segmentation import is_segmentation_spec

    if is_segmentation_spec(spec):  # image + mask pairs: mimzoo.data.segmentation.open_segmentation opens them
        raise DataError(f"'{spec}' is a segmentation dataset; evaluate on it with --task seg-linear")
    if spec == "digits":
        from .digits import open_digits

        return open_digits(spec)
    scheme, sep, rest = spec.partition(":")
    if scheme == "moving-digits":
        from .moving_digits import open_moving_digits

        return open_moving_digits(spec)
    if sep and scheme == "video-folder":
        if not rest:
            raise DataError(f"'{spec}' names no folder; pass video-folder:PATH to a folder of class folders of clips")
        from .video_folder import open_video_folder

        return open_video_folder(rest, spec)
    if sep and scheme in ("cifar10", "cifar100"):
        if not rest:
            raise DataError(f"'{spec}' names no folder; pass {scheme}:PATH to the extracted python batches")
        from .cifar import open_cifar

        return open_cifar(scheme, rest, spec)
    from .folder import open_folder

    if sep and scheme == "folder":
        return open_folder(rest, spec)
    if sep and len(scheme) > 1 and "/" not in scheme and not _exists(spec):
        raise DataError(f"unknown dataset kind '{scheme}:' in '{spec}'; pass {SPEC_HELP}")
    return open_folder(spec, spec)


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().exists()


__all__ = ["EVAL", "SPEC_HELP", "ClipSplit", "TRAIN", "DataError", "DataSource", "ImageSplit", "UnsafeDataError", "open_dataset",
           "subset"]
