"""Segmentation data: digit-scenes (offline, deterministic) and the ADE20K / VOC / seg-folder readers,
tested on tiny fixtures written in each dataset's real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimzoo.data import DataError, open_dataset
from mimzoo.data.segmentation import IGNORE, is_segmentation_spec, open_segmentation
from mimzoo.eval.seg.picture import palette


def _jpg(path: Path, w: int = 12, h: int = 10, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").save(path)


def _png(path: Path, labels: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(labels.astype(np.uint8), mode)
    if mode == "P":  # a palette PNG, as VOC ships them: the pixel's index is its class
        img.putpalette([v for rgb in palette() for v in rgb])
    img.save(path)


def _labels(values: list[int], w: int = 12, h: int = 10) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    for k, v in enumerate(values):
        out[:, k * w // len(values):(k + 1) * w // len(values)] = v
    return out


# ---------------------------------------------------------------- digit-scenes

def test_digit_scenes_are_deterministic_and_labelled():
    src = open_segmentation("digit-scenes")
    assert src.classes == ("background", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
    assert (len(src.train), len(src.eval)) == (1000, 250) and src.eval.name == "test"
    again = open_segmentation("digit-scenes")
    for i in (0, 7, 999):
        assert np.array_equal(src.train.mask(i), again.train.mask(i))
        assert np.array_equal(np.asarray(src.train.image(i)), np.asarray(again.train.image(i)))
    img, mask = src.train.image(3), src.train.mask(3)
    assert img.size == (64, 64) and img.mode == "RGB" and mask.shape == (64, 64) and mask.dtype == np.uint8
    masks = np.stack([src.eval.mask(i) for i in range(60)])
    values = set(np.unique(masks).tolist())
    assert values <= set(range(11)) | {IGNORE} and {0, IGNORE} <= values and len(values - {0, IGNORE}) >= 8
    # labels sit on ink: every digit pixel is bright, background is black
    arr = np.asarray(src.eval.image(5))[..., 0]
    m = src.eval.mask(5)
    assert (arr[(m >= 1) & (m <= 10)] >= 4 * 255 // 16).all() and (arr[m == 0] == 0).all()
    assert src.train.fingerprint() != src.eval.fingerprint()
    assert not np.array_equal(src.train.mask(0), src.eval.mask(0))


def test_segmentation_specs_are_told_apart_from_classification():
    assert is_segmentation_spec("digit-scenes") and is_segmentation_spec("voc:/x")
    assert not is_segmentation_spec("digits") and not is_segmentation_spec("cifar10:/x")
    with pytest.raises(DataError, match="segmentation dataset; evaluate on it with --task seg-linear"):
        open_dataset("digit-scenes")
    with pytest.raises(DataError, match="not a segmentation dataset; pass digit-scenes"):
        open_segmentation("digits")
    with pytest.raises(DataError, match="names no folder"):
        open_segmentation("ade20k:")


# ---------------------------------------------------------------- ADE20K

def _ade(root: Path, train_labels: list[list[int]], val_labels: list[list[int]]) -> Path:
    base = root / "ADEChallengeData2016"
    for which, prefix, rows in (("training", "ADE_train", train_labels), ("validation", "ADE_val", val_labels)):
        for k, vals in enumerate(rows):
            stem = f"{prefix}_{k + 1:08d}"
            _jpg(base / "images" / which / f"{stem}.jpg", seed=k)
            _png(base / "annotations" / which / f"{stem}.png", _labels(vals))
    return base


def test_ade20k_reduces_the_zero_label(tmp_path):
    _ade(tmp_path, [[0, 1, 150], [3, 4]], [[0, 2]])
    src = open_segmentation(f"ade20k:{tmp_path}")  # the folder holding ADEChallengeData2016 works too
    assert src.name == "ade20k" and src.num_classes == 150 and (len(src.train), len(src.eval)) == (2, 1)
    assert set(np.unique(src.train.mask(0)).tolist()) == {IGNORE, 0, 149}  # 0 -> ignore, 1..150 -> 0..149
    assert set(np.unique(src.eval.mask(0)).tolist()) == {IGNORE, 1}
    assert src.train.image(0).size == (12, 10)
    same = open_segmentation(f"ade20k:{tmp_path / 'ADEChallengeData2016'}")
    assert same.train.fingerprint() == src.train.fingerprint()


def test_ade20k_layout_errors_name_what_is_missing(tmp_path):
    base = _ade(tmp_path, [[1]], [[1]])
    _png(base / "annotations" / "training" / "ADE_train_00000002.png", _labels([151]))
    _jpg(base / "images" / "training" / "ADE_train_00000002.jpg")
    src = open_segmentation(f"ade20k:{base}")
    with pytest.raises(DataError, match=r"labels 151 outside 0\.\.150.*150-class"):
        src.train.mask(1)
    _jpg(base / "images" / "validation" / "ADE_val_00000009.jpg")
    with pytest.raises(DataError, match=r"1 images in .*validation have no annotation PNG \(first: ADE_val_00000009\)"):
        open_segmentation(f"ade20k:{base}")
    (base / "images" / "validation" / "ADE_val_00000009.jpg").unlink()
    for p in (base / "annotations" / "validation").iterdir():
        p.unlink()
    (base / "annotations" / "validation").rmdir()
    with pytest.raises(DataError, match=r"no annotations/validation/ folder; ade20k:PATH needs"):
        open_segmentation(f"ade20k:{base}")
    with pytest.raises(DataError, match="no images/ or annotations/ folder"):
        open_segmentation(f"ade20k:{tmp_path / 'nowhere'}")


# ---------------------------------------------------------------- VOC 2012

def _voc(root: Path, masks: dict[str, list[int]], train: list[str], val: list[str]) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for k, (stem, vals) in enumerate(masks.items()):
        _jpg(voc / "JPEGImages" / f"{stem}.jpg", seed=k)
        _png(voc / "SegmentationClass" / f"{stem}.png", _labels(vals), mode="P")
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(train) + "\n")
    (sets / "val.txt").write_text("\n".join(val) + "\n")
    return voc


def test_voc_reads_palette_indices_and_keeps_void(tmp_path):
    _voc(tmp_path, {"2007_000032": [0, 1, 255], "2007_000033": [15, 20], "2008_000001": [0, 7]},
         ["2007_000032", "2007_000033"], ["2008_000001"])
    with Image.open(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png") as m:
        assert m.mode == "P"  # the real format: colours on screen, indices in the file
    for path in (tmp_path, tmp_path / "VOCdevkit", tmp_path / "VOCdevkit" / "VOC2012"):
        src = open_segmentation(f"voc:{path}")
        assert src.name == "voc2012" and src.num_classes == 21 and src.classes[15] == "person"
        assert (len(src.train), len(src.eval)) == (2, 1)
    assert set(np.unique(src.train.mask(0)).tolist()) == {0, 1, IGNORE}
    assert set(np.unique(src.train.mask(1)).tolist()) == {15, 20}


def test_voc_errors(tmp_path):
    voc = _voc(tmp_path, {"a": [0, 30], "b": [1]}, ["a"], ["b", "c"])
    with pytest.raises(DataError, match=r"val.txt lists c but .*JPEGImages/c.jpg does not exist"):
        open_segmentation(f"voc:{tmp_path}")
    (voc / "ImageSets/Segmentation/val.txt").write_text("b\n")
    with pytest.raises(DataError, match=r"labels 30 outside 0\.\.20.*255 = ignore"):
        open_segmentation(f"voc:{tmp_path}").train.mask(0)
    Image.new("RGB", (12, 10), (128, 0, 0)).save(voc / "SegmentationClass" / "b.png")  # a colour image, not indices
    with pytest.raises(DataError, match="is a RGB image; label masks must be index PNGs"):
        open_segmentation(f"voc:{tmp_path}").eval.mask(0)
    (voc / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DataError, match=r"has no ImageSets/Segmentation/val.txt; voc:PATH needs"):
        open_segmentation(f"voc:{tmp_path}")


# ---------------------------------------------------------------- seg-folder

def test_seg_folder_pool_with_and_without_classes_txt(tmp_path):
    for k in range(8):
        _jpg(tmp_path / "images" / f"im{k}.jpg", seed=k)
        _png(tmp_path / "masks" / f"im{k}.png", _labels([0, k % 3, 255]), mode="P" if k % 2 else "L")
    src = open_segmentation(f"seg-folder:{tmp_path}")
    assert src.classes == ("0", "1", "2") and (len(src.train), len(src.eval)) == (6, 2)  # fixed 75/25 split
    assert open_segmentation(f"seg-folder:{tmp_path}").eval.pairs == src.eval.pairs
    (tmp_path / "classes.txt").write_text("sky\nleaf\nspot\nstem\n")
    src = open_segmentation(f"seg-folder:{tmp_path}")
    assert src.classes == ("sky", "leaf", "spot", "stem")
    (tmp_path / "classes.txt").write_text("sky\n")
    with pytest.raises(DataError, match=r"labels 1 outside 0\.\.0.*classes.txt"):
        src = open_segmentation(f"seg-folder:{tmp_path}")
        [src.train.mask(i) for i in range(len(src.train))]


def test_seg_folder_own_split_and_errors(tmp_path):
    for which in ("train", "val"):
        for k in range(2):
            _jpg(tmp_path / which / "images" / f"{which}{k}.png", seed=k)
            _png(tmp_path / which / "masks" / f"{which}{k}.png", _labels([0, 1]))
    src = open_segmentation(f"seg-folder:{tmp_path}")
    assert (len(src.train), len(src.eval), src.eval.name) == (2, 2, "val")
    _jpg(tmp_path / "val" / "images" / "orphan.jpg")
    with pytest.raises(DataError, match=r"1 images in .*val/images have no mask \(first: orphan\)"):
        open_segmentation(f"seg-folder:{tmp_path}")
    with pytest.raises(DataError, match="has no images/ folder; seg-folder:PATH needs images/ and masks/"):
        (tmp_path / "empty").mkdir()
        open_segmentation(f"seg-folder:{tmp_path / 'empty'}")
