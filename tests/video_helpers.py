"""Builders for the video tests: real mp4 files written with PyAV, frame folders, and a small video encoder.

The encoder follows the video contract (input ``[N, C, T, H, W]``, tokens ``[N, L, D]``, pooled =
mean of tokens, ``preprocess.num_frames`` / ``frame_stride``, a transform taking a list of PIL
frames) so the data and eval paths can be tested whether or not the videomae plugin is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from mimzoo.encoders.encoder import Encoder, EncoderInfo
from mimzoo.encoders.transforms import make_transform
from mimzoo.registry.contract import Preprocess


def write_mp4(path: Path, frames: int, size: int = 32, colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """A real H.264 (or MPEG-4) clip: a square of `colour` moving right one pixel a frame on grey."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        try:
            stream = out.add_stream("libx264", rate=8)
        except Exception:  # a PyAV build without x264
            stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            arr = np.full((size, size, 3), 90, np.uint8)
            arr[8:20, t % (size - 12) : t % (size - 12) + 12] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_frame_folder(path: Path, frames: int, size: int = 32, value: int = 128) -> Path:
    """A clip as a folder of PNG frames named 000.png, 001.png, ... (frame t has brightness value + t)."""
    path.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        Image.new("RGB", (size, size), (value + t, value, value)).save(path / f"{t:03d}.png")
    return path


@dataclass(frozen=True)
class ClipPreprocess(Preprocess):
    """Preprocess plus the video fields of the contract (used when the core Preprocess lacks them)."""

    num_frames: int = 4  # frames per clip
    frame_stride: int = 2  # step between sampled frames


class ClipTransform:
    """A list of PIL frames (or a [T, H, W, C] uint8 array) -> normalised ``[C, T, H, W]``."""

    def __init__(self, pp: Preprocess):
        self.frame = make_transform(pp)

    def __call__(self, clip) -> torch.Tensor:
        if isinstance(clip, np.ndarray):
            clip = [Image.fromarray(f) for f in clip]
        return torch.stack([self.frame(f) for f in clip], dim=1)


class TubeNet(nn.Module):
    """Tubelet embedding (Conv3d) + one MLP block + norm: tokens ``[N, L, D]``, head = mean of tokens."""

    def __init__(self, dim: int = 24, tubelet: int = 2, patch: int = 8):
        super().__init__()
        self.num_features = dim
        self.embed = nn.Conv3d(3, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))
        self.norm = nn.LayerNorm(dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)  # [N, C, T, H, W] -> [N, L, D]
        return self.norm(t + self.mlp(t))

    def forward_head(self, t: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return t.mean(1)


class ClipEncoder(Encoder):
    """A mimzoo Encoder over clips."""

    is_video = True

    @property
    def transform(self):
        if self._transform is None:
            self._transform = ClipTransform(self.preprocess)
        return self._transform


def clip_encoder(num_frames: int = 4, frame_stride: int = 2, size: int = 32, seed: int = 0) -> ClipEncoder:
    """A seeded random-init video encoder at `size` px over `num_frames` frames."""
    torch.manual_seed(seed)
    pp = ClipPreprocess(input_size=(3, size, size), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear",
                        crop_pct=1.0, num_frames=num_frames, frame_stride=frame_stride)
    info = EncoderInfo(name="tube-test", arch="tubenet", model_args={"dim": 24}, pooling="avg")
    return ClipEncoder(TubeNet(), pp, info).eval()
