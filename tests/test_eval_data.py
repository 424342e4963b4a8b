"""Dataset specs: digits, CIFAR read without trusting pickle, image folders and their errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from eval_helpers import cifar_batch, write_cifar, write_folder

from mimzoo.data import DataError, UnsafeDataError, open_dataset, subset
from mimzoo.data.cifar import read_batch


def test_digits_split_and_images():
    src = open_dataset("digits")
    assert (src.name, src.num_classes, len(src.train), len(src.eval)) == ("digits", 10, 1347, 450)
    assert src.eval.name == "test" and not src.flip_ok and not src.crop_ok
    img = src.train.image(0)
    assert img.mode == "RGB" and img.size == (32, 32)
    assert sorted(set(src.eval.labels())) == list(range(10))  # stratified: every class held out
    px = np.asarray(img)
    assert (px[:4, :4] == px[0, 0]).all()  # each original pixel is a crisp 4x4 block
    again = open_dataset("digits")
    assert again.train.fingerprint() == src.train.fingerprint() != src.eval.fingerprint()


def test_subset_is_seeded_and_stable():
    src = open_dataset("digits")
    a, b = subset(src.train, 200), subset(src.train, 200)
    assert len(a) == 200 and a.indices == b.indices == sorted(a.indices)
    assert len(set(a.labels())) == 10
    assert subset(src.train, None) is src.train and subset(src.train, 10_000) is src.train
    assert a.fingerprint() != subset(src.train, 201).fingerprint()


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_official_layout(tmp_path, protocol):
    folder = write_cifar(tmp_path, "cifar10", per_batch=6, protocol=protocol)
    for spec in (f"cifar10:{folder}", f"cifar10:{tmp_path}"):  # the extracted folder or its parent
        src = open_dataset(spec)
        assert (src.name, src.num_classes, len(src.train), len(src.eval)) == ("cifar10", 10, 30, 6)
    raw = pickle.loads((folder / "data_batch_2").read_bytes())
    row = raw[b"data"][3]
    img = np.asarray(src.train.image(6 + 3))  # batch 2 starts after batch 1's 6 images
    assert img.shape == (32, 32, 3)
    assert img[0, 1, 0] == row[1] and img[0, 1, 1] == row[1024 + 1] and img[0, 1, 2] == row[2048 + 1]
    assert src.train.label(9) == raw[b"labels"][3] and src.classes[2] == "class2"


def test_cifar100_fine_labels(tmp_path):
    write_cifar(tmp_path, "cifar100", per_batch=8)
    src = open_dataset(f"cifar100:{tmp_path}")
    assert (src.num_classes, len(src.train), len(src.eval)) == (100, 8, 8)
    assert src.classes[5] == "fine5" and src.eval.name == "test"
    with pytest.raises(DataError, match="no cifar10 python batches .* extract the official 'cifar-10-batches-py'"):
        open_dataset(f"cifar10:{tmp_path}")


class _RunsCode:
    """A pickle payload that would create a file while loading, if the loader trusted it."""

    def __init__(self, target, how):
        self.target, self.how = target, how

    def __reduce__(self):
        if self.how == "open":
            return (open, (str(self.target), "w"))
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("how", ["open", "system"])
def test_malicious_cifar_file_is_refused_before_running_anything(tmp_path, how):
    folder = write_cifar(tmp_path, "cifar10")
    evil = tmp_path / "pwned"
    batch = cifar_batch(6, "labels", 10, 0)
    batch[b"payload"] = _RunsCode(evil, how)
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UnsafeDataError, match=r"data_batch_3 asks to run .* delete it and download the dataset again"):
        open_dataset(f"cifar10:{folder}")
    assert not evil.exists()  # nothing ran
    pickle.loads((folder / "data_batch_3").read_bytes())  # ...whereas plain pickle would have run it
    assert evil.exists()


def test_cifar_files_that_are_not_batches(tmp_path):
    folder = write_cifar(tmp_path, "cifar10")
    good = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR batch .* download it again"):
        open_dataset(f"cifar10:{folder}")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.float32), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"no uint8 'data' array of shape \[N, 3072\]"):
        open_dataset(f"cifar10:{folder}")
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match="holds a list, not a CIFAR batch dict"):
        read_batch(folder / "test_batch")


def test_image_folder_and_its_errors(tmp_path):
    root = write_folder(tmp_path / "ds", {"cat": 3, "dog": 2})
    with pytest.raises(DataError, match=r"has no val/ folder; an image folder needs train/<class>/<image> and val/"):
        open_dataset(str(root))
    write_folder(root, {"cat": 1, "dog": 1}, split="val")
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    src = open_dataset(str(root))
    assert (src.name, src.classes, len(src.train), len(src.eval), src.eval.name) == ("ds", ("cat", "dog"), 5, 2, "val")
    assert src.train.labels() == [0, 0, 0, 1, 1] and src.train.image(0).size == (12, 12)
    assert open_dataset(f"folder:{root}").train.fingerprint() == src.train.fingerprint()
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataError, match=r"class 'bird' in .*train has no images; add images or remove the folder"):
        open_dataset(str(root))
    (root / "train" / "bird").rmdir()
    write_folder(root, {"cat": 0, "dog": 0, "eel": 1}, split="val")
    with pytest.raises(DataError, match=r"has classes not in train/ \(eel\)"):
        open_dataset(str(root))


def test_unknown_specs():
    with pytest.raises(DataError, match="unknown dataset kind 'imagenet:'"):
        open_dataset("imagenet:/data")
    with pytest.raises(DataError, match="names no folder; pass cifar100:PATH"):
        open_dataset("cifar100:")
    with pytest.raises(DataError, match="empty dataset spec"):
        open_dataset(" ")
