"""moving-digits and video-folder:PATH: deterministic clips, labels, center sampling, real mp4s and frame folders."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from video_helpers import write_frame_folder, write_mp4

from mimzoo.data import DataError, open_dataset
from mimzoo.data.moving_digits import DIRECTIONS, pair_names
from mimzoo.errors import MissingDependencyError

SMALL = "moving-digits:train=40,test=20"


def test_moving_digits_is_the_same_clip_every_time_and_changes_with_the_seed():
    a, b = open_dataset(SMALL), open_dataset(SMALL)
    assert (len(a.train), len(a.eval), a.num_classes, a.video) == (40, 20, 10, True)
    for i in (0, 7, 39):
        clip = a.train.array(i)
        assert clip.shape == (16, 64, 64) and clip.dtype == np.uint8 and clip.max() > 200
        assert np.array_equal(clip, b.train.array(i)) and np.array_equal(clip, a.train.array(i))
    other = open_dataset(SMALL + ",seed=1")
    assert not np.array_equal(a.train.array(0), other.train.array(0))
    assert a.train.fingerprint() != other.train.fingerprint()
    assert not np.array_equal(a.train.array(0), a.eval.array(0))  # train and test clips differ


def test_moving_digits_move_bounce_and_keep_both_digits_on_the_canvas():
    src = open_dataset("moving-digits:train=30,test=5,frames=20")
    for i in range(30):
        clip = src.train.array(i).astype(np.int32)
        assert (clip.reshape(20, -1).max(1) > 150).all()  # every frame shows ink: no digit leaves the canvas
        assert np.abs(np.diff(clip, axis=0)).sum() > 0  # it moves
        plan = src.train.plans[i]
        assert (np.linalg.norm(plan["vel"], axis=1) >= 2 - 1e-9).all()


def test_labels_digit_pair_and_direction_follow_the_glyphs_and_the_motion():
    same = open_dataset(SMALL)  # label=digit: two different scans of one digit
    for i in range(len(same.train)):
        g = same.train.plans[i]["glyphs"]
        assert g[0] != g[1] and same.train.glyph_labels[g[0]] == same.train.glyph_labels[g[1]] == same.train.label(i)
    assert set(same.train.labels()) == set(range(10)) and same.classes == tuple("0123456789")
    src = open_dataset(SMALL + ",label=pair")
    assert src.num_classes == 55
    names = pair_names()
    for i in range(len(src.train)):
        plan = src.train.plans[i]
        a, b = sorted(int(src.train.glyph_labels[g]) for g in plan["glyphs"])
        assert src.classes[src.train.label(i)] == names[src.train.label(i)] == f"{a}-{b}"
    moving = open_dataset("moving-digits:train=60,test=10,label=direction")
    assert moving.classes == DIRECTIONS and set(moving.train.labels()) == {0, 1, 2, 3}
    for i in range(60):
        vel = moving.train.plans[i]["vel"]
        down, right = DIRECTIONS[moving.train.label(i)].split("-")
        assert down in ("up", "down") and ((vel[:, 0] > 0) == (down == "down")).all()
        assert ((vel[:, 1] > 0) == (right == "right")).all()  # both digits head the same way


def test_moving_digits_spec_errors_are_one_line_and_name_the_options():
    for spec, words in [("moving-digits:colour=red", "options are"), ("moving-digits:label=sum", "label=digit"),
                        ("moving-digits:frames=x", "whole number"), ("moving-digits:digit=70", "smaller than")]:
        with pytest.raises(DataError, match=words) as e:
            open_dataset(spec)
        assert "\n" not in str(e.value)


def test_center_sampling_takes_the_middle_frames_and_refuses_short_clips():
    src = open_dataset("moving-digits:train=4,test=2,frames=16")
    full = src.train.array(1)
    from mimzoo.encoders.video import clip_indices

    picked = src.train.sampled(4, 3).image(1)  # span 10 of 16: start 3
    assert len(picked) == 4 and picked[0].mode == "RGB" and picked[0].size == (64, 64)
    assert clip_indices(16, 4, 3) == [3, 6, 9, 12]  # the frames the encoder's own transform takes
    for k, t in enumerate((3, 6, 9, 12)):
        assert np.array_equal(np.asarray(picked[k])[..., 0], full[t])
    assert len(src.train.image(1)) == 16  # unbound: every frame
    assert "frames:4x3" in src.train.sampled(4, 3).fingerprint()
    with pytest.raises(ValueError, match="16 frames; 8 frames at stride 3 need 22"):
        src.train.sampled(8, 3).image(0)


def _video_tree(root, with_av=True):
    for c, colour in enumerate(((220, 30, 30), (30, 30, 220))):
        for k in range(4):
            if with_av and k < 3:
                write_mp4(root / f"class{c}" / f"clip{k}.mp4", frames=12, colour=colour)
            else:
                write_frame_folder(root / f"class{c}" / f"clip{k}", frames=10, value=60 + 100 * c)
    return root


def test_video_folder_reads_mp4s_and_frame_folders_with_a_fixed_split(tmp_path):
    root = _video_tree(tmp_path / "clips")
    src = open_dataset(f"video-folder:{root}")
    assert src.video and src.classes == ("class0", "class1") and (len(src.train), len(src.eval)) == (6, 2)
    assert sorted(src.train.labels() + src.eval.labels()) == [0] * 4 + [1] * 4
    again = open_dataset(f"video-folder:{root}")
    assert [c[0] for c in again.eval.clips] == [c[0] for c in src.eval.clips]
    both = src.train.sampled(4, 2)
    for i in range(len(both)):
        frames = both.image(i)
        assert len(frames) == 4 and frames[0].size == (32, 32)
        if not both.path(i).is_dir():  # the moving square carries the class colour
            r, _, b = np.asarray(frames[0]).astype(float).mean((0, 1))
            assert (r > b + 5) == (both.label(i) == 0) and abs(r - b) > 5
    folder = next(i for i in range(len(both)) if both.path(i).is_dir())
    assert [f.getpixel((0, 0))[0] - f.getpixel((0, 0))[1] for f in both.image(folder)] == [1, 3, 5, 7]  # frames 1..7


def test_video_folder_with_train_and_val_folders_keeps_them(tmp_path):
    write_frame_folder(tmp_path / "train" / "a" / "c0", 6)
    write_frame_folder(tmp_path / "train" / "b" / "c0", 6)
    write_frame_folder(tmp_path / "val" / "b" / "c1", 6)
    src = open_dataset(f"video-folder:{tmp_path}")
    assert (len(src.train), len(src.eval), src.eval.labels()) == (2, 1, [1])


def test_video_folder_errors_name_the_folder_file_and_fix(tmp_path):
    with pytest.raises(DataError, match="no video folder"):
        open_dataset(f"video-folder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        open_dataset(f"video-folder:{tmp_path / 'empty'}")
    (tmp_path / "noclips" / "cat").mkdir(parents=True)
    (tmp_path / "noclips" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"cat holds no clips"):
        open_dataset(f"video-folder:{tmp_path / 'noclips'}")
    (tmp_path / "noframes" / "cat" / "clip").mkdir(parents=True)
    with pytest.raises(DataError, match="frame folder .*clip holds no images"):
        open_dataset(f"video-folder:{tmp_path / 'noframes'}")
    root = tmp_path / "bad"
    for c in ("a", "b"):
        write_frame_folder(root / c / "ok0", 8)
        write_frame_folder(root / c / "ok1", 2)  # too short for 4 frames at stride 2
    (root / "a" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisomnot really a video" * 10)
    src = open_dataset(f"video-folder:{root}")
    split = src.train.sampled(4, 2)
    everything = {str(split.path(i)): i for i in range(len(split))} | {
        str(src.eval.path(i)): ("eval", i) for i in range(len(src.eval))}
    broken = src.train if str(root / "a" / "broken.mp4") in everything else src.eval
    idx = [i for i in range(len(broken)) if broken.path(i).name == "broken.mp4"][0]
    with pytest.raises(ValueError, match=r"cannot decode video .*broken\.mp4"):
        broken.sampled(4, 2).image(idx)
    short = [(s, i) for s in (src.train, src.eval) for i in range(len(s)) if s.path(i).name == "ok1"][0]
    with pytest.raises(ValueError, match=r"frame folder .*ok1 has 2 frames; 4 frames at stride 2 need 7"):
        short[0].sampled(4, 2).image(short[1])


def test_video_files_without_pyav_fail_in_one_line_naming_the_extra(tmp_path, monkeypatch):
    root = tmp_path / "clips"
    write_mp4(root / "a" / "x.mp4", 4)
    write_mp4(root / "a" / "y.mp4", 4)
    monkeypatch.setitem(sys.modules, "av", None)  # this interpreter cannot import PyAV from here on
    with pytest.raises(MissingDependencyError, match=r"pip install 'mimzoo\[video\]'") as e:
        open_dataset(f"video-folder:{root}")
    assert "\n" not in str(e.value)
    frames_only = tmp_path / "frames"
    write_frame_folder(frames_only / "a" / "c0", 4)
    write_frame_folder(frames_only / "a" / "c1", 4)
    assert len(open_dataset(f"video-folder:{frames_only}").train.image(0)) == 4  # frame folders need nothing
