"""Deploying without torch: the numpy/PIL preprocessing and the onnxruntime-only runtime.

The preprocessing is compared with mimzoo's torchvision transform on real digits and on synthetic
images of odd sizes and modes, for every interpolation and crop mode; the runtime's embeddings
with the encoder's own; and a fresh interpreter shows that embedding images never imports torch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_helpers import tiny_export
from helpers import run_py
from PIL import Image

import mimzoo
from mimzoo.encoders.transforms import make_transform
from mimzoo.exporters.images import load_images
from mimzoo.exporters.runtime import ExportRuntimeError, load_export, preprocess
from mimzoo.registry.contract import Preprocess


def _synthetic(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    return Image.fromarray(arr, mode)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("crop_mode,crop_pct,size", [("center", 0.875, (3, 32, 32)), ("center", 1.0, (3, 48, 48)),
                                                     ("squash", 0.9, (3, 40, 40)), ("center", 0.95, (3, 24, 40)),
                                                     ("center", 0.875, (1, 28, 28))])
def test_preprocess_matches_torchvision(interpolation, crop_mode, crop_pct, size):
    pp = Preprocess(input_size=size, interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode,
                    mean=(0.5,) * size[0], std=(0.25,) * size[0])
    reference = make_transform(pp)
    images = [_synthetic((50, 37), "RGB", 0), _synthetic((20, 64), "L", 1), _synthetic((33, 33), "RGB", 2),
              _synthetic((10, 12), "RGB", 3)]  # the last is smaller than the crop: padded
    for img in images:
        want = reference(img).numpy()
        got = preprocess(img, pp.to_timm())
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_preprocess_matches_on_real_digits():
    pp = Preprocess(input_size=(3, 224, 224))
    reference = make_transform(pp)
    for img in load_images("digits", 8).images:
        np.testing.assert_allclose(preprocess(img, pp.to_timm()), reference(img).numpy(), atol=1e-6, rtol=0)


def test_runtime_embeds_like_the_encoder(tmp_path):
    folder, encoder = tiny_export(tmp_path)
    images = list(load_images("digits", 12).images) + [_synthetic((41, 29), "RGB", 5)]
    model = load_export(folder)
    got = model.embed(images, batch_size=5)
    want = encoder.embed_images(images).numpy()
    assert got.shape == (13, encoder.num_features)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert model.preprocess_config == encoder.preprocess.to_timm()


def test_embedding_never_imports_torch(tmp_path):
    folder, _ = tiny_export(tmp_path)
    r = run_py(f"""
        import sys, json
        import numpy as np
        from PIL import Image
        from mimzoo.exporters.runtime import load_export
        model = load_export({str(folder)!r})
        images = [Image.new("RGB", (40, 30), (i * 20, 0, 0)) for i in range(3)]
        out = model.embed(images)
        heavy = sorted(m for m in ("torch", "torchvision", "timm") if m in sys.modules)
        print(json.dumps({{"shape": list(out.shape), "finite": bool(np.isfinite(out).all()), "heavy": heavy}}))
    """)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == {"shape": [3, 32], "finite": True, "heavy": []}


def test_runtime_refuses_what_is_not_an_export(tmp_path):
    with pytest.raises(ExportRuntimeError, match="not an export folder .*run `mimzoo export` first"):
        load_export(tmp_path)
    (tmp_path / "export.json").write_text(json.dumps({"mimzoo_export": 1, "format": "onnx", "preprocess": {}}))
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ExportRuntimeError, match="onnxruntime cannot load .*corrupt or incomplete: export again"):
        load_export(tmp_path)


def test_fixed_batch_runtime_pads_the_last_chunk(tmp_path):
    torch.manual_seed(0)
    encoder = mimzoo.load("mae-vit-test", pretrained=False)
    r = mimzoo.export(encoder, tmp_path / "b4", batch=4, images=16)
    model = load_export(r.path)
    assert model.fixed_batch == 4
    x = np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        want = encoder(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.run(x)["embedding"], want, atol=1e-4, rtol=0)
    assert r.meta["inputs"]["pixel_values"] == [4, 3, 32, 32] and r.meta["batch"] == 4
