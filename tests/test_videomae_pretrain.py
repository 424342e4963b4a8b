"""VideoMAE pretraining: loss parity with transformers, tube masking, a run through the trainer.

- loss: mimzoo's VideoMAE objective (encoder on visible tubes + decoder, per-tube normalised pixels,
  MSE on masked tubes) against ``VideoMAEForPreTraining`` with the same ``bool_masked_pos`` and every
  weight copied over (random, distinctive), within 1e-5; also with raw-pixel targets (norm_pix_loss off);
- masks: one spatial mask per clip repeated on every tube slice, ``int(0.9 * h * w)`` per slice;
- trainer: ``mimzoo pretrain videomae --arch videomae-vit-test --data moving-digits`` writes a model
  folder ``mimzoo.load`` reads back as a video encoder, and a run cut in two and resumed ends with the
  weights of an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import mimzoo
from mimzoo.pretrain import TrainConfig, pretrain
from mimzoo.pretrain.models import build_objective
from mimzoo.pretrain.recipe import Decoder, RecipeError, find_recipe, with_overrides
from mimzoo_videomae.layouts import pretraining_from_transformers

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=128, layer_norm_eps=1e-6, hidden_act="gelu",
            decoder_hidden_size=16, decoder_num_hidden_layers=2, decoder_num_attention_heads=2,
            decoder_intermediate_size=64, use_mean_pooling=False)
DATA = "moving-digits:train=8,test=2,frames=4,size=32,digit=14"


def _objective(norm_pix: bool):
    recipe = replace(find_recipe("videomae"), decoder=Decoder(kind="videomae", dim=16, depth=2, heads=2, mlp_ratio=4.0))
    if not norm_pix:
        recipe = with_overrides(recipe, {"target.kind": "pixels"})
    return build_objective(recipe, mimzoo.load("videomae-vit-test", pretrained=False)).eval()


@pytest.mark.parametrize("norm_pix", [True, False], ids=["normalized-pixels", "pixels"])
def test_loss_matches_transformers_videomae_for_pretraining(norm_pix):
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    hf = VideoMAEForPreTraining(VideoMAEConfig(**TINY, norm_pix_loss=norm_pix)).eval()
    hf.decoder.norm.eps = 1e-6  # transformers builds it with torch's 1e-5; the official decoder norm uses 1e-6
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            scale = name.endswith("weight") and "norm" in name
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if scale else 0.0))
    obj = _objective(norm_pix)
    obj.load_state_dict(pretraining_from_transformers(dict(hf.state_dict())), strict=True)
    clips = torch.randn(3, 3, 4, 32, 32, generator=g)
    masks = obj.masking(3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(clips.transpose(1, 2), bool_masked_pos=masks.mask).loss  # transformers: [N, T, C, H, W]
        ours = obj(clips, masks)
    assert masks.mask.sum(dim=1).tolist() == [28, 28, 28]
    assert abs(float(ours) - float(ref)) < 1e-5, (float(ours), float(ref))
    assert float(ref) > 0.1  # a real loss, not a degenerate zero


def test_tube_masks_repeat_one_spatial_mask_on_every_slice():
    obj = _objective(True)
    masks = obj.masking(5, torch.Generator().manual_seed(2))
    grid = masks.mask.view(5, 2, 4, 4)  # [N, T', h, w]
    assert torch.equal(grid[:, 0], grid[:, 1])
    assert grid[:, 0].flatten(1).sum(dim=1).tolist() == [int(0.9 * 16)] * 5
    assert torch.equal(masks.visible, ~masks.mask)
    again = obj.masking(5, torch.Generator().manual_seed(2))
    assert torch.equal(again.mask, masks.mask)  # reproducible from the generator alone
    assert obj.reconstruct(torch.randn(5, 3, 4, 32, 32), masks).shape == (5, 3, 4, 32, 32)


def test_recipe_pairs_tube_masking_with_the_video_decoder_and_a_video_encoder():
    with pytest.raises(RecipeError, match="go together"):
        with_overrides(find_recipe("videomae"), {"masking.kind": "random-patch"})
    with pytest.raises(RecipeError, match="video encoder"):
        build_objective(find_recipe("videomae"), mimzoo.load("mae-vit-test", pretrained=False))
    with pytest.raises(RecipeError, match="videomae recipe"):
        build_objective(find_recipe("mae"), mimzoo.load("videomae-vit-test", pretrained=False))


def _config(out, **kw) -> TrainConfig:
    return TrainConfig(method="videomae", arch="videomae-vit-test", data=DATA, epochs=2, batch_size=4,
                       output=str(out), log_every=1, **kw)


def test_pretrain_on_moving_digits_writes_a_video_model_folder_and_resumes_exactly(tmp_path):
    whole = pretrain(_config(tmp_path / "whole"))
    assert whole.steps == 4 and whole.history[-1]["loss"] > 0
    enc = mimzoo.load(str(tmp_path / "whole"))
    assert enc.preprocess.num_frames == 4 and enc.info.arch == "video_vit"
    assert enc(torch.randn(2, 3, 4, 32, 32)).shape == (2, 32)
    cfg = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert cfg["pretrained_cfg"]["num_frames"] == 4 and cfg["mimzoo"]["recipe"]["masking"]["kind"] == "tube"

    cut = tmp_path / "cut"
    pretrain(_config(cut, max_steps=2))  # stops after the first epoch, checkpoint kept
    resumed = pretrain(_config(cut, resume=True))
    assert resumed.history[0]["step"] == 3
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    dec_a = load_file(str(tmp_path / "whole" / "pretrain.safetensors"))
    dec_b = load_file(str(cut / "pretrain.safetensors"))
    assert {"encoder_to_decoder.weight", "mask_token", "decoder.head.weight"} <= dec_a.keys()
    assert all(torch.equal(dec_a[k], dec_b[k]) for k in dec_a)


def test_recipe_is_registered_on_the_method_and_the_contract_checks_frames():
    from mimzoo.errors import PluginError
    from mimzoo.registry import get_registry

    method = get_registry().method("videomae")
    assert method.recipe is find_recipe("videomae") or method.recipe == find_recipe("videomae")
    r = method.recipe
    assert (r.masking.kind, r.masking.ratio, r.target.kind, r.loss.kind, r.decoder.kind) == \
        ("tube", 0.9, "normalized-pixels", "mse", "videomae")
    v = get_registry().model("videomae-vit-test").variant
    with pytest.raises(PluginError, match="frame_stride 0 must be at least 1"):
        replace(v, preprocess=replace(v.preprocess, frame_stride=0)).validate("videomae")
