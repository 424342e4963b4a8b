"""The FCMAE plugin: each ConvNeXt V2 checkpoint layout loads into the encoder and matches an independent model.

- official (facebookresearch/ConvNeXt-V2 ``pt_only`` files): random tensors under the exact dense key
  names and shapes of the official ``models/convnextv2.py`` (GRN as ``[1, 1, 1, C]``, no final norm),
  compared with a functional ConvNeXt V2 forward written below from that file and with timm's
  ConvNeXt loaded through timm's own FB checkpoint filter;
- minkowski (a MinkowskiEngine FCMAE training checkpoint of the official ``main_pretrain.py``): made
  from the official tensors with MinkowskiEngine's names and shapes, checked against a transcription of
  the official ``remap_checkpoint_keys`` and then against the official-layout load;
- transformers: ``ConvNextV2Model`` as a state dict, a ``save_pretrained`` file and with the old
  ``grn.gamma/beta`` names, compared with transformers' forward (tokens = last feature map, pooled =
  ``pooler_output``). transformers' final LayerNorm uses eps 1e-12 and timm 1e-6: tolerance 1e-4;
- timm: the encoder's own state dict, and a ``timm/convnextv2_*.fcmae``-like file without ``head.norm``.

A checkpoint without a final norm gets the identity-affine ``head.norm``: the pooled output is then the
parameter-free LayerNorm of the averaged last feature map, checked explicitly.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import mimzoo
from mimzoo.errors import WeightsError
from mimzoo.registry import get_registry

NAME = "fcmae-convnextv2-test"
DEPTHS, DIMS, IMG = (1, 1, 1, 1), (4, 8, 12, 16), 64
DEC = 8  # decoder width of the FCMAE checkpoints below (512 in the official models)
TOL = 1e-4
# the LayerNorm scales of the official layout: stem norm, downsampling norms, block norms
LN_SCALE = re.compile(r"^(downsample_layers\.0\.1|downsample_layers\.[123]\.0|stages\.\d+\.\d+\.norm)\.weight$")


# ---------------------------------------------------------------------------------------------
# official layout, written out from facebookresearch/ConvNeXt-V2 models/convnextv2.py
# ---------------------------------------------------------------------------------------------


def official_shapes() -> dict[str, tuple[int, ...]]:
    """The dense ConvNeXtV2 encoder as the pt_only files hold it: no final ``norm``, no ``head``."""
    shapes: dict[str, tuple[int, ...]] = {
        "downsample_layers.0.0.weight": (DIMS[0], 3, 4, 4), "downsample_layers.0.0.bias": (DIMS[0],),
        "downsample_layers.0.1.weight": (DIMS[0],), "downsample_layers.0.1.bias": (DIMS[0],),
    }
    for s, (c, depth) in enumerate(zip(DIMS, DEPTHS)):
        if s > 0:
            d = f"downsample_layers.{s}."
            shapes.update({d + "0.weight": (DIMS[s - 1],), d + "0.bias": (DIMS[s - 1],),
                           d + "1.weight": (c, DIMS[s - 1], 2, 2), d + "1.bias": (c,)})
        for b in range(depth):
            p = f"stages.{s}.{b}."
            shapes.update({p + "dwconv.weight": (c, 1, 7, 7), p + "dwconv.bias": (c,), p + "norm.weight": (c,),
                           p + "norm.bias": (c,), p + "pwconv1.weight": (4 * c, c), p + "pwconv1.bias": (4 * c,),
                           p + "grn.gamma": (1, 1, 1, 4 * c), p + "grn.beta": (1, 1, 1, 4 * c),
                           p + "pwconv2.weight": (c, 4 * c), p + "pwconv2.bias": (c,)})
    return shapes


def official_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the official layout; LayerNorm scales around 1, GRN parameters non-zero."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.2 + (1.0 if LN_SCALE.match(k) else 0.0)
            for k, shape in official_shapes().items()}


def reference_features(sd: dict[str, torch.Tensor], x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The ConvNeXtV2 forward (before pooling) written from the official code, independent of timm."""

    def ln_channels_first(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(t.permute(0, 2, 3, 1), w.shape, w, b, eps).permute(0, 3, 1, 2)

    t = F.conv2d(x, sd["downsample_layers.0.0.weight"], sd["downsample_layers.0.0.bias"], stride=4)
    t = ln_channels_first(t, sd["downsample_layers.0.1.weight"], sd["downsample_layers.0.1.bias"])
    for s, depth in enumerate(DEPTHS):
        if s > 0:
            d = f"downsample_layers.{s}."
            t = ln_channels_first(t, sd[d + "0.weight"], sd[d + "0.bias"])
            t = F.conv2d(t, sd[d + "1.weight"], sd[d + "1.bias"], stride=2)
        for b in range(depth):
            p = f"stages.{s}.{b}."
            y = F.conv2d(t, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=t.shape[1])
            y = F.layer_norm(y.permute(0, 2, 3, 1), (t.shape[1],), sd[p + "norm.weight"], sd[p + "norm.bias"], eps)
            y = F.gelu(F.linear(y, sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"]))
            gx = torch.norm(y, p=2, dim=(1, 2), keepdim=True)  # GRN: global L2 per channel ...
            nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)  # ... divided by its channel mean
            y = sd[p + "grn.gamma"] * (y * nx) + sd[p + "grn.beta"] + y
            y = F.linear(y, sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"])
            t = t + y.permute(0, 3, 1, 2)
    return t


def reference_pooled(features: torch.Tensor) -> torch.Tensor:
    """Global average, then a LayerNorm with identity affine: what the official fine-tuning starts from."""
    return F.layer_norm(features.mean(dim=(-2, -1)), (features.shape[1],), eps=1e-6)


def timm_reference(sd: dict[str, torch.Tensor], **extra) -> torch.nn.Module:
    """timm's ConvNeXt V2 loaded through timm's own FB filter, non-strict as timm loads fcmae weights."""
    import timm
    from timm.models.convnext import checkpoint_filter_fn

    m = timm.create_model("convnextv2_atto", num_classes=0, global_pool="avg", depths=DEPTHS, dims=DIMS, **extra)
    missing, unexpected = m.load_state_dict(checkpoint_filter_fn({"model": sd}, m), strict=False)
    assert sorted(missing) == ["head.norm.bias", "head.norm.weight"] and not unexpected
    return m.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))


def _check(encoder, features: torch.Tensor, pooled: torch.Tensor, x: torch.Tensor) -> None:
    with torch.no_grad():
        tokens, emb = encoder.forward_features(x), encoder(x)
    # the encoder contract flattens the [N, C, H, W] map row-major into [N, H*W, C] tokens
    assert features.shape == (x.shape[0], DIMS[-1], IMG // 32, IMG // 32)
    assert tokens.shape == (x.shape[0], (IMG // 32) ** 2, DIMS[-1])
    assert (tokens - features.flatten(2).transpose(1, 2)).abs().max().item() < TOL
    assert emb.shape == pooled.shape == (x.shape[0], DIMS[-1])
    assert (emb - pooled).abs().max().item() < TOL


def test_official_layout(tmp_path, images):
    sd = official_sd()
    torch.save({"model": sd}, tmp_path / "convnextv2_test_1k_64_fcmae.pt")  # the pt_only container
    encoder = mimzoo.load(NAME, weights=tmp_path / "convnextv2_test_1k_64_fcmae.pt")
    assert encoder.info.weights.layout == "official"
    with torch.no_grad():
        ref = reference_features(sd, images)
        timm_ref = timm_reference(sd)
        assert (timm_ref.forward_features(images) - ref).abs().max().item() < 1e-5  # the references agree
        assert (timm_ref(images) - reference_pooled(ref)).abs().max().item() < 1e-5
    _check(encoder, ref, reference_pooled(ref), images)


def test_missing_final_norm_is_identity_not_random(tmp_path, images):
    torch.save({"model": official_sd(seed=1)}, tmp_path / "pt_only.pt")
    encoder = mimzoo.load(NAME, weights=tmp_path / "pt_only.pt")
    norm = encoder.model.head.norm
    assert torch.equal(norm.weight, torch.ones(DIMS[-1])) and torch.equal(norm.bias, torch.zeros(DIMS[-1]))
    with torch.no_grad():
        emb = encoder(images)
    assert emb.mean(dim=1).abs().max().item() < 1e-5  # a LayerNorm without affine: zero mean per image
    assert (emb.var(dim=1, unbiased=False) - 1).abs().max().item() < 1e-3  # ... and unit variance


def test_official_final_norm_is_kept(tmp_path, images):
    sd = official_sd(seed=2)
    sd["norm.weight"], sd["norm.bias"] = torch.full((DIMS[-1],), 2.0), torch.full((DIMS[-1],), 0.5)
    torch.save({"model": sd}, tmp_path / "with_norm.pt")
    encoder = mimzoo.load(NAME, weights=tmp_path / "with_norm.pt")
    with torch.no_grad():
        expected = 2.0 * reference_pooled(reference_features(sd, images)) + 0.5
        assert (encoder(images) - expected).abs().max().item() < TOL


def fcmae_decoder_sd(seed: int = 3) -> dict[str, torch.Tensor]:
    """What models/fcmae.py adds beside the encoder: 1x1 proj, mask token, one dense block, predictor."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"proj.weight": (DEC, DIMS[-1], 1, 1), "proj.bias": (DEC,), "mask_token": (1, DEC, 1, 1),
              "decoder.0.dwconv.weight": (DEC, 1, 7, 7), "decoder.0.dwconv.bias": (DEC,),
              "decoder.0.norm.weight": (DEC,), "decoder.0.norm.bias": (DEC,),
              "decoder.0.pwconv1.weight": (4 * DEC, DEC), "decoder.0.pwconv1.bias": (4 * DEC,),
              "decoder.0.grn.gamma": (1, 1, 1, 4 * DEC), "decoder.0.grn.beta": (1, 1, 1, 4 * DEC),
              "decoder.0.pwconv2.weight": (DEC, 4 * DEC), "decoder.0.pwconv2.bias": (DEC,),
              "pred.weight": (32 * 32 * 3, DEC, 1, 1), "pred.bias": (32 * 32 * 3,)}
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def test_dense_fcmae_state_dict_drops_the_decoder(tmp_path, images):
    sd = official_sd(seed=4)
    full = {**{f"encoder.{k}": v for k, v in sd.items()}, **fcmae_decoder_sd()}
    torch.save({"model": full, "epoch": 1599}, tmp_path / "checkpoint-1599.pth")
    encoder = mimzoo.load(NAME, weights=tmp_path / "checkpoint-1599.pth")
    assert encoder.info.weights.layout == "official"
    with torch.no_grad():
        ref = reference_features(sd, images)
    _check(encoder, ref, reference_pooled(ref), images)


# ---------------------------------------------------------------------------------------------
# MinkowskiEngine layout (official main_pretrain.py with models/convnextv2_sparse.py, D=2)
# ---------------------------------------------------------------------------------------------


def to_minkowski(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official tensors as SparseConvNeXtV2 holds them: kernels [k*k, ...] (flat offset w*k + h),
    MinkowskiLayerNorm's ``.ln``, MinkowskiLinear's ``.linear``, [1, C] biases and GRN parameters."""
    out = {}
    for k, v in sd.items():
        sparse_conv = re.match(r"^(downsample_layers\.[123]\.1|stages\.\d+\.\d+\.dwconv)\.(weight|bias)$", k)
        if sparse_conv and k.endswith("weight"):
            kk = v.shape[-1]
            if "dwconv" in k:  # [C, 1, k, k] -> [k*k, C]
                v = v[:, 0].permute(2, 1, 0).reshape(kk * kk, v.shape[0])
            else:  # [O, I, k, k] -> [k*k, I, O]
                v = v.permute(3, 2, 1, 0).reshape(kk * kk, v.shape[1], v.shape[0])
            k = k[: -len("weight")] + "kernel"
        elif sparse_conv:
            v = v.reshape(1, -1)
        elif re.match(r"^downsample_layers\.[123]\.0\.", k) or re.match(r"^stages\.\d+\.\d+\.norm\.", k):
            k = k.replace(".weight", ".ln.weight").replace(".bias", ".ln.bias")
        elif re.match(r"^stages\.\d+\.\d+\.pwconv[12]\.", k):
            k = k.replace(".weight", ".linear.weight").replace(".bias", ".linear.bias")
        elif ".grn." in k:
            v = v.reshape(1, -1)
        out[f"encoder.{k}"] = v
    return out


def official_remap(ckpt: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transcription of the official utils.remap_checkpoint_keys, after main_finetune.py drops the decoder."""
    ckpt = {k: v for k, v in ckpt.items() if not any(w in k for w in ("decoder", "mask_token", "proj", "pred"))}
    new = {}
    for k, v in ckpt.items():
        if k.startswith("encoder"):
            k = ".".join(k.split(".")[1:])
        if k.endswith("kernel"):
            k = ".".join(k.split(".")[:-1]) + ".weight"
            if v.dim() == 3:
                kv, in_dim, out_dim = v.shape
                ks = int(math.sqrt(kv))
                new[k] = v.permute(2, 1, 0).reshape(out_dim, in_dim, ks, ks).transpose(3, 2)
            else:
                kv, dim = v.shape
                ks = int(math.sqrt(kv))
                new[k] = v.permute(1, 0).reshape(dim, 1, ks, ks).transpose(3, 2)
            continue
        if "ln" in k or "linear" in k:
            parts = k.split(".")
            parts.pop(-2)
            k = ".".join(parts)
        new[k] = v
    for k, v in new.items():
        if k.endswith("bias") and v.dim() != 1:
            new[k] = v.reshape(-1)
        elif "grn" in k:
            new[k] = v.unsqueeze(0).unsqueeze(1)
    return new


def test_minkowski_layout(tmp_path, images):
    sd = official_sd(seed=5)
    mink = {**to_minkowski(sd), **fcmae_decoder_sd()}
    remapped = official_remap(mink)  # the test's Minkowski file reads back as the official code reads it
    assert remapped.keys() == sd.keys() and all(torch.equal(remapped[k], sd[k]) for k in sd)
    torch.save({"model": mink, "epoch": 799}, tmp_path / "checkpoint-799.pth")
    encoder = mimzoo.load(NAME, weights=tmp_path / "checkpoint-799.pth")
    assert encoder.info.weights.layout == "minkowski"
    dense = mimzoo.load(NAME, weights=_saved(tmp_path / "dense.pt", sd))
    for k, v in dense.model.state_dict().items():
        assert torch.equal(v, encoder.model.state_dict()[k]), k
    with torch.no_grad():
        ref = reference_features(sd, images)
    _check(encoder, ref, reference_pooled(ref), images)


def test_minkowski_kernel_that_is_not_square_fails(tmp_path):
    mink = to_minkowski(official_sd())
    mink["encoder.stages.0.0.dwconv.kernel"] = torch.zeros(48, DIMS[0])
    with pytest.raises(WeightsError, match=r"dwconv.kernel has shape \(48, 4\).*square"):
        mimzoo.load(NAME, weights=_saved(tmp_path / "bad.pth", mink))


def _saved(path, sd):
    torch.save({"model": sd}, path)
    return path


# ---------------------------------------------------------------------------------------------
# transformers layout (ConvNextV2Model)
# ---------------------------------------------------------------------------------------------


def _hf_model(seed: int):
    from transformers import ConvNextV2Config, ConvNextV2Model

    hf = ConvNextV2Model(ConvNextV2Config(depths=list(DEPTHS), hidden_sizes=list(DIMS), image_size=IMG)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # everything random (GRN too), LayerNorm scales around 1
        for name, p in hf.named_parameters():
            scale_one = ("layernorm" in name and name.endswith("weight")) or "downsampling_layer.0.weight" in name
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if scale_one else 0.0))
    return hf


@pytest.mark.parametrize("saved_as", ["state-dict", "save-pretrained", "old-grn-names"])
def test_transformers_layout(tmp_path, images, saved_as):
    hf = _hf_model(seed=11)
    if saved_as == "save-pretrained":
        hf.save_pretrained(tmp_path)
        path = tmp_path / "model.safetensors"
        assert any(".grn." in k for k in load_file(str(path)))
    else:
        sd = dict(hf.state_dict())
        if saved_as == "old-grn-names":  # Hub files written before transformers PR #23122
            sd = {k.replace("grn.weight", "grn.gamma").replace("grn.bias", "grn.beta"): v for k, v in sd.items()}
        path = tmp_path / "pytorch_model.bin"
        torch.save(sd, path)
    encoder = mimzoo.load(NAME, weights=path)
    assert encoder.info.weights.layout == "transformers"
    with torch.no_grad():
        out = hf(pixel_values=images)
    _check(encoder, out.last_hidden_state, out.pooler_output, images)


def test_fine_tuned_classifier_is_not_taken_for_an_encoder(tmp_path):
    from transformers import ConvNextV2Config, ConvNextV2ForImageClassification

    hf = ConvNextV2ForImageClassification(ConvNextV2Config(depths=list(DEPTHS), hidden_sizes=list(DIMS), num_labels=5))
    with pytest.raises(WeightsError, match=r"2 unexpected \(head.fc.bias, head.fc.weight\)"):
        mimzoo.load(NAME, weights=_saved(tmp_path / "ft.pth", dict(hf.state_dict())))


def test_truncated_transformers_checkpoint_fails_loudly(tmp_path):
    sd = dict(_hf_model(seed=1).state_dict())
    del sd["encoder.stages.2.layers.0.pwconv2.weight"]
    torch.save(sd, tmp_path / "partial.bin")
    with pytest.raises(WeightsError, match=r"1 missing \(stages.2.blocks.0.mlp.fc2.weight\)"):
        mimzoo.load(NAME, weights=tmp_path / "partial.bin")


# ---------------------------------------------------------------------------------------------
# timm layout, wider MLPs, failures
# ---------------------------------------------------------------------------------------------


def test_timm_layout_with_and_without_head_norm(tmp_path, images):
    sd = official_sd(seed=6)
    timm_ref = timm_reference(sd)
    own = {k: v.contiguous() for k, v in timm_ref.state_dict().items()}
    save_file(own, str(tmp_path / "model.safetensors"))
    encoder = mimzoo.load(NAME, weights=tmp_path / "model.safetensors")
    assert encoder.info.weights.layout == "timm"
    with torch.no_grad():
        ref = reference_features(sd, images)
    _check(encoder, ref, reference_pooled(ref), images)
    no_norm = {k: v for k, v in own.items() if not k.startswith("head.norm.")}
    save_file(no_norm, str(tmp_path / "no_norm.safetensors"))
    again = mimzoo.load(NAME, weights=tmp_path / "no_norm.safetensors")
    _check(again, ref, reference_pooled(ref), images)


def test_linear_mlp_models_load_the_same_checkpoint(images):
    """Tiny..Huge build the MLP from Linear layers (2-D weights), Atto..Nano from 1x1 convs (4-D)."""
    from mimzoo.encoders.build import build_variant
    from mimzoo.weights.convert import convert_and_load

    entry = get_registry().model(NAME)
    variant = replace(entry.variant, model_kwargs={**entry.variant.model_kwargs, "conv_mlp": False})
    encoder = build_variant(entry.method, variant).eval()
    assert encoder.model.stages[0].blocks[0].mlp.fc1.weight.ndim == 2
    sd = official_sd(seed=7)
    convert_and_load(encoder.model, dict(sd), variant.layouts, source="official", owner=NAME)
    with torch.no_grad():
        ref = reference_features(sd, images)
    _check(encoder, ref, reference_pooled(ref), images)


def test_wrong_shape_and_missing_key_fail_loudly(tmp_path):
    sd = official_sd()
    sd["stages.1.0.pwconv1.weight"] = torch.zeros(4 * DIMS[1], DIMS[0])
    del sd["stages.3.0.grn.beta"]
    with pytest.raises(WeightsError, match=r"1 missing \(stages.3.blocks.0.mlp.grn.bias\).*"
                                           r"stages.1.blocks.0.mlp.fc1.weight \(32, 4\) vs \(32, 8, 1, 1\)"):
        mimzoo.load(NAME, weights=_saved(tmp_path / "bad.pt", sd))
