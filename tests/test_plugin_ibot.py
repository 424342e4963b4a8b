"""The iBOT plugin: each checkpoint layout loads the teacher and reproduces the official ViT.

The reference is a forward written here from bytedance/ibot ``models/vision_transformer.py``
(``prepare_tokens``: conv patch embedding, [CLS] prepended, ``pos_embed`` added; ``Block``:
pre-norm attention with its own qkv reshape and an exact-GELU MLP; final LayerNorm, eps 1e-6),
with no timm code. Weights are random with every tensor distinctive: LayerNorm scales around 1,
every bias, the class token and the whole position table drawn at random.

- official ``checkpoint_teacher.pth`` (``{'state_dict': teacher backbone}``);
- official full ``checkpoint.pth`` (``student`` under DDP's ``module.backbone.`` with ``masked_embed``
  and a head, ``teacher`` under ``backbone.`` with a head, optimiser state, loss centres, an argparse
  ``args``): the teacher loads, never the student;
- timm: a timm ``VisionTransformer`` state dict (with a 10-class head, dropped);
- a student backbone file and a checkpoint without a teacher are refused.

Pooled outputs are checked for both poolings the zoo uses: ``token-avg`` (ViT-B/L: [CLS] + mean
patch token, the official linear protocol's ``avgpool_patchtokens=2``) and ``token`` (ViT-S).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import mimzoo
from mimzoo.encoders.build import build_variant
from mimzoo.errors import WeightsError
from mimzoo.registry import get_registry
from mimzoo.weights import convert_and_load, read_checkpoint

TINY = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128, out=64, hidden=48, bottleneck=16)
GRID = TINY["img"] // TINY["patch"]
TOL = 1e-4


def vit_shapes() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of the official iBOT VisionTransformer (qkv_bias=True, no layer scale)."""
    d, p, m = TINY["dim"], TINY["patch"], TINY["mlp"]
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, GRID * GRID + 1, d), "patch_embed.proj.weight": (d, 3, p, p),
              "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,)}
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.qkv.weight": (3 * d, d),
                       b + "attn.qkv.bias": (3 * d,), b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                       b + "norm2.weight": (d,), b + "norm2.bias": (d,), b + "mlp.fc1.weight": (m, d),
                       b + "mlp.fc1.bias": (m,), b + "mlp.fc2.weight": (d, m), b + "mlp.fc2.bias": (d,)})
    return shapes


def head_shapes() -> dict[str, tuple[int, ...]]:
    """iBOTHead (3-layer MLP to a bottleneck, weight-normalised prototypes; shared head)."""
    d, h, bn, k = TINY["dim"], TINY["hidden"], TINY["bottleneck"], TINY["out"]
    return {"mlp.0.weight": (h, d), "mlp.0.bias": (h,), "mlp.2.weight": (h, h), "mlp.2.bias": (h,),
            "mlp.4.weight": (bn, h), "mlp.4.bias": (bn,), "last_layer.weight_g": (k, 1),
            "last_layer.weight_v": (k, bn)}


def randomise(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        scale = k.endswith("weight") and ("norm" in k.rsplit(".", 2)[-2])
        out[k] = torch.randn(s, generator=g) * (0.1 if scale else 0.3) + (1.0 if scale else 0.0)
    return out


def official_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """bytedance/ibot VisionTransformer.forward(return_all_tokens=True), no mask, at the trained size."""
    d, h = TINY["dim"], TINY["heads"]
    b = x.shape[0]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=TINY["patch"])
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t], dim=1) + sd["pos_embed"]
    for i in range(TINY["depth"]):
        p = f"blocks.{i}."
        y = F.layer_norm(t, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        n = y.shape[1]
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).reshape(b, n, 3, h, d // h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (d // h) ** -0.5).softmax(dim=-1)
        y = F.linear((attn @ v).transpose(1, 2).reshape(b, n, d), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        t = t + y
        y = F.layer_norm(t, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        y = F.linear(F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        t = t + y
    return F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], 1e-6)


def linear_protocol_features(tokens: torch.Tensor) -> torch.Tensor:
    """eval_linear.py with n_last_blocks=1, avgpool_patchtokens=2: norm(x)[:, 0] ++ norm(x)[:, 1:].mean(1)."""
    return torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=-1)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, TINY["img"], TINY["img"], generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def teacher():
    return randomise(vit_shapes(), seed=1)


@pytest.fixture(scope="module")
def student():
    sd = randomise(vit_shapes(), seed=2)
    sd["masked_embed"] = torch.randn(1, TINY["dim"], generator=torch.Generator().manual_seed(3))
    return sd


def full_checkpoint(teacher: dict, student: dict) -> dict:
    """What main_ibot.py saves: DDP student, plain MultiCropWrapper teacher, both with their heads."""
    heads = {"s": randomise(head_shapes(), 4), "t": randomise(head_shapes(), 5)}
    return {
        "student": {**{f"module.backbone.{k}": v for k, v in student.items()},
                    **{f"module.head.{k}": v for k, v in heads["s"].items()}},
        "teacher": {**{f"backbone.{k}": v for k, v in teacher.items()},
                    **{f"head.{k}": v for k, v in heads["t"].items()}},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}},
                      "param_groups": [{"lr": 5e-4, "weight_decay": 0.04, "params": [0]}]},
        "epoch": 800,
        "args": argparse.Namespace(arch="vit_small", out_dim=8192, shared_head=True),
        "ibot_loss": {"center": torch.randn(1, TINY["out"]), "center2": torch.randn(1, 1, TINY["out"])},
        "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                        "_growth_tracker": 0},
    }


def _same(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return own.keys() == sd.keys() and all(torch.equal(own[k], sd[k]) for k in sd)


def _check_forward(encoder, sd: dict[str, torch.Tensor], x: torch.Tensor) -> None:
    """Tokens equal the official forward; the pooled output equals the official linear features."""
    ref = official_tokens(sd, x)
    with torch.no_grad():
        tokens, pooled = encoder.forward_features(x), encoder(x)
    assert tokens.shape == ref.shape == (x.shape[0], GRID * GRID + 1, TINY["dim"])
    assert (tokens - ref).abs().max().item() < TOL
    expected = linear_protocol_features(ref) if encoder.info.pooling == "token-avg" else ref[:, 0]
    assert pooled.shape == expected.shape and (pooled - expected).abs().max().item() < TOL


def _token_pooled(sd: dict[str, torch.Tensor], layout: str | None = None):
    """The tiny variant pooling the last [CLS] only (as ibot-vit-s16 does), loaded from `sd`."""
    method = get_registry().method("ibot")
    variant = replace(method.variant("ibot-vit-test"), pooling="token")
    encoder = build_variant(method, variant).eval()
    convert_and_load(encoder.model, sd, variant.layouts, source="test", owner=variant.name, expected_layout=layout)
    return encoder


# ---------------------------------------------------------------------------------------------


def test_teacher_backbone_file_matches_the_official_forward(tmp_path, teacher, images):
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": teacher}, path)
    encoder = mimzoo.load("ibot-vit-test", pretrained=False, weights=path)
    assert _same(encoder.model, teacher) and encoder.num_features == 2 * TINY["dim"]
    _check_forward(encoder, teacher, images)
    _check_forward(_token_pooled(read_checkpoint(path), "official"), teacher, images)


def test_full_checkpoint_loads_the_teacher_never_the_student(tmp_path, teacher, student, images):
    path = tmp_path / "checkpoint.pth"
    torch.save(full_checkpoint(teacher, student), path)
    encoder = mimzoo.load("ibot-vit-test", pretrained=False, weights=path)
    assert encoder.info.weights.layout == "official"
    assert _same(encoder.model, teacher)
    plain_student = {k: v for k, v in student.items() if k != "masked_embed"}
    assert not _same(encoder.model, plain_student)
    _check_forward(encoder, teacher, images)
    _check_forward(_token_pooled(read_checkpoint(path)), teacher, images)
    # a teacher that was DDP-wrapped too (module.backbone.) loads the same
    ddp = full_checkpoint(teacher, student)
    ddp["teacher"] = {f"module.{k}": v for k, v in ddp["teacher"].items()}
    torch.save(ddp, tmp_path / "ddp.pth")
    assert _same(mimzoo.load("ibot-vit-test", pretrained=False, weights=tmp_path / "ddp.pth").model, teacher)


def test_timm_state_dict_matches_the_official_forward(tmp_path, teacher, images):
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=TINY["img"], patch_size=TINY["patch"], embed_dim=TINY["dim"], depth=TINY["depth"],
                            num_heads=TINY["heads"], num_classes=10)  # a hand conversion into a model with a head
    missing = vit.load_state_dict(teacher, strict=False)
    assert set(missing.missing_keys) == {"head.weight", "head.bias"} and not missing.unexpected_keys
    torch.save(vit.state_dict(), tmp_path / "ibot_timm.pth")
    encoder = mimzoo.load("ibot-vit-test", pretrained=False, weights=tmp_path / "ibot_timm.pth")
    assert encoder.info.weights.layout == "timm" and _same(encoder.model, teacher)
    _check_forward(encoder, teacher, images)
    with torch.no_grad():  # timm's own forward agrees with the official one too
        assert (vit.forward_features(images) - official_tokens(teacher, images)).abs().max().item() < TOL
    _check_forward(_token_pooled(vit.state_dict(), "timm"), teacher, images)


def test_student_backbone_is_refused_with_a_pointer_to_the_teacher(tmp_path, student):
    torch.save({"state_dict": student}, tmp_path / "checkpoint_student.pth")
    with pytest.raises(WeightsError, match="masked_embed, so it is a student.*checkpoint_teacher.pth"):
        mimzoo.load("ibot-vit-test", pretrained=False, weights=tmp_path / "checkpoint_student.pth")


def test_checkpoint_without_a_teacher_is_refused(tmp_path, teacher, student):
    ckpt = full_checkpoint(teacher, student)
    del ckpt["teacher"]
    torch.save(ckpt, tmp_path / "student_only.pth")
    with pytest.raises(WeightsError, match="no teacher backbone"):
        mimzoo.load("ibot-vit-test", pretrained=False, weights=tmp_path / "student_only.pth")


def test_missing_or_misshaped_tensor_fails_loudly(tmp_path, teacher):
    broken = {k: v for k, v in teacher.items() if k != "blocks.1.mlp.fc2.bias"}
    torch.save({"state_dict": broken}, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing"):
        mimzoo.load("ibot-vit-test", pretrained=False, weights=tmp_path / "missing.pth")
    wrong = dict(teacher, **{"norm.weight": torch.ones(TINY["dim"] + 1)})
    torch.save({"state_dict": wrong}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError):
        mimzoo.load("ibot-vit-test", pretrained=False, weights=tmp_path / "wrong.pth")


def test_public_variants_carry_the_official_numbers_and_pooling():
    method = get_registry().method("ibot")
    public = {v.name: v for v in method.variants if not v.test_only}
    assert set(public) == {"ibot-vit-s16", "ibot-vit-b16", "ibot-vit-l16"}
    numbers = {n: (v.reference.knn_top1, v.reference.linear_top1, v.reference.finetune_top1)
               for n, v in public.items()}
    assert numbers == {"ibot-vit-s16": (75.2, 77.9, 82.3), "ibot-vit-b16": (77.1, 79.5, 84.0),
                       "ibot-vit-l16": (78.0, 81.0, 84.8)}
    assert {n: v.pooling for n, v in public.items()} == {"ibot-vit-s16": "token", "ibot-vit-b16": "token-avg",
                                                          "ibot-vit-l16": "token-avg"}
    for v in public.values():
        assert v.weights[0].url.endswith("/checkpoint_teacher.pth") and v.weights[0].layout == "official"
        assert v.weights[1].url.endswith("/checkpoint.pth")
    assert "last 4 blocks" in public["ibot-vit-s16"].description  # what differs from the paper's probe is said
