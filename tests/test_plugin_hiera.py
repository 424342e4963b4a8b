"""The Hiera plugin: each checkpoint layout loads into the encoder and reproduces an independent implementation.

- official (facebookresearch/hiera ``mae_hiera_*_224.pth``): random tensors under the exact key names and
  shapes of ``MaskedAutoencoderHiera`` (hiera_mae.py: encoder, ``encoder_norm``, multi-scale fusion heads,
  mask token, decoder), in the ``{'model_state': ...}`` container, compared with transformers' ``HieraModel``
  (weights mapped by the official -> transformers names of transformers' converter) and with timm's
  ``Hiera`` loaded through timm's own checkpoint filter;
- transformers: ``HieraForPreTraining`` (the ``facebook/hiera-*-224-mae-hf`` class, saved with
  ``save_pretrained`` and as a state dict) and ``HieraModel``, compared with ``HieraModel``'s forward
  (``last_hidden_state``, ``pooler_output``; no masking there). With the MAE query pooling
  (``q_pool=2``) the encoder also matches ``HieraForPreTraining``'s own encoder with masking neutralised
  (``mask_ratio=0``: every mask unit kept, in order);
- timm: the encoder's own state dict as safetensors.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

import mimzoo
from mimzoo.errors import WeightsError
from mimzoo.registry import get_registry

NAME = "mae-hiera-test"
IMG, EMBED, STAGES, HEADS = 64, 4, (1, 1, 1, 1), (1, 2, 4, 8)
DIMS = tuple(EMBED * 2**s for s in range(len(STAGES)))  # 4, 8, 16, 32
DEC, DEC_DEPTH = 8, 1  # decoder of the MAE checkpoints below (512 wide, 8 deep in the official models)
TOL = 1e-4


def _block_dims() -> list[tuple[int, int]]:
    """(dim_in, dim_out) of every block: the first block of a stage widens the features."""
    dims, prev = [], DIMS[0]
    for s, depth in enumerate(STAGES):
        for _ in range(depth):
            dims.append((prev, DIMS[s]))
            prev = DIMS[s]
    return dims


def _block_shapes(prefix: str, d_in: int, d_out: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}norm1.weight": (d_in,), f"{prefix}norm1.bias": (d_in,),
              f"{prefix}attn.qkv.weight": (3 * d_out, d_in), f"{prefix}attn.qkv.bias": (3 * d_out,),
              f"{prefix}attn.proj.weight": (d_out, d_out), f"{prefix}attn.proj.bias": (d_out,),
              f"{prefix}norm2.weight": (d_out,), f"{prefix}norm2.bias": (d_out,),
              f"{prefix}mlp.fc1.weight": (4 * d_out, d_out), f"{prefix}mlp.fc1.bias": (4 * d_out,),
              f"{prefix}mlp.fc2.weight": (d_out, 4 * d_out), f"{prefix}mlp.fc2.bias": (d_out,)}
    if d_in != d_out:
        shapes.update({f"{prefix}proj.weight": (d_out, d_in), f"{prefix}proj.bias": (d_out,)})
    return shapes


def official_shapes() -> dict[str, tuple[int, ...]]:
    """MaskedAutoencoderHiera(embed_dim=4, num_heads=1, stages=(1, 1, 1, 1), q_pool=2, input_size=(64, 64),
    decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=1) state dict, from hiera.py and hiera_mae.py."""
    tokens = (IMG // 4) ** 2
    final = DIMS[-1]
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (EMBED, 3, 7, 7), "patch_embed.proj.bias": (EMBED,), "pos_embed": (1, tokens, EMBED),
    }
    for i, (d_in, d_out) in enumerate(_block_dims()):
        shapes.update(_block_shapes(f"blocks.{i}.", d_in, d_out))
    shapes.update({"encoder_norm.weight": (final,), "encoder_norm.bias": (final,)})
    # fusion heads for the q_pool=2 pooled stages: kernels 8/2=4 and 4/2=2 (mask unit 8x8 -> 2x2 at the end)
    for j, kernel in enumerate((4, 2)):
        shapes.update({f"multi_scale_fusion_heads.{j}.weight": (final, DIMS[j], kernel, kernel),
                       f"multi_scale_fusion_heads.{j}.bias": (final,)})
    final_tokens = (IMG // 4 // 4) ** 2  # token grid after two 2x2 query poolings
    shapes.update({"decoder_embed.weight": (DEC, final), "decoder_embed.bias": (DEC,), "mask_token": (1, 1, DEC),
                   "decoder_pos_embed": (1, final_tokens, DEC), "decoder_norm.weight": (DEC,),
                   "decoder_norm.bias": (DEC,),
                   "decoder_pred.weight": (16 * 16 * 3, DEC), "decoder_pred.bias": (16 * 16 * 3,)})
    for i in range(DEC_DEPTH):
        shapes.update(_block_shapes(f"decoder_blocks.{i}.", DEC, DEC))
    return shapes


def official_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the official layout; LayerNorm scales around 1."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.2 + (1.0 if k.endswith(("norm.weight", "norm1.weight", "norm2.weight"))
                                                    else 0.0) for k, s in official_shapes().items()}


def _hf_config(**extra):
    from transformers import HieraConfig

    return HieraConfig(embed_dim=EMBED, image_size=[IMG, IMG], depths=list(STAGES), num_heads=list(HEADS), **extra)


def official_to_hf_model(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official encoder as HieraModel names (the correspondence of transformers' convert_hiera_to_hf.py)."""
    out = {"embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
           "embeddings.position_embeddings": sd["pos_embed"],
           "pooler.layernorm.weight": sd["encoder_norm.weight"], "pooler.layernorm.bias": sd["encoder_norm.bias"]}
    i = 0
    for s, depth in enumerate(STAGES):
        for layer in range(depth):
            for k, v in sd.items():
                if k.startswith(f"blocks.{i}."):
                    rest = k[len(f"blocks.{i}."):]
                    rest = rest.replace("norm1.", "layernorm_before.").replace("norm2.", "layernorm_after.")
                    out[f"encoder.stages.{s}.layers.{layer}.{rest}"] = v
            i += 1
    return out


def hf_reference(sd: dict[str, torch.Tensor]):
    """transformers' HieraModel (standard q_pool=3, mean pooling + LayerNorm) holding the official encoder."""
    from transformers import HieraModel

    hf = HieraModel(_hf_config()).eval()
    hf.load_state_dict(official_to_hf_model(sd), strict=True)
    return hf


def timm_reference(sd: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm's Hiera loaded through timm's own filter (which keeps the decoder: removed here by hand)."""
    import timm
    from timm.models.hiera import checkpoint_filter_fn

    m = timm.create_model("hiera_tiny_224", num_classes=0, global_pool="avg", img_size=IMG, embed_dim=EMBED,
                          num_heads=HEADS[0], stages=STAGES)
    encoder = {k: v for k, v in sd.items() if not k.startswith(("multi_scale_fusion_heads.", "mask_token", "decoder_"))}
    m.load_state_dict(checkpoint_filter_fn({"model_state": encoder}, m), strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))


def _check(encoder, tokens: torch.Tensor, pooled: torch.Tensor, x: torch.Tensor) -> None:
    with torch.no_grad():
        own_tokens, own_pooled = encoder.forward_features(x), encoder(x)
    assert own_tokens.shape == tokens.shape == (x.shape[0], (IMG // 32) ** 2, DIMS[-1])
    assert (own_tokens - tokens).abs().max().item() < TOL
    assert own_pooled.shape == pooled.shape == (x.shape[0], DIMS[-1])
    assert (own_pooled - pooled).abs().max().item() < TOL


def test_official_layout(tmp_path, images):
    sd = official_sd()
    torch.save({"model_state": sd}, tmp_path / "mae_hiera_test_224.pth")  # the official container
    encoder = mimzoo.load(NAME, weights=tmp_path / "mae_hiera_test_224.pth")
    assert encoder.info.weights.layout == "official"
    with torch.no_grad():
        ref = hf_reference(sd)(pixel_values=images)
        timm_ref = timm_reference(sd)
        assert (timm_ref.forward_features(images) - ref.last_hidden_state).abs().max().item() < TOL  # references agree
    _check(encoder, ref.last_hidden_state, ref.pooler_output, images)
    assert torch.equal(encoder.model.head.norm.weight, sd["encoder_norm.weight"])  # the pretrained encoder norm


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random values for every parameter; LayerNorm scales around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale_one = re.search(r"norm[^.]*\.weight$", name) is not None  # layernorm_*, encoder_norm, ...
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if scale_one else 0.0))


def _pretraining_model(seed: int, mask_ratio: float = 0.6):
    """HieraForPreTraining as the -mae-hf Hub models are configured (q_pool=2, decoder), random weights."""
    from transformers import HieraForPreTraining

    hf = HieraForPreTraining(_hf_config(num_query_pool=2, decoder_hidden_size=DEC, decoder_depth=DEC_DEPTH,
                                        decoder_num_heads=1, mask_ratio=mask_ratio)).eval()
    _randomise(hf, seed)
    return hf


def _as_hiera_model(pretraining) -> torch.nn.Module:
    """The same encoder in a standard HieraModel (q_pool=3), encoder_norm as the pooler's norm."""
    from transformers import HieraModel

    sd = {k[len("hiera."):]: v for k, v in pretraining.state_dict().items() if k.startswith("hiera.")}
    norm = pretraining.encoder_norm
    sd.update({"pooler.layernorm.weight": norm.weight, "pooler.layernorm.bias": norm.bias})
    hf = HieraModel(_hf_config()).eval()
    hf.load_state_dict(sd, strict=True)
    return hf


@pytest.mark.parametrize("saved_as", ["save-pretrained", "state-dict"])
def test_transformers_pretraining_layout(tmp_path, images, saved_as):
    pretraining = _pretraining_model(seed=11)
    if saved_as == "save-pretrained":
        pretraining.save_pretrained(tmp_path)
        path = tmp_path / "model.safetensors"
    else:
        path = tmp_path / "pytorch_model.bin"
        torch.save(pretraining.state_dict(), path)
    encoder = mimzoo.load(NAME, weights=path)
    assert encoder.info.weights.layout == "transformers"
    with torch.no_grad():
        ref = _as_hiera_model(pretraining)(pixel_values=images)
    _check(encoder, ref.last_hidden_state, ref.pooler_output, images)


def test_transformers_hiera_model_layout(tmp_path, images):
    from transformers import HieraModel

    hf = HieraModel(_hf_config()).eval()
    _randomise(hf, seed=12)
    torch.save(hf.state_dict(), tmp_path / "hiera_model.bin")
    encoder = mimzoo.load(NAME, weights=tmp_path / "hiera_model.bin")
    assert encoder.info.weights.layout == "transformers"
    with torch.no_grad():
        ref = hf(pixel_values=images)
    _check(encoder, ref.last_hidden_state, ref.pooler_output, images)


def test_mae_query_pooling_matches_the_pretraining_encoder(tmp_path, images):
    """With the MAE pretraining's q_pool=2 the encoder is HieraForPreTraining's, masking neutralised."""
    from mimzoo.encoders.build import build_variant
    from mimzoo.weights.convert import convert_and_load

    pretraining = _pretraining_model(seed=13, mask_ratio=0.0)  # every mask unit kept, in order
    entry = get_registry().model(NAME)
    variant = replace(entry.variant, model_kwargs={**entry.variant.model_kwargs, "q_pool": 2})
    encoder = build_variant(entry.method, variant).eval()
    convert_and_load(encoder.model, dict(pretraining.state_dict()), variant.layouts, source="hf", owner=NAME)
    with torch.no_grad():
        out = pretraining.hiera(pixel_values=images)
        assert bool(out.bool_masked_pos.all())  # all mask units visible
        tokens = encoder.forward_features(images)
    assert tokens.shape == out.last_hidden_state.shape == (images.shape[0], (IMG // 16) ** 2, DIMS[-1])
    assert (tokens - out.last_hidden_state).abs().max().item() < TOL


def test_timm_layout_safetensors(tmp_path, images):
    sd = official_sd(seed=3)
    timm_ref = timm_reference(sd)
    save_file({k: v.contiguous() for k, v in timm_ref.state_dict().items()}, str(tmp_path / "model.safetensors"))
    encoder = mimzoo.load(NAME, weights=tmp_path / "model.safetensors")
    assert encoder.info.weights.layout == "timm"
    with torch.no_grad():
        ref = hf_reference(sd)(pixel_values=images)
    _check(encoder, ref.last_hidden_state, ref.pooler_output, images)


def test_checkpoint_for_another_input_size_resamples_pos_embed(tmp_path):
    torch.save({"model_state": official_sd(seed=4)}, tmp_path / "ckpt.pth")
    encoder = mimzoo.load(NAME, weights=tmp_path / "ckpt.pth", img_size=96)
    assert encoder.model.pos_embed.shape == (1, (96 // 4) ** 2, EMBED)
    with torch.no_grad():
        tokens = encoder.forward_features(torch.randn(2, 3, 96, 96))
    assert tokens.shape == (2, (96 // 32) ** 2, DIMS[-1]) and torch.isfinite(tokens).all()


def test_fine_tuned_classifier_is_not_taken_for_an_encoder(tmp_path):
    sd = {k: v for k, v in official_sd().items() if not k.startswith(("multi_scale", "mask_token", "decoder_"))}
    sd["norm.weight"], sd["norm.bias"] = sd.pop("encoder_norm.weight"), sd.pop("encoder_norm.bias")
    sd["head.projection.weight"], sd["head.projection.bias"] = torch.zeros(10, DIMS[-1]), torch.zeros(10)
    torch.save({"model_state": sd}, tmp_path / "hiera_test_224.pth")  # an official mae_in1k_ft_in1k file
    with pytest.raises(WeightsError, match=r"2 unexpected \(head.fc.bias, head.fc.weight\)"):
        mimzoo.load(NAME, weights=tmp_path / "hiera_test_224.pth")


def test_wrong_shape_and_missing_key_fail_loudly(tmp_path):
    sd = official_sd()
    sd["blocks.2.proj.weight"] = torch.zeros(DIMS[2], DIMS[2])
    del sd["blocks.3.mlp.fc2.bias"]
    torch.save({"model_state": sd}, tmp_path / "bad.pth")
    expected = r"1 missing \(blocks.3.mlp.fc2.bias\).*blocks.2.proj.weight \(16, 16\) vs \(16, 8\)"
    with pytest.raises(WeightsError, match=expected):
        mimzoo.load(NAME, weights=tmp_path / "bad.pth")


def test_truncated_transformers_checkpoint_fails_loudly(tmp_path):
    sd = dict(_pretraining_model(seed=1).state_dict())
    del sd["hiera.encoder.stages.1.layers.0.attn.qkv.weight"]
    torch.save(sd, tmp_path / "partial.bin")
    with pytest.raises(WeightsError, match=r"1 missing \(blocks.1.attn.qkv.weight\)"):
        mimzoo.load(NAME, weights=tmp_path / "partial.bin")


def test_plus_in_a_model_name_is_accepted():
    """'mae-hiera-b+' follows the paper's B+; the contract's validate() accepts it (lower case, no spaces)."""
    entry = get_registry().model("mae-hiera-b+")
    assert entry.variant.arch == "hiera_base_plus_224"
    assert entry.variant.weights[1].repo_id == "facebook/hiera-base-plus-224-mae-hf"
