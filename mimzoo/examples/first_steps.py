"""First steps, offline: load an encoder, embed images, save it as a model folder, load it back.

Uses the tiny `mae-vit-test` architecture at random init, because no weights can be downloaded
offline; with network access, replace it with `mimzoo.load("mae-vit-b")`.

    python -m mimzoo.examples.first_steps [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import mimzoo
from mimzoo.cli.table import render


def _images() -> list[Image.Image]:
    """A few synthetic pictures: shapes on plain backgrounds."""
    out = []
    for i, (bg, fg) in enumerate([("white", "red"), ("black", "yellow"), ("navy", "white"), ("gray", "green")]):
        im = Image.new("RGB", (64, 48), bg)
        draw = ImageDraw.Draw(im)
        (draw.ellipse if i % 2 else draw.rectangle)((8 + 4 * i, 8, 40 + 4 * i, 40), fill=fg)
        out.append(im)
    return out


def main(out_dir: str | None = None) -> int:
    torch.manual_seed(0)
    encoder = mimzoo.load("mae-vit-test", pretrained=False)
    emb = encoder.embed_images(_images())
    folder = Path(out_dir or tempfile.mkdtemp(prefix="mimzoo-")) / "mae-vit-test"
    encoder.save_pretrained(folder)
    again = mimzoo.load(str(folder))
    same = torch.equal(again.embed_images(_images()), emb)
    rows = [
        {"step": "load", "result": f"{encoder.name}: {encoder.info.arch}, {encoder.num_features}-d, random init"},
        {"step": "embed 4 images", "result": f"{tuple(emb.shape)}, preprocess {encoder.preprocess.input_size}"},
        {"step": "save_pretrained", "result": str(folder)},
        {"step": "load folder", "result": "identical embeddings" if same else "MISMATCH"},
    ]
    print(render(rows, [("step", "step"), ("result", "result")]))
    print("\nnext: mimzoo list, mimzoo info mae-vit-b, and with network: mimzoo.load('mae-vit-b')")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
