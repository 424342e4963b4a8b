"""moving-digits: two of scikit-learn's digits bouncing on a black canvas (Moving MNIST's recipe, offline).

Each clip is made on demand from ``(seed, split, index)``, so clip ``i`` is the same on every
call, in every process and on every machine with the same scikit-learn:

- two glyphs of the 8x8 digits set, upscaled (bilinear) to ``digit`` px (default 28);
- each starts at a random position inside the ``size`` x ``size`` canvas (default 64) with a
  random direction and a speed of 2 to 4 px per frame, and reflects off the walls;
- the two are combined by their pixel-wise maximum, over ``frames`` frames (default 16).

The train clips use glyphs of the training split of ``--data digits`` only and the test clips
glyphs of its test split, so no test glyph is ever seen in training.

Labels (``label=``):

- ``digit`` (default): both glyphs are different scans of one digit, the label is that digit, 10
  classes (content only, the video twin of ``--data digits``: motion does not help);
- ``pair``: two independent digits (Moving MNIST's own setting), the label is their unordered pair,
  55 classes named ``"3-7"`` (content; a probe on a mean-pooled embedding must tell which two
  glyphs are present, which a linear probe does poorly: it is an AND of two digits);
- ``direction``: where the pair heads, 4 classes ``up-left``, ``up-right``, ``down-left``,
  ``down-right``. Both digits start in the same diagonal direction and the label is the
  direction of their first step (bounces change it later), so one frame cannot tell it: a model
  has to compare frames.

Spec: ``moving-digits`` or ``moving-digits:frames=16,size=64,digit=28,train=1000,test=300,label=digit,seed=0``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace
from typing import Any

from .base import ClipSplit, DataError, DataSource

LABELS = ("digit", "pair", "direction")
DIRECTIONS = ("up-left", "up-right", "down-left", "down-right")  # (dy < 0, dx < 0) ordered as y then x


@dataclass(frozen=True)
class MovingDigitsConfig:
    """What a moving-digits spec asks for."""

    frames: int = 16  # frames per clip
    size: int = 64  # canvas side in px
    digit: int = 28  # side of each upscaled glyph in px
    train: int = 1000  # clips in the train split
    test: int = 300  # clips in the test split
    label: str = "digit"  # "digit" (10: one digit twice), "pair" (55 unordered pairs) or "direction" (4 diagonals)
    seed: int = 0  # changes every clip (the glyph split stays the one of --data digits)

    def check(self) -> None:
        if self.label not in LABELS:
            raise DataError(f"moving-digits: label '{self.label}' is not one of {', '.join(LABELS)}; "
                            "pass moving-digits:label=digit")
        for name in ("frames", "size", "digit", "train", "test"):
            if getattr(self, name) < 1:
                raise DataError(f"moving-digits: {name}={getattr(self, name)} must be at least 1")
        if self.digit >= self.size:
            raise DataError(f"moving-digits: digit={self.digit} must be smaller than size={self.size}")


def parse_spec(spec: str) -> MovingDigitsConfig:
    """``moving-digits[:key=value,...]`` -> :class:`MovingDigitsConfig` (one-line errors name the keys)."""
    _, _, rest = spec.partition(":")
    known = {f.name: f for f in fields(MovingDigitsConfig)}
    cfg, seen = MovingDigitsConfig(), {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in known:
            raise DataError(f"moving-digits: cannot read '{item}'; options are "
                            f"{', '.join(k + '=' for k in known)} (e.g. moving-digits:frames=16,label=digit)")
        if key == "label":
            seen[key] = value.strip()
        else:
            try:
                seen[key] = int(value)
            except ValueError:
                raise DataError(f"moving-digits: {key}={value} is not a whole number") from None
    cfg = replace(cfg, **seen)
    cfg.check()
    return cfg


class MovingDigitsSplit(ClipSplit):
    """Clips generated from ``(seed, split, index)``; ``image(i)`` is a list of RGB PIL frames."""

    def __init__(self, name: str, cfg: MovingDigitsConfig, glyphs: Any, glyph_labels: Any, tag: str):
        import numpy as np

        self.name, self.cfg, self.tag = name, cfg, tag
        self.glyphs = glyphs  # [G, digit, digit] uint8
        self.glyph_labels = glyph_labels  # [G] int
        n = cfg.train if name == "train" else cfg.test
        rng = np.random.default_rng([cfg.seed, 0 if name == "train" else 1])
        by_class = [np.flatnonzero(np.asarray(glyph_labels) == c) for c in range(10)]
        self.plans = [_plan(rng, cfg, by_class) for _ in range(n)]  # per clip: glyph ids, starts, velocities
        self._labels = [self._label_of(p) for p in self.plans]

    def _label_of(self, plan: dict[str, Any]) -> int:
        if self.cfg.label == "direction":
            vy, vx = plan["vel"][0]
            return 2 * int(vy > 0) + int(vx > 0)
        if self.cfg.label == "digit":
            return int(self.glyph_labels[plan["glyphs"][0]])
        a, b = sorted(int(self.glyph_labels[g]) for g in plan["glyphs"])
        return _pair_index(a, b)

    def __len__(self) -> int:
        return len(self.plans)

    def label(self, i: int) -> int:
        return self._labels[i]

    def labels(self) -> list[int]:
        return list(self._labels)

    def frame_count(self, i: int) -> int:
        return self.cfg.frames

    def array(self, i: int) -> Any:
        """Clip `i` as a uint8 array ``[T, size, size]`` (grey), all frames."""
        return render(self.plans[i], self.glyphs, self.cfg)

    def image(self, i: int) -> list[Any]:
        from PIL import Image

        arr = self.array(i)
        return [Image.fromarray(arr[t], "L").convert("RGB") for t in self.pick(len(arr), f"moving-digits clip {i}")]

    def fingerprint(self) -> str:
        return f"{self.tag}:{self.name}:{len(self)}|{self.sampling_tag()}"


def _plan(rng: Any, cfg: MovingDigitsConfig, by_class: list[Any]) -> dict[str, Any]:
    """Random glyphs, start positions and velocities of one clip (drawn in a fixed order: reproducible)."""
    import numpy as np

    room = cfg.size - cfg.digit
    if cfg.label == "digit":  # two different scans of one digit
        members = by_class[int(rng.integers(0, 10))]
        glyphs = rng.choice(members, size=2, replace=False)
    else:
        glyphs = rng.integers(0, sum(len(m) for m in by_class), size=2)
    pos = rng.uniform(0, room, size=(2, 2))  # (y, x) per digit
    speed = rng.uniform(2.0, 4.0, size=2)
    if cfg.label == "direction":  # both heads the same diagonal quadrant, angles 15..75 degrees inside it
        quadrant = rng.integers(0, 4)
        sy, sx = (1 if quadrant >= 2 else -1), (1 if quadrant % 2 else -1)
        angle = rng.uniform(np.pi / 12, 5 * np.pi / 12, size=2)
        vel = np.stack([sy * np.sin(angle) * speed, sx * np.cos(angle) * speed], axis=1)
    else:
        angle = rng.uniform(0, 2 * np.pi, size=2)
        vel = np.stack([np.sin(angle) * speed, np.cos(angle) * speed], axis=1)
    return {"glyphs": glyphs, "pos": pos, "vel": vel}


def render(plan: dict[str, Any], glyphs: Any, cfg: MovingDigitsConfig) -> Any:
    """The frames ``[T, size, size]`` uint8 of a plan: positions step by velocity and reflect off the walls."""
    import numpy as np

    room = float(cfg.size - cfg.digit)
    out = np.zeros((cfg.frames, cfg.size, cfg.size), dtype=np.uint8)
    pos, vel = plan["pos"].copy(), plan["vel"].copy()
    for t in range(cfg.frames):
        for d in range(2):
            y, x = int(round(pos[d, 0])), int(round(pos[d, 1]))
            window = out[t, y : y + cfg.digit, x : x + cfg.digit]
            np.maximum(window, glyphs[plan["glyphs"][d]], out=window)
        pos += vel
        for d in range(2):  # reflect: a step past a wall comes back by the overshoot
            for axis in range(2):
                if pos[d, axis] < 0:
                    pos[d, axis], vel[d, axis] = -pos[d, axis], -vel[d, axis]
                elif pos[d, axis] > room:
                    pos[d, axis], vel[d, axis] = 2 * room - pos[d, axis], -vel[d, axis]
    return out


def _pair_index(a: int, b: int) -> int:
    """Index of the unordered pair a <= b among 00, 01, ..., 09, 11, ..., 99 (55 pairs)."""
    return sum(10 - k for k in range(a)) + (b - a)


def pair_names() -> tuple[str, ...]:
    return tuple(f"{a}-{b}" for a in range(10) for b in range(a, 10))


def _glyphs(split: str, side: int) -> tuple[Any, Any, str]:
    """Upscaled glyphs of the train or test split of ``--data digits`` and their labels."""
    import numpy as np
    from PIL import Image

    from .digits import open_digits

    src = open_digits()
    part = src.train if split == "train" else src.eval
    glyphs = np.stack([np.asarray(Image.fromarray(g, "L").resize((side, side), Image.BILINEAR)) for g in part.images])
    h = hashlib.blake2b(glyphs.tobytes(), digest_size=8).hexdigest()
    return glyphs, np.asarray(part.labels()), h


def open_moving_digits(spec: str = "moving-digits") -> DataSource:
    """The moving-digits :class:`DataSource` (clips of two bouncing digits; see the module docstring).

    >>> src = open_moving_digits("moving-digits:frames=8")  # doctest: +SKIP
    >>> len(src.train), len(src.eval), len(src.train.image(0))  # doctest: +SKIP
    (1000, 300, 8)
    """
    cfg = parse_spec(spec)
    splits = {}
    for name in ("train", "test"):
        glyphs, labels, digest = _glyphs(name, cfg.digit)
        tag = f"moving-digits(v1,{cfg},{digest})"
        splits[name] = MovingDigitsSplit(name, cfg, glyphs, labels, tag)
    classes = {"direction": DIRECTIONS, "pair": pair_names(), "digit": tuple(str(c) for c in range(10))}[cfg.label]
    return DataSource(name="moving-digits", spec=spec, classes=classes, train=splits["train"], eval=splits["test"],
                      flip_ok=False, crop_ok=False, video=True)
