"""Feature extraction through the full data pipeline, and the on-disk cache (hits, stale, corrupt)."""

from __future__ import annotations

import json

import pytest
import torch
from eval_helpers import write_folder

import mimzoo
from mimzoo.data import open_dataset, subset
from mimzoo.eval import cache
from mimzoo.eval.features import ExtractConfig, extract_features


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder


@pytest.fixture(scope="module")
def split():
    return subset(open_dataset("digits").eval, 60)


def test_features_equal_a_bare_forward_of_the_same_images(encoder, split, tmp_path):
    cfg = ExtractConfig(batch_size=16, workers=2, cache_dir=str(tmp_path))
    f = extract_features(encoder, split, tokens=True, config=cfg)
    images = torch.stack([encoder.transform(split.image(i)) for i in range(len(split))])
    with torch.no_grad():
        tokens = encoder.forward_features(images)
        pooled = encoder(images)
    assert f.pooled.shape == (60, 32) and f.tokens.shape == (60, 65, 32) and f.prefix_tokens == 1
    assert f.index.tolist() == list(range(60)) and f.labels.tolist() == split.labels()
    torch.testing.assert_close(f.pooled, pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f.tokens.float(), tokens, rtol=2e-3, atol=2e-3)  # stored as fp16
    assert f.cache_status == "miss" and f.cache_file.parent == tmp_path / "features" and f.skipped == []


def test_cache_hit_stale_and_corrupt_files_are_rebuilt(encoder, split, tmp_path):
    cfg = ExtractConfig(batch_size=32, workers=0, cache_dir=str(tmp_path))
    first = extract_features(encoder, split, config=cfg)
    hit = extract_features(encoder, split, config=cfg)
    assert (first.cache_status, hit.cache_status) == ("miss", "hit") and hit.seconds == 0.0
    assert torch.equal(first.pooled, hit.pooled) and torch.equal(first.labels, hit.labels)
    assert extract_features(encoder, split, tokens=True, config=cfg).cache_status == "stale"  # no tokens cached yet
    assert extract_features(encoder, split, tokens=True, config=cfg).cache_status == "hit"
    path = first.cache_file
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # a torn file
    torn = extract_features(encoder, split, config=cfg)
    assert torn.cache_status == "corrupt" and torch.equal(torn.pooled, first.pooled)
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0xFF  # one flipped bit in the tensor bytes: the checksum catches it
    path.write_bytes(bytes(raw))
    assert extract_features(encoder, split, config=cfg).cache_status == "corrupt"
    _rewrite_key(path)  # a file at the right name but written for other inputs
    assert extract_features(encoder, split, config=cfg).cache_status == "stale"
    assert extract_features(encoder, split, config=cfg).cache_status == "hit"


def _rewrite_key(path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    key = json.loads(meta["key"])
    key["preprocess"]["crop_pct"] = 0.5
    save_file(tensors, str(path), metadata={**meta, "key": json.dumps(key, sort_keys=True)})


def test_cache_key_follows_weights_data_and_preprocessing(encoder, split, tmp_path):
    cfg = ExtractConfig(workers=0, cache_dir=str(tmp_path))
    base = extract_features(encoder, split, config=cfg).cache_file
    other = mimzoo.load("mae-vit-test", pretrained=False)  # other random weights
    assert extract_features(other, split, config=cfg).cache_file != base
    assert extract_features(encoder, subset(open_dataset("digits").eval, 61), config=cfg).cache_file != base
    bigger = mimzoo.load("mae-vit-test", pretrained=False, img_size=48)
    bigger.load_state_dict({k: v for k, v in encoder.state_dict().items() if "pos_embed" not in k}, strict=False)
    assert cache.weights_fingerprint(bigger) != cache.weights_fingerprint(encoder)
    assert extract_features(encoder, split, config=ExtractConfig(workers=0, cache=False)).cache_status == "off"


def test_unreadable_images_are_counted_skips(encoder, tmp_path):
    root = write_folder(tmp_path / "ds", {"a": 4, "b": 3})
    write_folder(root, {"a": 2, "b": 2}, split="val")
    (root / "train" / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (root / "train" / "a" / "3.png").write_bytes((root / "train" / "a" / "0.png").read_bytes()[:40])  # truncated
    src = open_dataset(str(root))
    f = extract_features(encoder, src.train, config=ExtractConfig(batch_size=3, workers=2, cache_dir=str(tmp_path)))
    assert len(f) == 5 and [i for i, _ in f.skipped] == [3, 5]
    assert f.index.tolist() == [0, 1, 2, 4, 6] and f.labels.tolist() == [0, 0, 0, 1, 1]
    assert all(reason for _, reason in f.skipped)
    again = extract_features(encoder, src.train, config=ExtractConfig(workers=0, cache_dir=str(tmp_path)))
    assert again.cache_status == "hit" and again.skipped == f.skipped
