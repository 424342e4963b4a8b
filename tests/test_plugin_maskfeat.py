"""The first-party MaskFeat plugin: each checkpoint layout reproduces an independent forward.

- official: a PySlowFast ``MaskMViT`` (ViT mode) pretraining checkpoint written by hand from the key
  names in facebookresearch/SlowFast (``video_model_builder.py`` MViT, ``masked.py`` MaskMViT,
  ``attention.py``, ``head_helper.py`` MSSeparateHead), saved as a ``.pyth`` the way
  ``slowfast/utils/checkpoint.py`` ``save_checkpoint`` does, read through mimzoo's safe reader, and
  compared with a functional forward written from ``MViT.forward`` (no timm);
- timm: timm's own VisionTransformer with random weights, compared with timm's forward and with the
  same functional forward;
- wrong checkpoints (fine-tuned classifier, several prediction depths, a missing key) fail loudly;
- the recipe lives in the plugin: ``mimzoo pretrain maskfeat`` runs it, ``mimzoo list --taxonomy`` shows it.

Every tensor is random, LayerNorm scales around 1 and biases non-zero, so no check passes by symmetry.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from helpers import run_cli

import mimzoo
from mimzoo.errors import WeightsError
from mimzoo.registry import get_registry
from mimzoo.weights import read_checkpoint

TINY = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128)
GRID = TINY["img"] // TINY["patch"]
TOL = 1e-4
EPS = 1e-6  # PySlowFast's MViT: partial(nn.LayerNorm, eps=1e-6)
PT_URL = "https://dl.fbaipublicfiles.com/pyslowfast/masked_models/in1k_VIT_{}_MaskFeat_PT_epoch_01600.pyth"


# ---------------------------------------------------------------------------------------------
# an official checkpoint, by hand


def _random(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Distinctive random values: LayerNorm scales 1 +- noise, every other tensor (biases too) random."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        scale = k.endswith("weight") and len(s) == 1
        out[k] = torch.randn(s, generator=g) * 0.2 + (1.0 if scale else 0.0)
    return out


def official_state_dict(seed: int, *, separate_qkv: bool = False) -> dict[str, torch.Tensor]:
    """MaskMViT.state_dict() in ViT mode: encoder without `norm`, the HOG head, mask token, HOG filters."""
    d, p, m = TINY["dim"], TINY["patch"], TINY["mlp"]
    shapes = {"patch_embed.proj.weight": (d, 3, p, p), "patch_embed.proj.bias": (d,), "cls_token": (1, 1, d),
              "pos_embed": (1, 1 + GRID * GRID, d)}
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.proj.weight": (d, d),
                       b + "attn.proj.bias": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                       b + "mlp.fc1.weight": (m, d), b + "mlp.fc1.bias": (m,), b + "mlp.fc2.weight": (d, m),
                       b + "mlp.fc2.bias": (d,)})
        if separate_qkv:  # MVIT.SEPARATE_QKV / POOL_FIRST
            shapes.update({f"{b}attn.{n}.{w}": (d, d) if w == "weight" else (d,) for n in "qkv" for w in ("weight", "bias")})
        else:
            shapes.update({b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,)})
    # MSSeparateHead: transforms.0 = [LayerNorm], projections.0 = Linear(D, 3 ch x 9 bins x cells)
    shapes.update({"pred_head.transforms.0.0.weight": (d,), "pred_head.transforms.0.0.bias": (d,),
                   "pred_head.projections.0.weight": (27, d), "pred_head.projections.0.bias": (27,),
                   "mask_token": (1, 1, d)})
    sd = _random(shapes, seed)
    sobel = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    sd["hogs.0.weight_x"], sd["hogs.0.weight_y"] = sobel, sobel.transpose(2, 3).contiguous()  # HOGLayerC buffers
    return sd


def save_pyth(path, model_state: dict[str, torch.Tensor], *, zipfile: bool = True) -> None:
    """What PySlowFast's save_checkpoint writes: epoch, model_state, optimizer_state, cfg (YAML text), scaler_state."""
    adam = {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(3), "exp_avg_sq": torch.rand(3)}}
    checkpoint = {
        "epoch": 1599,
        "model_state": OrderedDict(model_state),
        "optimizer_state": {"state": adam, "param_groups": [{"lr": 1.6e-3, "weight_decay": 0.05, "params": [0]}]},
        "cfg": "MASK:\n  ENABLE: true\n  PRETRAIN_DEPTH: [1]\nMVIT:\n  PATCH_2D: true\n",
        "scaler_state": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                         "_growth_tracker": 0},
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zipfile)


# ---------------------------------------------------------------------------------------------
# the independent forward: PySlowFast MViT.forward in ViT mode, written without timm


def _attention(x: torch.Tensor, sd: dict, b: str) -> torch.Tensor:
    """MultiScaleAttention.forward with no pooling, no relative positions, no residual pooling."""
    n, length, d = x.shape
    h = TINY["heads"]
    if b + "attn.qkv.weight" in sd:
        qkv = F.linear(x, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(n, length, 3, h, -1).permute(2, 0, 3, 1, 4)
    else:
        q, k, v = (F.linear(x, sd[f"{b}attn.{c}.weight"], sd[f"{b}attn.{c}.bias"]).reshape(n, length, h, -1)
                   .permute(0, 2, 1, 3) for c in "qkv")
    attn = ((q * (d // h) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(n, -1, d)
    return F.linear(out, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])


def slowfast_tokens(sd: dict, images: torch.Tensor, final_norm: str = "pred_head.transforms.0.0.") -> torch.Tensor:
    """Patch embed, cls token, absolute positions, pre-norm blocks, then the final LayerNorm."""
    d = TINY["dim"]
    x = F.conv2d(images, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=TINY["patch"])
    x = x.flatten(2).transpose(1, 2)  # [N, L, D]
    x = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + sd["pos_embed"]
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        x = x + _attention(F.layer_norm(x, (d,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], EPS), sd, b)
        y = F.layer_norm(x, (d,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], EPS)
        x = x + F.linear(F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                         sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    return F.layer_norm(x, (d,), sd[final_norm + "weight"], sd[final_norm + "bias"], EPS)  # [N, 1 + L, D]


# ---------------------------------------------------------------------------------------------
# checks


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, TINY["img"], TINY["img"], generator=torch.Generator().manual_seed(7))


def _check_forward(encoder, expected_tokens: torch.Tensor, x: torch.Tensor) -> None:
    """Tokens match; pooled = mean of the normalised patch tokens (the cls token left out)."""
    with torch.no_grad():
        tokens, pooled = encoder.forward_features(x), encoder(x)
    assert tokens.shape == expected_tokens.shape == (x.shape[0], 1 + GRID * GRID, TINY["dim"])
    assert (tokens - expected_tokens).abs().max().item() < TOL
    assert (pooled - expected_tokens[:, 1:].mean(dim=1)).abs().max().item() < TOL


@pytest.mark.parametrize("separate_qkv, zipfile", [(False, True), (True, True), (False, False)],
                         ids=["qkv-zip", "separate-qkv-zip", "qkv-legacy-pickle"])
def test_official_pyth_matches_slowfast_forward(tmp_path, images, separate_qkv, zipfile):
    sd = official_state_dict(seed=1, separate_qkv=separate_qkv)
    path = tmp_path / "in1k_VIT_T_MaskFeat_PT_epoch_01600.pyth"
    save_pyth(path, sd, zipfile=zipfile)
    torch.load(path, weights_only=True)  # a .pyth is plain data: torch's weights-only reader accepts it
    assert set(read_checkpoint(path)) == set(sd)  # the safe reader unwraps model_state
    encoder = mimzoo.load("maskfeat-vit-test", weights=path)
    assert encoder.info.weights.layout == "official"
    assert encoder.info.weights.tensors == 4 + 12 * TINY["depth"] + 2  # cls, pos, patch w/b, blocks, norm w/b
    with torch.no_grad():
        expected = slowfast_tokens(sd, images)
    _check_forward(encoder, expected, images)


def test_timm_layout_matches_timm_and_slowfast_forward(tmp_path, images):
    from safetensors.torch import save_file
    from timm.models.vision_transformer import VisionTransformer

    ref = VisionTransformer(img_size=TINY["img"], patch_size=TINY["patch"], embed_dim=TINY["dim"], depth=TINY["depth"],
                            num_heads=TINY["heads"], global_pool="avg", fc_norm=False, num_classes=0).eval()
    sd = _random({k: tuple(v.shape) for k, v in ref.state_dict().items()}, seed=3)
    ref.load_state_dict(sd)
    save_file(sd, str(tmp_path / "model.safetensors"))
    encoder = mimzoo.load("maskfeat-vit-test", weights=tmp_path / "model.safetensors")
    assert encoder.info.weights.layout == "timm"
    with torch.no_grad():
        expected = slowfast_tokens(sd, images, final_norm="norm.")
        assert (ref.forward_features(images) - expected).abs().max().item() < TOL  # the two references agree
        assert (ref(images) - expected[:, 1:].mean(dim=1)).abs().max().item() < TOL
    _check_forward(encoder, expected, images)


def test_one_frame_conv3d_stem_is_squeezed(tmp_path, images):
    sd = official_state_dict(seed=2)
    sd["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"].unsqueeze(2)  # PATCH_2D off: [D, 3, 1, p, p]
    save_pyth(tmp_path / "c3d.pyth", sd)
    encoder = mimzoo.load("maskfeat-vit-test", weights=tmp_path / "c3d.pyth")
    with torch.no_grad():
        expected = slowfast_tokens({**sd, "patch_embed.proj.weight": sd["patch_embed.proj.weight"].squeeze(2)}, images)
    _check_forward(encoder, expected, images)


def _finetuned(sd: dict) -> dict:
    """A PySlowFast fine-tuned ViT: `norm` in place, a classifier `head.projection`, no HOG head."""
    out = {k: v for k, v in sd.items() if not k.startswith(("pred_head.", "mask_token", "hogs."))}
    out.update({"norm.weight": torch.ones(TINY["dim"]), "norm.bias": torch.zeros(TINY["dim"]),
                "head.projection.weight": torch.zeros(10, TINY["dim"]), "head.projection.bias": torch.zeros(10)})
    return out


@pytest.mark.parametrize("case, match", [
    ("finetuned", r"fine-tuned PySlowFast classifier \(head.projection\).*pass in1k_VIT_\*_MaskFeat_PT"),
    ("two-depths", r"predicts from 2 depths \(pred_head.transforms.1\).*one MASK.PRETRAIN_DEPTH"),
    ("missing-key", r"official layout.*1 missing \(blocks.1.mlp.fc2.bias\)"),
])
def test_wrong_checkpoints_fail_loudly(tmp_path, case, match):
    sd = official_state_dict(seed=4)
    if case == "finetuned":
        sd = _finetuned(sd)
    elif case == "two-depths":
        sd.update({"pred_head.transforms.1.0.weight": torch.ones(TINY["dim"]),
                   "pred_head.transforms.1.0.bias": torch.zeros(TINY["dim"])})
    else:
        del sd["blocks.1.mlp.fc2.bias"]
    save_pyth(tmp_path / f"{case}.pyth", sd)
    with pytest.raises(WeightsError, match=match):
        mimzoo.load("maskfeat-vit-test", weights=tmp_path / f"{case}.pyth")


def test_registered_first_party_with_the_official_files():
    registry = get_registry()
    method = registry.method("maskfeat")
    assert registry.model("maskfeat-vit-b").distribution == "mimzoo"
    assert type(method.recipe).__module__ == "mimzoo.pretrain.recipe" and method.recipe.method == "maskfeat"
    public = {v.name: v for v in method.variants if not v.test_only}
    assert set(public) == {"maskfeat-vit-b", "maskfeat-vit-l"}
    for size, top1 in (("B", 84.0), ("L", 85.7)):
        v = public[f"maskfeat-vit-{size.lower()}"]
        source = v.weight_source()
        assert (source.url, source.layout, source.repo_id) == (PT_URL.format(size), "official", None)
        assert (v.reference.finetune_top1, v.reference.epochs, v.pooling) == (top1, 1600, "avg")
        assert v.model_kwargs["fc_norm"] is False


def test_pretrain_runs_the_plugin_recipe_and_taxonomy_lists_it(tmp_path):
    out = tmp_path / "run"
    result = run_cli("pretrain", "maskfeat", "--arch", "maskfeat-vit-test", "--data", "digits", "--epochs", "1",
                     "--max-steps", "2", "--batch-size", "16", "--device", "cpu", "--threads", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    recipe = json.loads((out / "config.json").read_text())["mimzoo"]["recipe"]
    assert (recipe["method"], recipe["target"]["kind"], recipe["loss"]["kind"]) == ("maskfeat", "hog", "mse")
    assert (recipe["masking"]["kind"], recipe["masking"]["ratio"], recipe["masking"]["min_block"]) == ("blockwise", 0.4, 15)
    assert (recipe["optim"]["blr"], recipe["optim"]["clip_grad"]) == (2e-4, 0.02)
    assert mimzoo.load(str(out)).num_features == TINY["dim"]
    rows = json.loads(run_cli("list", "--taxonomy", "--json").stdout)
    mf = next(r for r in rows if "MaskFeat" in json.dumps(r))
    assert (mf["family"], mf["masking"], mf["target"], mf["objective"]) == ("reconstruction", "blockwise 40%", "hog", "mse")
