"""A grouped bar chart of benchmark results, drawn with PIL (no plotting library needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_file

# colour per backend position (colour-blind-friendly palette, Okabe-Ito)
PALETTE = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0), (240, 228, 66))
WIDTH, HEIGHT = 960, 540
MARGIN = {"left": 80, "right": 200, "top": 60, "bottom": 70}


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _ticks(top: float, n: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    magnitude = 10 ** int(f"{raw:e}".split("e")[1])
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(top / step) + 2)]


def bar_chart(rows: Sequence[dict[str, Any]], path: str | Path, *, title: str, value: str = "throughput",
              unit: str = "images/s") -> Path:
    """Draw `value` of each (backend, batch) row as bars grouped by batch size; write a PNG atomically.

    Rows without a value (skipped backends) are left out; the legend still lists them as skipped.

    >>> bar_chart([{"backend": "torch", "batch": 1, "throughput": 4.2}], "bench.png", title="ViT-B")  # doctest: +SKIP
    """
    from PIL import Image, ImageDraw

    batches = sorted({int(r["batch"]) for r in rows})
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    values = {(r["backend"], int(r["batch"])): r.get(value) for r in rows}
    top = max([v for v in values.values() if v] or [1.0])
    ticks = _ticks(top)
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    x0, x1 = MARGIN["left"], WIDTH - MARGIN["right"]
    y0, y1 = HEIGHT - MARGIN["bottom"], MARGIN["top"]
    scale = (y0 - y1) / ticks[-1]
    draw.text((WIDTH // 2, 20), title, fill="black", font=_font(20), anchor="mm")
    for t in ticks:  # grid and y labels
        y = y0 - t * scale
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        draw.text((x0 - 8, y), f"{t:g}", fill="black", font=_font(13), anchor="rm")
    draw.text((x0, y1 - 14), unit, fill="black", font=_font(14), anchor="lb")  # axis unit above the axis
    group = (x1 - x0) / max(len(batches), 1)
    bar = group * 0.8 / max(len(backends), 1)
    for gi, n in enumerate(batches):
        gx = x0 + gi * group + group * 0.1
        draw.text((gx + group * 0.4, y0 + 18), f"batch {n}", fill="black", font=_font(14), anchor="mm")
        for bi, name in enumerate(backends):
            v = values.get((name, n))
            if not v:
                continue
            left = gx + bi * bar
            draw.rectangle([left, y0 - v * scale, left + bar - 2, y0], fill=PALETTE[bi % len(PALETTE)])
            draw.text((left + bar / 2, y0 - v * scale - 4), f"{v:.3g}", fill="black", font=_font(11), anchor="mb")
    draw.line([(x0, y0), (x1, y0)], fill="black")
    _legend(draw, backends, values, x1 + 20)
    path = Path(path)
    with atomic_file(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def _legend(draw: Any, backends: list[str], values: dict[tuple[str, int], Any], x: float) -> None:
    for i, name in enumerate(backends):
        y = MARGIN["top"] + 10 + i * 26
        ran = any(v for (b, _), v in values.items() if b == name)
        draw.rectangle([x, y, x + 16, y + 16], fill=PALETTE[i % len(PALETTE)] if ran else (200, 200, 200))
        draw.text((x + 24, y + 8), name if ran else f"{name} (skipped)", fill="black", font=_font(13), anchor="lm")
