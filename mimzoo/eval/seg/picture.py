"""``--show N``: a picture of N test items, one row each: image | ground truth | prediction, and a legend.

Colours: the PASCAL VOC colour map (label c's RGB from the bits of c, as VOC's devkit draws
masks: 0 = black, 1 = dark red, 2 = dark green, ...), ignore (255) in white. The legend lists the
classes that appear in the shown truth or predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._atomic import atomic_file
from ...data.segmentation.base import IGNORE

CELL = 128  # pixels per panel side
PAD = 4


def palette(n: int = 256) -> list[tuple[int, int, int]]:
    """VOC's colour map: class c's colour from the bits of c (then IGNORE drawn white).

    >>> palette()[:3]
    [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    """
    out = []
    for c in range(n):
        r = g = b = 0
        v = c
        for shift in range(7, -1, -1):
            r |= (v & 1) << shift
            g |= ((v >> 1) & 1) << shift
            b |= ((v >> 2) & 1) << shift
            v >>= 3
        out.append((r, g, b))
    out[IGNORE] = (255, 255, 255)
    return out


def _colour(mask: Any) -> Any:
    import numpy as np
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "P")
    img.putpalette([v for rgb in palette() for v in rgb])
    return img.convert("RGB").resize((CELL, CELL), Image.NEAREST)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def write_picture(path: str | Path, images: list[Any], truths: list[Any], preds: list[Any],
                  classes: tuple[str, ...]) -> Path:
    """Write the rows (PIL images at the input size, ``[H, W]`` label arrays) as one PNG, atomically."""
    import numpy as np
    from PIL import Image, ImageDraw

    present = sorted({int(v) for m in (*truths, *preds) for v in np.unique(np.asarray(m)) if v != IGNORE})
    names = [classes[c] if c < len(classes) else str(c) for c in present]
    width = 3 * CELL + 4 * PAD
    legend_rows = (len(names) + 2) // 3
    head, line = 18, 16
    height = head + len(images) * (CELL + PAD) + PAD + legend_rows * line + PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    for col, title in enumerate(("image", "ground truth", "prediction")):
        draw.text((PAD + col * (CELL + PAD), 3), title, fill=(0, 0, 0), font=font)
    for row, (img, truth, pred) in enumerate(zip(images, truths, preds)):
        y = head + row * (CELL + PAD)
        panels = (img.convert("RGB").resize((CELL, CELL), Image.NEAREST), _colour(truth), _colour(pred))
        for col, panel in enumerate(panels):
            canvas.paste(panel, (PAD + col * (CELL + PAD), y))
    y0 = head + len(images) * (CELL + PAD) + PAD
    pal = palette()
    for k, (c, name) in enumerate(zip(present, names)):
        x, y = PAD + (k % 3) * (CELL + PAD), y0 + (k // 3) * line
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=pal[c], outline=(0, 0, 0))
        draw.text((x + 14, y), name[:20], fill=(0, 0, 0), font=font)
    path = Path(path)
    with atomic_file(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def picture_path(output: str | Path) -> Path:
    """Where ``--show`` writes beside ``-o FILE``: ``FILE`` without its suffix + ``.seg.png``."""
    out = Path(output)
    return out.with_name(f"{out.stem}.seg.png")
