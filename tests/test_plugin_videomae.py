"""The VideoMAE and VideoMAE V2 plugins: layouts, parity with independent implementations, the clip transform.

- transformers: ``VideoMAEModel`` (final LayerNorm, the pretraining layout) and
  ``VideoMAEForVideoClassification`` (``use_mean_pooling``: fc_norm on the mean) with a tiny config and
  random distinctive weights (every 1-d tensor random, q/v biases and norms included), converted
  through the transformers layout: tokens (and the pooled embedding) within 1e-4;
- official: a pretraining checkpoint (``encoder.*``, ``q_bias``/``v_bias``, decoder keys, inside
  ``{'model': ...}``) and a fine-tuned one (``fc_norm`` + ``head``), compared with a functional forward
  written in this file from MCG-NJU/VideoMAE ``modeling_pretrain.py`` / ``modeling_finetune.py``
  (numpy sin-cos table over the flat token index; qkv bias ``[q_bias, 0, v_bias]``);
- the clip transform: PIL frames and uint8 arrays give the same ``[C, T, H, W]``, longer sources are
  centre-sampled at ``frame_stride``, wrong inputs are refused in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mimzoo
from mimzoo.encoders.video import ClipTransform, clip_indices, sincos_table
from mimzoo.errors import MimzooError
from mimzoo.registry import get_registry
from mimzoo.weights import convert_and_load, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-4
TINY = dict(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=128, layer_norm_eps=1e-6, hidden_act="gelu")


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random (norm scales around 1), so no check passes by symmetry or a zero bias."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = name.endswith("weight") and ("norm" in name or "layernorm" in name)
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if scale else 0.0))


def _clips(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, TINY["num_frames"], TINY["image_size"], TINY["image_size"],
                       generator=torch.Generator().manual_seed(seed))


def _encoder(name: str = "videomae-vit-test") -> mimzoo.Encoder:
    return mimzoo.load(name, pretrained=False).eval()


def test_tiny_variant_matches_the_tiny_config():
    kw = get_registry().model("videomae-vit-test").variant.model_kwargs
    assert (kw["img_size"], kw["patch_size"], kw["num_frames"], kw["tubelet_size"], kw["embed_dim"], kw["depth"],
            kw["num_heads"]) == tuple(TINY[k] for k in ("image_size", "patch_size", "num_frames", "tubelet_size",
                                                        "hidden_size", "num_hidden_layers", "num_attention_heads"))


def test_transformers_videomae_model_tokens_match():
    from transformers import VideoMAEConfig, VideoMAEModel

    hf = VideoMAEModel(VideoMAEConfig(**TINY, use_mean_pooling=False)).eval()
    _randomise(hf, 0)
    enc = _encoder()
    report = convert_and_load(enc.model, dict(hf.state_dict()), get_registry().model("videomae-vit-test").variant.layouts,
                              source="hf", owner="videomae-vit-test")
    assert report.layout == "transformers"
    x = _clips()
    with torch.no_grad():
        ref = hf(x.transpose(1, 2)).last_hidden_state  # transformers takes [N, T, C, H, W]
        tokens, pooled = enc.forward_features(x), enc(x)
    assert tokens.shape == (2, 2 * 4 * 4, 32)  # L = T/t * H/p * W/p
    assert (tokens - ref).abs().max() < TOL
    assert (pooled - ref.mean(dim=1)).abs().max() < TOL


def test_transformers_classifier_fc_norm_pooling_matches():
    """A fine-tuned file (use_mean_pooling: no final norm, fc_norm on the mean) loads into an fc_norm variant."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    hf = VideoMAEForVideoClassification(VideoMAEConfig(**TINY, use_mean_pooling=True, num_labels=5)).eval()
    _randomise(hf, 3)
    enc = _encoder("videomae-v2-vit-test")
    convert_and_load(enc.model, dict(hf.state_dict()), get_registry().model("videomae-v2-vit-test").variant.layouts,
                     source="hf", owner="videomae-v2-vit-test")
    x = _clips(seed=4)
    with torch.no_grad():
        out = hf.videomae(x.transpose(1, 2)).last_hidden_state
        ref_pooled = hf.fc_norm(out.mean(dim=1))
        assert (enc.forward_features(x) - out).abs().max() < TOL
        assert (enc(x) - ref_pooled).abs().max() < TOL
        # and the head on top of our pooled embedding gives transformers' logits
        assert (hf.classifier(enc(x)) - hf(x.transpose(1, 2)).logits).abs().max() < TOL


# ---------------------------------------------------------------------------------------------
# the official layout, against a forward written from the official modeling files


def _official_table(n_position: int, d_hid: int) -> torch.Tensor:
    """``get_sinusoid_encoding_table`` of modeling_pretrain.py (numpy, float64, then FloatTensor)."""
    def angles(pos):
        return [pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)]

    table = np.array([angles(p) for p in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.FloatTensor(table).unsqueeze(0)


def official_sd(seed: int, *, finetuned: bool) -> dict[str, torch.Tensor]:
    """An official VideoMAE encoder state dict (pretraining: `encoder.` prefix + decoder; fine-tuned: fc_norm + head)."""
    d, mlp, p, t = TINY["hidden_size"], TINY["intermediate_size"], TINY["patch_size"], TINY["tubelet_size"]
    shapes = {"patch_embed.proj.weight": (d, 3, t, p, p), "patch_embed.proj.bias": (d,)}
    for i in range(TINY["num_hidden_layers"]):
        b = f"blocks.{i}."
        shapes.update({f"{b}norm1.weight": (d,), f"{b}norm1.bias": (d,), f"{b}attn.qkv.weight": (3 * d, d),
                       f"{b}attn.q_bias": (d,), f"{b}attn.v_bias": (d,), f"{b}attn.proj.weight": (d, d),
                       f"{b}attn.proj.bias": (d,), f"{b}norm2.weight": (d,), f"{b}norm2.bias": (d,),
                       f"{b}mlp.fc1.weight": (mlp, d), f"{b}mlp.fc1.bias": (mlp,), f"{b}mlp.fc2.weight": (d, mlp),
                       f"{b}mlp.fc2.bias": (d,)})
    if finetuned:
        shapes.update({"fc_norm.weight": (d,), "fc_norm.bias": (d,), "head.weight": (7, d), "head.bias": (7,)})
    else:
        shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) * 0.2 + (1.0 if k.endswith("norm1.weight") or k.endswith("norm2.weight")
                                                    or k in ("norm.weight", "fc_norm.weight") else 0.0)
          for k, s in shapes.items()}
    if finetuned:
        return sd
    sd = {f"encoder.{k}": v for k, v in sd.items()}
    sd.update({"encoder_to_decoder.weight": torch.randn(16, d), "mask_token": torch.zeros(1, 1, 16),
               "decoder.norm.weight": torch.ones(16), "decoder.norm.bias": torch.zeros(16),
               "decoder.head.weight": torch.randn(3 * t * p * p, 16), "decoder.head.bias": torch.zeros(3 * t * p * p)})
    return sd


def official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and pooled output of the official encoder, functionally (eps 1e-6, exact GELU)."""
    sd = {k.removeprefix("encoder."): v for k, v in sd.items()}
    t, p, heads = TINY["tubelet_size"], TINY["patch_size"], TINY["num_attention_heads"]
    h = F.conv3d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=(t, p, p))
    h = h.flatten(2).transpose(1, 2)
    h = h + _official_table(h.shape[1], h.shape[2])
    n, length, d = h.shape
    ln = lambda z, k: F.layer_norm(z, (d,), sd[f"{k}.weight"], sd[f"{k}.bias"], eps=1e-6)  # noqa: E731
    for i in range(TINY["num_hidden_layers"]):
        b = f"blocks.{i}."
        bias = torch.cat([sd[f"{b}attn.q_bias"], torch.zeros_like(sd[f"{b}attn.v_bias"]), sd[f"{b}attn.v_bias"]])
        qkv = F.linear(ln(h, f"{b}norm1"), sd[f"{b}attn.qkv.weight"], bias)
        q, k, v = qkv.reshape(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        h = h + F.linear((attn @ v).transpose(1, 2).reshape(n, length, d), sd[f"{b}attn.proj.weight"],
                         sd[f"{b}attn.proj.bias"])
        m = F.gelu(F.linear(ln(h, f"{b}norm2"), sd[f"{b}mlp.fc1.weight"], sd[f"{b}mlp.fc1.bias"]))
        h = h + F.linear(m, sd[f"{b}mlp.fc2.weight"], sd[f"{b}mlp.fc2.bias"])
    if "fc_norm.weight" in sd:  # fine-tuned: norm is Identity, fc_norm on the mean
        return h, ln(h.mean(dim=1), "fc_norm")
    h = ln(h, "norm")
    return h, h.mean(dim=1)


@pytest.mark.parametrize("finetuned", [False, True], ids=["pretraining", "finetuned"])
def test_official_layout_matches_the_official_forward(finetuned, tmp_path):
    sd = official_sd(5, finetuned=finetuned)
    name = "videomae-v2-vit-test" if finetuned else "videomae-vit-test"
    enc = _encoder(name)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": sd, "epoch": 799}, path)  # what utils.save_model writes; the safe reader unwraps it
    report = convert_and_load(enc.model, read_checkpoint(path), get_registry().model(name).variant.layouts,
                              source="official", owner=name)
    assert report.layout == "official"
    x = _clips(seed=6)
    ref_tokens, ref_pooled = official_forward(sd, x)
    with torch.no_grad():
        assert (enc.forward_features(x) - ref_tokens).abs().max() < TOL
        assert (enc(x) - ref_pooled).abs().max() < TOL


def test_sincos_table_is_the_official_one_and_a_shorter_clip_uses_its_first_rows():
    assert torch.equal(sincos_table(96, 32), _official_table(96, 32))
    enc = _encoder()
    x = _clips()
    short = x[:, :, :2]  # one tube slice instead of two
    with torch.no_grad():
        assert enc.forward_features(short).shape == (2, 16, 32)
        with pytest.raises(ValueError, match="at most 4 frames"):
            enc.forward_features(torch.cat([x, x], dim=2))


def test_wrong_checkpoints_fail_loudly():
    enc = _encoder()
    layouts = get_registry().model("videomae-vit-test").variant.layouts
    sd = official_sd(7, finetuned=False)
    sd.pop("encoder.blocks.1.mlp.fc2.bias")
    with pytest.raises(MimzooError, match="fc2.bias"):
        convert_and_load(enc.model, sd, layouts, source="x", owner="videomae-vit-test")
    learned = official_sd(7, finetuned=False) | {"encoder.pos_embed": torch.zeros(1, 32, 32)}
    with pytest.raises(MimzooError, match="fixed sin-cos"):
        convert_and_load(enc.model, learned, layouts, source="x", owner="videomae-vit-test")


# ---------------------------------------------------------------------------------------------
# preprocessing


def test_preprocess_round_trips_through_timm_config():
    from mimzoo.registry.contract import Preprocess

    pp = get_registry().model("videomae-vit-b-k400").variant.preprocess
    assert (pp.num_frames, pp.frame_stride, pp.input_size) == (16, 4, (3, 224, 224))
    assert Preprocess.from_timm(pp.to_timm()) == pp
    assert "num_frames" not in Preprocess().to_timm()  # image configs unchanged
    assert Preprocess.from_timm(Preprocess().to_timm()).num_frames is None


def test_clip_transform_takes_pil_frames_and_uint8_arrays():
    from PIL import Image

    enc = _encoder()
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    from_array = enc.transform(arr)
    from_pil = enc.transform([Image.fromarray(f) for f in arr])
    assert from_array.shape == (3, 4, 32, 32)
    assert torch.equal(from_array, from_pil)
    assert torch.equal(enc.transform(torch.from_numpy(arr)), from_array)
    # each frame goes through the image transform of the same preprocessing
    from mimzoo.encoders.transforms import make_transform

    frame = make_transform(enc.preprocess)(Image.fromarray(arr[2]))
    assert torch.equal(from_array[:, 2], frame)
    assert enc.embed_images([arr, arr[::-1].copy()]).shape == (2, 32)


def test_clip_transform_samples_longer_sources_at_the_frame_stride():
    from dataclasses import replace

    pp = replace(get_registry().model("videomae-vit-test").variant.preprocess, frame_stride=3)
    arr = np.stack([np.full((32, 32, 3), 10 * i, dtype=np.uint8) for i in range(20)])
    clip = ClipTransform(pp)(arr)
    picked = clip_indices(20, 4, 3)
    assert picked == [5, 8, 11, 14]
    means = clip[0].mean(dim=(1, 2))  # per-frame value tells which frame was taken
    expect = (torch.tensor([10.0 * i for i in picked]) / 255 - pp.mean[0]) / pp.std[0]
    assert torch.allclose(means, expect, atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros((4, 8, 8, 3), dtype=np.float32), np.zeros((8, 8, 3), dtype=np.uint8), "x"])
def test_clip_transform_refuses_other_inputs_in_one_line(bad):
    with pytest.raises(ValueError) as e:
        _encoder().transform(bad)
    assert "\n" not in str(e.value) and "[T, H, W, C]" in str(e.value)


def test_model_folder_round_trip_keeps_the_video_preprocessing(tmp_path):
    enc = _encoder("videomae-v2-vit-test")
    enc.save_pretrained(str(tmp_path / "m"))
    cfg = __import__("json").loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["architecture"] == "video_vit" and cfg["pretrained_cfg"]["num_frames"] == 4
    back = mimzoo.load(str(tmp_path / "m")).eval()
    assert back.preprocess == enc.preprocess and back.model.fc_norm.weight is not None
    x = _clips(seed=9)
    with torch.no_grad():
        assert torch.equal(back(x), enc(x)) and torch.equal(back.forward_features(x), enc.forward_features(x))


def test_transformers_hub_files_with_q_bias_v_bias_names_load_the_same():
    """MCG-NJU/videomae-* files were written by transformers 4, whose attention held q_bias / v_bias beside
    bias-free query / value; transformers 5 names them query.bias / value.bias. Both load alike."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    hf = VideoMAEForPreTraining(VideoMAEConfig(**TINY, use_mean_pooling=False, decoder_hidden_size=16,
                                               decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                               decoder_intermediate_size=32)).eval()
    _randomise(hf, 11)
    v5 = dict(hf.state_dict())
    v4 = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
           .replace("attention.attention.value.bias", "attention.attention.v_bias"): v for k, v in v5.items()}
    assert any(k.endswith("q_bias") for k in v4)
    layouts = get_registry().model("videomae-vit-test").variant.layouts
    a, b = _encoder(), _encoder()
    convert_and_load(a.model, v5, layouts, source="v5", owner="t")
    convert_and_load(b.model, v4, layouts, source="v4", owner="t")
    x = _clips(seed=12)
    with torch.no_grad():
        ref = hf.videomae(x.transpose(1, 2)).last_hidden_state
        assert torch.equal(a.forward_features(x), b.forward_features(x))
        assert (a.forward_features(x) - ref).abs().max() < TOL
