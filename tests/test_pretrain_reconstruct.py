"""The reconstruction picture's columns: what is the input, what is the decoder, what is neither.

A copy of the bundled mae-vit-digits decoder whose last layer outputs one constant tells the three
apart: in "+ visible" the visible patches are the input image's own pixels, bit for bit, and the
masked patches are that constant; in "reconstruction" the visible patches carry no prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mimzoo
from mimzoo.pretrain.data import DigitsSource

ASSETS = Path(mimzoo.__file__).parent / "assets" / "mae-vit-digits"
CONSTANT = 0.5  # what the doctored decoder predicts everywhere, in the model's normalised space


def _pixels(t: torch.Tensor) -> np.ndarray:
    """A [C, H, W] image in [0, 1] as the PNG stores it."""
    return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def constant_decoder(tmp_path_factory) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = ASSETS / "pretrain.safetensors"
    with safe_open(str(src), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    tensors["decoder.decoder_pred.weight"] = torch.zeros_like(tensors["decoder.decoder_pred.weight"])
    tensors["decoder.decoder_pred.bias"] = torch.full_like(tensors["decoder.decoder_pred.bias"], CONSTANT)
    out = tmp_path_factory.mktemp("decoder") / "pretrain.safetensors"
    save_file(tensors, str(out), metadata=meta)
    return out


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> list[Path]:
    from PIL import Image

    folder, test = tmp_path_factory.mktemp("digits"), DigitsSource("test")
    files = []
    for i in range(3):
        files.append(folder / f"{i}.png")
        Image.fromarray(_pixels(test.images[i])).save(files[-1])
    return files


def test_visible_patches_are_the_input_and_masked_ones_the_decoder(constant_decoder, digit_files):
    from PIL import Image

    from mimzoo.pretrain.reconstruct import VISIBLE_COLOR, reconstruction_columns

    original, masked, recon, pasted, mask = reconstruction_columns("mae-vit-digits", digit_files,
                                                                   decoder=constant_decoder)
    pp = mimzoo.load("mae-vit-digits").preprocess
    want = torch.tensor(CONSTANT) * torch.tensor(pp.std).view(-1, 1, 1) + torch.tensor(pp.mean).view(-1, 1, 1)
    patch, grid = 4, 8
    pixel_mask = mask.view(-1, grid, grid).repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # [N, H, W]
    assert 0 < int(mask.sum()) < mask.numel()
    for i, path in enumerate(digit_files):
        m, v = pixel_mask[i], ~pixel_mask[i]
        with Image.open(path) as im:
            given = np.asarray(im.convert("RGB"))
        # "+ visible": the input's own pixels where visible (exactly, as stored), the decoder where masked
        np.testing.assert_array_equal(_pixels(pasted[i])[v.numpy()], given[v.numpy()])
        torch.testing.assert_close(pasted[i][:, m], want.view(-1, 1).expand(-1, int(m.sum())))
        # "reconstruction": the decoder where masked; nothing predicted (a flat fill) where visible
        torch.testing.assert_close(recon[i][:, m], pasted[i][:, m])
        fill = torch.tensor(VISIBLE_COLOR).view(-1, 1).expand(-1, int(v.sum()))
        torch.testing.assert_close(recon[i][:, v], fill)
        np.testing.assert_array_equal(_pixels(original[i]), given)
        np.testing.assert_array_equal(_pixels(masked[i])[v.numpy()], given[v.numpy()])


def test_trained_decoder_fills_masked_patches_with_predictions(digit_files, tmp_path):
    """The bundled decoder (not the doctored one): masked patches differ from the constant fill and are
    closer to the true digit than the image's mean grey is (the model learnt something)."""
    from PIL import Image

    from mimzoo.pretrain.reconstruct import reconstruct, reconstruction_columns

    original, _, _, pasted, mask = reconstruction_columns("mae-vit-digits", digit_files)
    m = mask.view(-1, 8, 8).repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1).expand_as(original)
    err_model = ((pasted - original)[m] ** 2).mean()
    flat = original.mean(dim=(1, 2, 3), keepdim=True).expand_as(original)
    err_flat = ((flat - original)[m] ** 2).mean()
    assert err_model < 0.8 * err_flat, (float(err_model), float(err_flat))
    out = reconstruct("mae-vit-digits", digit_files, tmp_path / "rec.png")
    with Image.open(out) as im:
        assert im.size[0] > 4 * 128
