"""The embedded default model, mae-vit-digits: ships complete, loads offline, beats random init."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import mimzoo
from mimzoo.pretrain.data import DigitsSource
from mimzoo.weights import LoadReport

ASSETS = Path(mimzoo.__file__).parent / "assets" / "mae-vit-digits"


def _knn_top1(encoder, train: DigitsSource, test: DigitsSource, k: int = 20, n_train: int = 600) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    def feats(src: DigitsSource, n: int | None = None) -> np.ndarray:
        pp = encoder.preprocess
        x = (src.images[:n] - torch.tensor(pp.mean).view(1, -1, 1, 1)) / torch.tensor(pp.std).view(1, -1, 1, 1)
        with torch.inference_mode():
            f = encoder(x)
        return torch.nn.functional.normalize(f, dim=1).numpy()

    clf = KNeighborsClassifier(k).fit(feats(train, n_train), train.labels[:n_train].numpy())
    return 100 * clf.score(feats(test), test.labels.numpy())


def test_bundle_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in ASSETS.iterdir()}
    assert set(files) == {"config.json", "model.safetensors", "pretrain.safetensors", "results.json"}
    assert sum(files.values()) < 5e6
    enc = mimzoo.load(str(ASSETS))
    assert enc.info.method == "mae" and enc.num_features == 96
    assert enc.preprocess.input_size == (3, 32, 32)


def test_variant_points_at_the_bundle():
    from mimzoo.api.load import _source_file
    from mimzoo_mae.digits import DIGITS_VARIANT

    source = DIGITS_VARIANT.weight_source()
    path, where, _ = _source_file(source)
    assert path == (ASSETS / "model.safetensors").resolve() and where.startswith("bundled:")
    if "mae-vit-digits" in mimzoo.get_registry():  # once the MAE plugin lists it: the zoo name loads offline
        enc = mimzoo.load("mae-vit-digits")
        ref = mimzoo.load(str(ASSETS))
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(enc(x), ref(x))


def test_pretrained_beats_random_init_on_knn():
    train, test = DigitsSource("train"), DigitsSource("test")
    pretrained = _knn_top1(mimzoo.load(str(ASSETS)), train, test)
    from mimzoo.pretrain.arch import build_encoder

    torch.manual_seed(0)
    random = _knn_top1(build_encoder("mae-vit-digits", "mae").eval(), train, test)
    assert pretrained > random + 20, (pretrained, random)


def test_reconstruct_finds_the_bundled_decoder(tmp_path):
    from PIL import Image

    from mimzoo.pretrain.reconstruct import _decoder_file, reconstruct

    enc = mimzoo.load(str(ASSETS))
    enc.info = replace(enc.info, weights=LoadReport(source="bundled:assets/mae-vit-digits/model.safetensors",
                                                    layout="timm", tensors=0))
    assert _decoder_file("mae-vit-digits", enc, None) == (ASSETS / "pretrain.safetensors").resolve()
    arr = (DigitsSource("test").images[0].permute(1, 2, 0).numpy() * 255).astype("uint8")
    Image.fromarray(arr).save(tmp_path / "digit.png")
    out = reconstruct(str(ASSETS), [tmp_path / "digit.png"], tmp_path / "rec.png")
    assert Image.open(out).size[0] > 4 * 128
    with pytest.raises(mimzoo.MimzooError, match="comes without its pretraining decoder; pass --decoder"):
        _decoder_file("mae-vit-test", mimzoo.load("mae-vit-test", pretrained=False), None)
