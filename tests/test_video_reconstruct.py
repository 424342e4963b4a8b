"""`mimzoo reconstruct` on a VideoMAE run: animated GIFs and frame strips of real clips, tube masks."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from video_helpers import write_frame_folder, write_mp4

import mimzoo

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif("videomae-vit-test" not in mimzoo.list_models(include_test=True),
                       reason="the videomae plugin (videomae-vit-test) is not installed"),
]
FRAMES = 4  # videomae-vit-test: 4 frames of 32 px, tubelet 2, patch 8 -> 2 x 4 x 4 tokens


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A VideoMAE run folder (model + pretrain.safetensors) from a few real steps on moving-digits."""
    from mimzoo.pretrain.trainer import TrainConfig, pretrain

    out = tmp_path_factory.mktemp("vrun") / "videomae-test"
    pretrain(TrainConfig(method="videomae", arch="videomae-vit-test", data="moving-digits:train=16,test=4,frames=8",
                         output=str(out), batch_size=8, max_steps=2, epochs=1, threads=1,
                         overrides=(("decoder.dim", "32"), ("decoder.depth", "1"), ("decoder.heads", "2"))))
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return [str(write_mp4(root / "walk.mp4", frames=12)), str(write_frame_folder(root / "frames", frames=6)),
            "moving-digits:3"]


def test_gif_has_one_frame_per_model_frame_and_a_row_per_clip(run, clips, tmp_path):
    from mimzoo.cli.main import cli

    out = tmp_path / "r.gif"
    res = CliRunner().invoke(cli, ["reconstruct", str(run), *clips, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "3 clips" in res.output
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == FRAMES and gif.info.get("loop") == 0
        w, h = gif.size
        assert w == 4 * (128 + 4) + 4 and h == 16 + 3 * (128 + 4) + 4  # 4 columns, 3 rows of 128 px panels
        frames = []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(torch.tensor(__import__("numpy").asarray(gif.convert("L")), dtype=torch.float32))
    assert all(not torch.equal(frames[0], f) for f in frames[1:])  # the clip moves


def test_png_strip_has_four_rows_per_clip_and_a_column_per_frame(run, clips, tmp_path):
    from mimzoo.pretrain.reconstruct import reconstruct

    path = reconstruct(str(run), clips[:2], tmp_path / "strip.png", seed=1)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (96 + FRAMES * (128 + 4) + 4, 2 * 4 * (128 + 4) + 4)


def test_tube_masks_hide_the_same_patches_in_every_frame(run):
    from mimzoo.pretrain.reconstruct import _decoder_file, _objective
    from mimzoo.pretrain.reconstruct_video import clip_panels, open_clip

    enc = mimzoo.load(str(run))
    objective = _objective(enc, _decoder_file(str(run), enc, None), None)
    original, masked, predicted, pasted = clip_panels(enc, objective, [open_clip("moving-digits:0")], seed=0)
    assert original.shape == (1, 3, FRAMES, 32, 32)
    tint = torch.tensor([0.25, 0.35, 0.65]).view(3, 1, 1)
    is_tint = (masked[0] - tint.unsqueeze(1)).abs().amax(0) < 1e-6  # [T, H, W]
    assert all(torch.equal(is_tint[0], is_tint[t]) for t in range(FRAMES))  # one spatial mask for the whole clip
    assert is_tint[0].float().mean() > 0.7  # 90 % of the tubes are masked
    torch.testing.assert_close(pasted[~is_tint.unsqueeze(0).unsqueeze(0).expand_as(pasted)],
                               original[~is_tint.unsqueeze(0).unsqueeze(0).expand_as(original)])


def test_reconstruct_errors_are_one_line(run, tmp_path):
    from mimzoo.cli.main import cli

    cases = [(["moving-digits:0", "-o", str(tmp_path / "x.jpg")], "pass -o NAME.gif"),
             (["moving-digits:abc", "-o", str(tmp_path / "x.gif")], "moving-digits:INDEX"),
             (["moving-digits:99999", "-o", str(tmp_path / "x.gif")], "INDEX below 300"),
             ([str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.gif")], "no clip at")]
    for args, words in cases:
        res = CliRunner().invoke(cli, ["reconstruct", str(run), *args])
        assert res.exit_code != 0 and words in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
