"""Video folders: ``--data video-folder:PATH``, class sub-folders of clips.

Layouts (the first that fits):

- ``PATH/train/<class>/<clip>`` and ``PATH/val/<class>/<clip>``: the splits as given;
- ``PATH/<class>/<clip>``: a fixed, stratified 25% of each class is held out as ``val``
  (seeded, so every run and process sees the same split).

A clip is a video file (``.mp4``, ``.webm``, ``.avi``, ``.mkv``, ``.mov``; decoded with PyAV,
``pip install 'mimzoo[video]'``) or a frame folder (a folder of images, in name order; needs
nothing). Frames are sampled as :class:`~mimzoo.data.base.ClipSplit` describes: the model's
``num_frames`` frames ``frame_stride`` apart from the middle of the clip. A clip too short for
that, or a file that cannot be decoded, is skipped with a reason naming the file (the run fails
only when nothing of a split decodes). Video files are decoded whole, frame by frame, and only
the sampled frames are kept as images: meant for short clips.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from .base import ClipSplit, DataError, DataSource
from .folder import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v"})
LAYOUT_HINT = "a video folder holds <class>/<clip> (or train/<class>/<clip> and val/<class>/<clip>), " \
              "a clip being a video file or a folder of frame images"
VAL_FRACTION, SPLIT_SEED = 0.25, 0
AV_HINT = "pip install 'mimzoo[video]'"


def require_av() -> Any:
    """PyAV, or a one-line error naming the extra that brings it."""
    try:
        import av
    except ImportError as e:
        raise MissingDependencyError(f"reading video files needs PyAV ({e}); {AV_HINT}, "
                                     "or pass frame folders instead") from e
    return av


def read_video(path: str | Path) -> list[Any]:
    """Every frame of a video file as RGB PIL images, or a ValueError naming the file."""
    av = require_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("it has no video stream")
            return [f.to_image().convert("RGB") for f in container.decode(video=0)]
    except MissingDependencyError:
        raise
    except Exception as e:  # PyAV raises its own FFmpegError family (some are OSError, some ValueError)
        raise ValueError(f"cannot decode video {path}: {e}") from None


def frame_files(folder: Path) -> list[Path]:
    """The images of a frame folder, in name order."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


class VideoFileSplit(ClipSplit):
    """Clips on disk (video files or frame folders) with labels; ``image(i)`` is a list of PIL frames."""

    def __init__(self, name: str, root: Path, clips: list[tuple[str, int, int | None]], fingerprint: str):
        self.name, self.root = name, root
        self.clips = clips  # (path relative to root, label, frame count for frame folders else None)
        self._fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.clips)

    def label(self, i: int) -> int:
        return self.clips[i][1]

    def labels(self) -> list[int]:
        return [c[1] for c in self.clips]

    def path(self, i: int) -> Path:
        return self.root / self.clips[i][0]

    def frame_count(self, i: int) -> int | None:
        return self.clips[i][2]

    def image(self, i: int) -> list[Any]:
        from PIL import Image

        path = self.path(i)
        if path.is_dir():
            files = frame_files(path)
            out = []
            for k in self.pick(len(files), f"frame folder {path}"):
                with Image.open(files[k]) as img:
                    img.load()
                    out.append(img.convert("RGB"))
            return out
        frames = read_video(path)
        return [frames[k] for k in self.pick(len(frames), f"video {path}")]

    def fingerprint(self) -> str:
        return f"{self._fingerprint}|{self.sampling_tag()}"


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _clips_of(cls_dir: Path) -> list[tuple[Path, int | None]]:
    """The clips of one class folder: (path, frame count of a frame folder or None for a video file)."""
    out: list[tuple[Path, int | None]] = []
    for entry in sorted(cls_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            n = len(frame_files(entry))
            if n == 0:
                raise DataError(f"frame folder {entry} holds no images; add frames (.png, .jpg) or remove it")
            out.append((entry, n))
        elif entry.suffix.lower() in VIDEO_SUFFIXES:
            out.append((entry, None))
    if not out:
        raise DataError(f"class folder {cls_dir} holds no clips; {LAYOUT_HINT}")
    return out


def _fingerprint(root: Path, items: list[tuple[Path, int, int | None]]) -> str:
    h = hashlib.blake2b(digest_size=12)
    for path, label, n in items:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{label}\0{n}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if n is not None:  # a frame folder changes when a frame does
            for f in frame_files(path):
                fs = f.stat()
                h.update(f"{f.name}\0{fs.st_size}\0{fs.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _split(name: str, root: Path, items: list[tuple[Path, int, int | None]]) -> VideoFileSplit:
    clips = [(p.relative_to(root).as_posix(), lab, n) for p, lab, n in items]
    return VideoFileSplit(name, root, clips, f"video-folder:{root.resolve()}:{name}:{len(clips)}:"
                                             f"{_fingerprint(root, items)}")


def _stratified(items: list[tuple[Path, int, int | None]]) -> tuple[list, list]:
    """A fixed 75/25 split of each class (one clip held out from two on; at least one stays in train)."""
    import numpy as np

    train, val = [], []
    rng = np.random.default_rng(SPLIT_SEED)
    for label in sorted({lab for _, lab, _ in items}):
        mine = [it for it in items if it[1] == label]
        order = rng.permutation(len(mine))
        n_val = min(len(mine) - 1, max(1, int(round(len(mine) * VAL_FRACTION))))
        held = set(int(k) for k in order[:n_val])
        for k, it in enumerate(mine):
            (val if k in held else train).append(it)
    return train, val


def open_video_folder(path: str | Path, spec: str) -> DataSource:
    """A folder of class sub-folders of clips (see the module docstring for the layouts).

    >>> src = open_video_folder("~/data/clips", "video-folder:~/data/clips")  # doctest: +SKIP
    >>> src.classes, len(src.train.image(0))  # doctest: +SKIP
    (('jump', 'wave'), 40)
    """
    root = Path(os.path.expanduser(str(path)))
    if not root.is_dir():
        raise DataError(f"no video folder at '{root}'; pass video-folder:PATH to a folder of class folders")
    given = (root / "train").is_dir() and (root / "val").is_dir()
    top = root / "train" if given else root
    classes = _class_dirs(top)
    if not classes:
        raise DataError(f"{top} has no class folders; {LAYOUT_HINT}")
    if given:
        unknown = sorted(set(_class_dirs(root / "val")) - set(classes))
        if unknown:
            raise DataError(f"{root / 'val'} has classes not in train/ ({', '.join(unknown[:5])}); "
                            "give both splits the same class folders")
    parts = {}
    for split in (("train", "val") if given else ("all",)):
        base = root / split if given else root
        parts[split] = [(p, label, n) for label, cls in enumerate(classes) if (base / cls).is_dir()
                        for p, n in _clips_of(base / cls)]
    if not given:
        parts["train"], parts["val"] = _stratified(parts.pop("all"))
        if not parts["val"]:
            raise DataError(f"{root} has one clip per class, none left to measure on; add clips or give train/ and val/")
    if not parts["val"]:
        raise DataError(f"{root / 'val'} holds no clips; {LAYOUT_HINT}")
    if any(n is None for p in parts.values() for _, _, n in p):
        require_av()  # fail now, not once per clip inside the loader
    return DataSource(name=root.resolve().name, spec=spec, classes=tuple(classes),
                      train=_split("train", root, parts["train"]), eval=_split("val", root, parts["val"]),
                      flip_ok=True, crop_ok=True, video=True)
