"""The training-speed paths compute what the plain paths compute.

- MAE's loss predicts only the masked patches (its last decoder block runs on those rows only):
  the loss and every parameter gradient equal those of predicting every patch and masking.
- :func:`block_rows` equals a timm ``Block`` gathered at the rows, with SDPA and with matmul attention.
- :func:`choose_attention` switches timm attention to matmuls only on the CPU in low precision, and
  the trainer does so for a bf16 CPU run; in bf16 the two attentions give the same loss within bf16's precision.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

import mimzoo
from mimzoo.pretrain import find_recipe, with_overrides
from mimzoo.pretrain.losses import masked_loss, per_position
from mimzoo.pretrain.masking import MaskBatch
from mimzoo.pretrain.models import build_objective
from mimzoo.pretrain.models.attention import block_rows, choose_attention
from mimzoo.pretrain.models.objectives import Objective
from mimzoo.pretrain.models.vit import row_index, take_rows
from mimzoo.pretrain.trainer import pretrain

DECODER = {"decoder.dim": 16, "decoder.depth": 2, "decoder.heads": 2}


def _mae(target: str = "normalized-pixels"):
    torch.manual_seed(0)
    recipe = with_overrides(find_recipe("mae"), {**DECODER, "target.kind": target})
    return build_objective(recipe, mimzoo.load("mae-vit-test", pretrained=False)).train()


def _grads(obj, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    obj.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.clone() for k, p in obj.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("target", ["normalized-pixels", "pixels", "hog"])
def test_masked_only_loss_equals_full_prediction(target):
    obj = _mae(target)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = obj.masking(3, torch.Generator().manual_seed(2))
    fast = obj(x, masks, 100.0)
    full = Objective.forward(obj, x, masks, 100.0)  # predict every patch, then mask
    torch.testing.assert_close(fast, full, rtol=1e-6, atol=1e-7)
    g_fast, g_full = _grads(obj, obj(x, masks)), _grads(obj, Objective.forward(obj, x, masks))
    assert g_fast.keys() == g_full.keys() and "decoder.decoder_blocks.1.attn.qkv.weight" in g_fast
    for k in g_fast:
        torch.testing.assert_close(g_fast[k], g_full[k], rtol=1e-5, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")


def test_unequal_mask_counts_fall_back_to_full_prediction():
    obj = _mae()
    x = torch.randn(2, 3, 32, 32)
    base = obj.masking(2, torch.Generator().manual_seed(0))
    mask = base.mask.clone()
    mask[0, base.visible[0].nonzero()[0, 0]] = True  # row 0 predicts one patch more (counts 49 and 48)
    masks = MaskBatch(mask, base.visible)
    with torch.no_grad():
        loss = obj(x, masks)
        expected = masked_loss(per_position(obj.predict(x, masks), obj.target(x), obj.loss_spec), mask)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("fused", [True, False])
def test_block_rows_equals_the_block_at_those_rows(fused):
    from timm.models.vision_transformer import Block

    torch.manual_seed(0)
    block = Block(32, 4, 4.0, qkv_bias=True).train()
    block.attn.fused_attn = fused
    x = torch.randn(3, 17, 32, requires_grad=True)
    select = torch.rand(3, 17).argsort(dim=1) < 11  # 11 rows of each sample, scattered
    rows = row_index(select)
    ours = block_rows(block, x, rows)
    torch.testing.assert_close(ours, take_rows(block(x), rows), rtol=1e-5, atol=1e-6)
    (gx,) = torch.autograd.grad(ours.square().sum(), x)
    (ref,) = torch.autograd.grad(take_rows(block(x), rows).square().sum(), x)
    torch.testing.assert_close(gx, ref, rtol=1e-5, atol=1e-6)


def test_choose_attention_only_on_cpu_low_precision():
    obj = _mae()
    assert choose_attention(obj, "cpu", "fp32") == 0 and choose_attention(obj, "cuda", "bf16") == 0
    assert all(m.fused_attn for m in obj.modules() if hasattr(m, "fused_attn"))
    x = torch.randn(4, 3, 32, 32)
    masks = obj.masking(4, torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        sdpa = obj(x, masks).item()
        assert choose_attention(obj, torch.device("cpu"), "bf16") == 4  # 2 encoder + 2 decoder blocks
        matmul = obj(x, masks).item()
    assert not any(m.fused_attn for m in obj.modules() if hasattr(m, "fused_attn"))
    assert choose_attention(obj, "cpu", "bf16") == 0  # nothing left to switch
    assert abs(matmul - sdpa) < 0.02 * abs(sdpa)  # the same attention, rounded to bf16 differently


def test_trainer_uses_matmul_attention_for_bf16_on_cpu(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="mimzoo.pretrain.trainer"):
        r = pretrain(method="mae", arch="mae-vit-test", data="digits", batch_size=16, max_steps=2, epochs=1,
                     precision="bf16", device="cpu", overrides=tuple((k, str(v)) for k, v in DECODER.items()),
                     output=str(tmp_path / "run"))
    assert r.steps == 2 and r.loss == r.loss  # finite, not NaN
    assert "bf16 on the CPU: 4 attention modules compute with matmuls" in caplog.text


def test_compiled_run_trains_like_the_eager_run(tmp_path):
    """``mimzoo pretrain --compile`` (torch.compile, inductor's C++ kernels) ends with the eager run's weights.

    The first run on a machine compiles (~30 s on 2 busy cores); inductor caches the kernels after that.
    """
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from mimzoo.cli.main import cli

    args = ["pretrain", "mae", "--arch", "mae-vit-test", "--data", "digits", "--batch-size", "16", "--max-steps", "2",
            "--epochs", "1", "--lr", "1e-3", *sum((["--set", f"{k}={v}"] for k, v in DECODER.items()), [])]
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        r = CliRunner().invoke(cli, [*args, *extra, "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    eager, compiled = (load_file(tmp_path / n / "model.safetensors") for n in ("eager", "compiled"))
    assert eager.keys() == compiled.keys()
    for n in ("eager", "compiled"):
        assert json.loads((tmp_path / n / "config.json").read_text())["mimzoo"]["pretrain"]["steps"] == 2
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
