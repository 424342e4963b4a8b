"""Reconstruction pictures of clips (VideoMAE): input | masked | reconstruction | + visible, frame by frame.

``mimzoo reconstruct RUN CLIP... -o out.gif`` writes an animated GIF: one GIF frame per model frame,
each a sheet with the four columns of :mod:`mimzoo.pretrain.reconstruct` and one row per clip.
``-o out.png`` writes a frame strip instead: per clip, four rows (the columns) and one column per
frame. A clip is a video file (PyAV), a frame folder, ``moving-digits:INDEX`` (clip INDEX of the
moving-digits test split, never seen in pretraining; ``moving-digits:frames=16,seed=1:INDEX`` takes
options), or, from Python, a list of PIL frames. The encoder's transform picks its ``num_frames``
frames ``frame_stride`` apart from the middle of each clip; tube masks hide the same patches in every
frame, so the masked column shows one fixed pattern over a moving scene.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_file
from ..errors import MimzooError

log = logging.getLogger(__name__)
FORMATS = (".gif", ".png")
GIF_MS = 250  # display time of one frame of the animation


def open_clip(item: Any) -> list[Any]:
    """The frames of one clip argument as RGB PIL images (see the module docstring for what it may be)."""
    if isinstance(item, (list, tuple)):
        return list(item)
    text = str(item)
    if text.startswith("moving-digits"):
        return _moving_digits(text)
    path = Path(text).expanduser()
    from ..data.video_folder import VIDEO_SUFFIXES, frame_files, read_video

    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise MimzooError(f"frame folder {path} holds no images; pass a folder of frames, a video or "
                              "moving-digits:INDEX")
        from PIL import Image

        return [Image.open(f).convert("RGB") for f in files]
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            return read_video(path)
        except ValueError as e:
            raise MimzooError(f"{e}; pass a readable video, a frame folder or moving-digits:INDEX") from None
    raise MimzooError(f"no clip at {text}; pass a video file ({', '.join(sorted(VIDEO_SUFFIXES))}), a frame folder "
                      "or moving-digits:INDEX")


def _moving_digits(text: str) -> list[Any]:
    from ..data import open_dataset

    spec, _, index = text.rpartition(":")
    if not spec or not index.strip().isdigit():
        raise MimzooError(f"'{text}' names no clip; pass moving-digits:INDEX (e.g. moving-digits:3)")
    split = open_dataset(spec).eval
    i = int(index)
    if i >= len(split):
        raise MimzooError(f"moving-digits has {len(split)} test clips; pass an INDEX below {len(split)}")
    return split.image(i)


def reconstruct_clips(encoder: Any, objective: Any, clips: Sequence[Any], output: str | Path, *, seed: int = 0) -> Path:
    """Draw the reconstructions of `clips` by a video objective into a GIF or a PNG frame strip.

    Args:
        encoder: the video encoder (its transform and preprocessing).
        objective: its pretraining objective with the decoder loaded (``reconstruct``, ``masking``).
        clips: clip arguments (paths, ``moving-digits:INDEX``, lists of PIL frames).
        output: ``*.gif`` (animation) or ``*.png`` (frame strip).
        seed: seed of the tube masks.
    """
    output = Path(output)
    if output.suffix.lower() not in FORMATS:
        raise MimzooError(f"cannot tell what to write for a video model from '{output.name}'; "
                          "pass -o NAME.gif (animation) or -o NAME.png (frame strip)")
    frames = [open_clip(c) for c in clips]
    if not frames:
        raise MimzooError("no clips given; pass video files, frame folders or moving-digits:INDEX")
    panels = clip_panels(encoder, objective, frames, seed=seed)  # 4 x [N, C, T, H, W]
    if output.suffix.lower() == ".gif":
        return _save_gif(panels, output)
    return _save_strip(panels, output)


def clip_panels(encoder: Any, objective: Any, clips: Sequence[Sequence[Any]], *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The four columns as clips ``[N, C, T, H, W]`` in [0, 1]: original, masked, reconstruction, + visible."""
    from .reconstruct import MASK_COLOR, VISIBLE_COLOR

    x = torch.stack([encoder.transform(list(c)) for c in clips])  # [N, C, T, H, W], normalised
    masks = objective.masking(len(clips), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = objective.reconstruct(x, masks)  # [N, C, T, H, W], normalised
    c = x.shape[1]
    m = mask_volume(masks.mask, x.shape, tubelet=encoder.model.patch_embed.tubelet_size, patch=objective.patch)
    mean = torch.tensor(encoder.preprocess.mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(encoder.preprocess.std).view(1, -1, 1, 1, 1)
    original, recon = x * std + mean, pred.float() * std + mean
    tint = torch.tensor(MASK_COLOR[:c]).view(1, -1, 1, 1, 1)
    fill = torch.tensor(VISIBLE_COLOR[:c]).view(1, -1, 1, 1, 1)
    return (original, original * (1 - m) + tint * m, fill * (1 - m) + recon * m, original * (1 - m) + recon * m)


def mask_volume(mask: torch.Tensor, shape: Sequence[int], *, tubelet: int, patch: int) -> torch.Tensor:
    """A token mask ``[N, L]`` (tokens in (time, row, column) order) as pixels ``[N, 1, T, H, W]``, 1 = masked."""
    n, _, t, h, w = shape
    m = mask.float().reshape(n, t // tubelet, h // patch, w // patch)
    m = m.repeat_interleave(tubelet, 1).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return m.unsqueeze(1)


def _frame(panel: torch.Tensor) -> Any:
    """One ``[C, H, W]`` frame as an (enlarged) PIL image."""
    from .reconstruct import _to_pil

    return _to_pil(panel).convert("RGB")


def _save_gif(panels: tuple[torch.Tensor, ...], output: Path) -> Path:
    from PIL import Image, ImageDraw

    from .reconstruct import COLUMNS

    n, _, t = panels[0].shape[:3]
    sheets = []
    for k in range(t):
        tiles = [[_frame(p[i, :, k]) for p in panels] for i in range(n)]
        w, h = tiles[0][0].size
        pad, head = 4, 16
        sheet = Image.new("RGB", (len(COLUMNS) * (w + pad) + pad, head + n * (h + pad) + pad), "white")
        draw = ImageDraw.Draw(sheet)
        for c, title in enumerate(COLUMNS):
            draw.text((pad + c * (w + pad), 2), title if c else f"{title} {k + 1}/{t}", fill="black")
        for r, row in enumerate(tiles):
            for c, tile in enumerate(row):
                sheet.paste(tile, (pad + c * (w + pad), head + pad + r * (h + pad)))
        sheets.append(sheet)
    with atomic_file(output) as tmp:
        sheets[0].save(tmp, format="GIF", save_all=True, append_images=sheets[1:], duration=GIF_MS, loop=0)
    log.info("wrote %s (%d clips, %d frames)", output, n, t)
    return output


def _save_strip(panels: tuple[torch.Tensor, ...], output: Path) -> Path:
    from PIL import Image, ImageDraw

    from .reconstruct import COLUMNS

    n, _, t = panels[0].shape[:3]
    w, h = _frame(panels[0][0, :, 0]).size
    pad, label = 4, 96
    rows = n * len(COLUMNS)
    sheet = Image.new("RGB", (label + t * (w + pad) + pad, rows * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        for c, (title, p) in enumerate(zip(COLUMNS, panels)):
            y = pad + (i * len(COLUMNS) + c) * (h + pad)
            draw.text((4, y + h // 2 - 6), f"{i + 1}: {title}", fill="black")
            for k in range(t):
                sheet.paste(_frame(p[i, :, k]), (label + k * (w + pad), y))
    with atomic_file(output) as tmp:
        sheet.save(tmp, format="PNG")
    log.info("wrote %s (%d clips x %d frames)", output, n, t)
    return output
