"""The iBOT recipe in the pretraining engine: the loss, the view masks, a run on digits, exact resume.

- loss: mimzoo's per-image terms, averaged, equal an independent re-statement of bytedance/ibot
  ``main_ibot.py``'s ``iBOTLoss`` (chunked view-major batches, the q/v loop, the temperature
  schedules and ``update_center``, one process) on fixed tensors, within 1e-6, with and without
  local crops, with unmasked views among the masked ones;
- view masks: per global view, about half unmasked and the rest 0.3 +- 0.2 of the grid in blocks;
- a CLI run on digits writes a model folder that ``mimzoo.load`` reads as an iBOT encoder holding the
  **teacher** (the EMA encoder iBOT evaluates), not the student;
- a run killed with SIGKILL after a checkpoint and resumed ends bit for bit where the run done in one go
  ends: encoder, teacher encoder and head, centres, step counter, optimiser state. The data is a small
  folder so that the run crosses epochs (temperature warmup, prototypes frozen in the first epoch);
- 2 processes under torchrun (gloo, DDP) equal 1 process with 2 accumulation steps, centres included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mimzoo
from mimzoo.pretrain.distill import ViewMasking, centre_sums, ema_centre, ibot_loss_terms, teacher_temperature
from mimzoo.pretrain.masking import Blockwise
from mimzoo.pretrain.recipe import RecipeError, find_recipe, with_overrides
from mimzoo.pretrain.trainer import TrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ("distill.out_dim=64", "distill.hidden_dim=32", "distill.bottleneck_dim=16", "masking.min_block=4",
         "augment.local_crops=2")


# ---------------------------------------------------------------------------------------------
# the official loss, restated from main_ibot.py (one process: all_reduce is the identity)


class OfficialIBOTLoss:
    def __init__(self, out_dim, ngcrops, nlcrops, warm_t, t, warm_t2, t2, warm_epochs, nepochs, student_temp=0.1,
                 center_momentum=0.9, center_momentum2=0.9, lambda1=1.0, lambda2=1.0):
        self.student_temp, self.center_momentum, self.center_momentum2 = student_temp, center_momentum, center_momentum2
        self.ngcrops, self.nlcrops, self.ncrops = ngcrops, nlcrops, ngcrops + nlcrops
        self.center = torch.zeros(1, out_dim, dtype=torch.float64)
        self.center2 = torch.zeros(1, 1, out_dim, dtype=torch.float64)
        self.lambda1, self.lambda2 = lambda1, lambda2
        self.teacher_temp_schedule = np.concatenate((np.linspace(warm_t, t, warm_epochs),
                                                     np.ones(nepochs - warm_epochs) * t))
        self.teacher_temp2_schedule = np.concatenate((np.linspace(warm_t2, t2, warm_epochs),
                                                      np.ones(nepochs - warm_epochs) * t2))

    def __call__(self, student_output, teacher_output, student_local_cls, student_mask, epoch):
        student_cls, student_patch = student_output
        teacher_cls, teacher_patch = teacher_output
        if student_local_cls is not None:
            student_cls = torch.cat([student_cls, student_local_cls])
        student_cls_c = (student_cls / self.student_temp).chunk(self.ncrops)
        student_patch_c = (student_patch / self.student_temp).chunk(self.ngcrops)
        temp, temp2 = self.teacher_temp_schedule[epoch], self.teacher_temp2_schedule[epoch]
        teacher_cls_c = F.softmax((teacher_cls - self.center) / temp, dim=-1).detach().chunk(self.ngcrops)
        teacher_patch_c = F.softmax((teacher_patch - self.center2) / temp2, dim=-1).detach().chunk(self.ngcrops)
        total1, n1, total2, n2 = 0, 0, 0, 0
        for q in range(len(teacher_cls_c)):
            for v in range(len(student_cls_c)):
                if v == q:
                    loss2 = torch.sum(-teacher_patch_c[q] * F.log_softmax(student_patch_c[v], dim=-1), dim=-1)
                    mask = student_mask[v].flatten(-2, -1)
                    loss2 = torch.sum(loss2 * mask.float(), dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
                    total2 += loss2.mean()
                    n2 += 1
                else:
                    loss1 = torch.sum(-teacher_cls_c[q] * F.log_softmax(student_cls_c[v], dim=-1), dim=-1)
                    total1 += loss1.mean()
                    n1 += 1
        total1, total2 = total1 / n1 * self.lambda1, total2 / n2 * self.lambda2
        self.update_center(teacher_cls, teacher_patch)
        return {"cls": total1, "patch": total2, "loss": total1 + total2}

    def update_center(self, teacher_cls, teacher_patch):
        cls_center = torch.sum(teacher_cls, dim=0, keepdim=True) / len(teacher_cls)
        self.center = self.center * self.center_momentum + cls_center * (1 - self.center_momentum)
        patch_center = torch.sum(teacher_patch.mean(1), dim=0, keepdim=True) / len(teacher_patch)
        self.center2 = self.center2 * self.center_momentum2 + patch_center * (1 - self.center_momentum2)


@pytest.mark.parametrize("locals_", [0, 3])
def test_loss_and_centres_match_the_official_ibot_loss(locals_):
    g, b, side, k, epochs, warm = 2, 5, 4, 16, 8, 4
    gen = torch.Generator().manual_seed(0)
    f64 = dict(generator=gen, dtype=torch.float64)  # losses of ~30: float32 would round at ~4e-6
    s_cls = torch.randn((g + locals_) * b, k, **f64) * 3
    s_patch = torch.randn(g * b, side * side, k, **f64) * 3
    t_cls = torch.randn(g * b, k, **f64) * 3
    t_patch = torch.randn(g * b, side * side, k, **f64) * 3
    masks = torch.rand(g * b, side, side, generator=gen) < 0.4
    masks[1] = False  # an unmasked view, as half of iBOT's views are
    official = OfficialIBOTLoss(k, g, locals_, 0.04, 0.07, 0.04, 0.07, warm, epochs, lambda1=0.7, lambda2=1.3)
    center, center2 = torch.zeros(1, k, dtype=torch.float64), torch.zeros(1, 1, k, dtype=torch.float64)
    for epoch in (0, 2, 5):  # inside the warmup, then after it; the centres move between calls
        ref = official((s_cls[: g * b], s_patch), (t_cls, t_patch), s_cls[g * b:] if locals_ else None,
                       [masks[i * b:(i + 1) * b] for i in range(g)], epoch)
        temp, temp2 = (teacher_temperature(epoch, 0.04, 0.07, warm),) * 2
        assert temp == pytest.approx(official.teacher_temp_schedule[epoch], abs=1e-12)
        cls, patch = ibot_loss_terms(s_cls.view(g + locals_, b, k), s_patch.view(g, b, -1, k), t_cls.view(g, b, k),
                                     t_patch.view(g, b, -1, k), masks.view(g, b, -1), center, center2,
                                     student_temp=0.1, teacher_temp=temp, patch_temp=temp2)
        assert cls.shape == patch.shape == (b,)
        assert abs(0.7 * cls.mean() - ref["cls"]).item() < 1e-6
        assert abs(1.3 * patch.mean() - ref["patch"]).item() < 1e-6
        sums_cls, sums_patch, count = centre_sums(t_cls.view(g, b, k), t_patch.view(g, b, -1, k))
        center, center2 = ema_centre(center, sums_cls, count, 0.9), ema_centre(center2, sums_patch, count, 0.9)
        assert (center - official.center).abs().max().item() < 1e-6
        assert (center2 - official.center2).abs().max().item() < 1e-6


def test_view_masks_follow_ibot_ratio_and_are_reproducible():
    spec = find_recipe("ibot").masking
    blocks = Blockwise((14, 14), spec.ratio, spec.min_block, spec.max_block, spec.aspect, spec.ratio_var,
                       spec.unmasked_share)
    masking = ViewMasking(blocks, views=2)
    masks = masking(200, torch.Generator().manual_seed(1))
    assert masks.mask.shape == (200, 2, 196) and masks.count == 200  # the loss is a mean over images
    counts = masks.mask.sum(dim=-1).flatten()
    unmasked = (counts == 0).float().mean().item()
    assert 0.4 < unmasked < 0.6
    masked = counts[counts > 0]
    assert masked.max() <= int(0.5 * 196) and masked.float().mean() > 0.2 * 196
    assert torch.equal(masking(200, torch.Generator().manual_seed(1)).mask, masks.mask)
    part = masks.slice(10, 20)
    assert type(part).__name__ == "ViewMasks" and part.count == 10 and torch.equal(part.mask, masks.mask[10:20])


def test_recipe_parts_go_together():
    recipe = find_recipe("ibot")
    assert recipe.export_encoder == "teacher" and recipe.augment.global_crops == 2
    with pytest.raises(RecipeError, match="go together"):
        with_overrides(recipe, {"loss.kind": "mse"})
    with pytest.raises(RecipeError, match="global_crops=2"):
        with_overrides(recipe, {"augment.global_crops": 1})
    with pytest.raises(RecipeError, match="one view per image"):
        with_overrides(find_recipe("mae"), {"augment.global_crops": 2})
    with pytest.raises(RecipeError, match="ratio_var"):
        with_overrides(recipe, {"masking.ratio_var": 0.4})


def test_prototypes_get_no_update_in_the_first_epoch():
    from mimzoo.pretrain.models import build_objective

    recipe = with_overrides(find_recipe("ibot"), dict(s.split("=") for s in SMALL))
    obj = build_objective(recipe, mimzoo.load("ibot-vit-test", pretrained=False))
    obj.set_schedule(steps_per_epoch=3, total_steps=9)
    params = list(obj.head.last_layer.parameters()) + [obj.mask_token]
    for step, frozen in ((0, True), (2, True), (3, False)):
        obj.step.fill_(step)
        for p in params:
            p.grad = torch.ones_like(p)
        obj.before_optimizer_step()
        assert [p.grad is None for p in params] == [frozen, frozen, False]


def test_local_views_run_the_encoder_at_their_own_size():
    """At the built size the local-view forward is the encoder's own; smaller views get a resampled table."""
    from mimzoo.pretrain.models.ibot import forward_resized

    model = mimzoo.load("ibot-vit-test", pretrained=False).model
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(forward_resized(model, x), model.forward_features(x), atol=1e-6)
        small = forward_resized(model, x[..., :12, :12])
    assert small.shape == (2, 1 + 9, 32) and torch.isfinite(small).all()


# ---------------------------------------------------------------------------------------------
# runs


def test_cli_run_on_digits_saves_the_teacher(tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from mimzoo.cli.main import cli

    out = tmp_path / "run"
    args = ["pretrain", "ibot", "--arch", "ibot-vit-test", "--data", "digits", "--epochs", "1", "--batch-size", "16",
            "--max-steps", "2", *[a for s in SMALL for a in ("--set", s)], "-o", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    encoder = mimzoo.load(str(out))
    assert encoder.info.method == "ibot" and encoder.num_features == 64  # [CLS] + mean patch token
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
    saved = load_file(out / "model.safetensors")
    assert all(torch.equal(v, state[f"target.teacher.{k}"]) for k, v in saved.items())
    assert any(not torch.equal(v, state[f"encoder.{k}"]) for k, v in saved.items())  # the teacher, not the student
    assert int(state["step"]) == 2 and state["center"].abs().sum() > 0
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def _images(folder: Path, n: int = 8) -> Path:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    for i in range(n):
        im = Image.new("RGB", (40, 40), (20 * i, 90, 200 - 15 * i))
        ImageDraw.Draw(im).ellipse((4 + i, 6, 24 + i, 34 - i), fill=(250, 240, 30))
        im.save(folder / f"{i}.png")
    return folder


RESUME = ["ibot", "--arch", "ibot-vit-test", "--epochs", "3", "--batch-size", "4", "--lr", "1e-3",
          "--warmup-epochs", "1", "--seed", "2", "--save-every", "2", "--threads", "1",
          *[a for s in (*SMALL, "distill.temp_warmup_epochs=2") for a in ("--set", s)]]
STEPS = 6  # 8 images, batch 4: 2 steps per epoch, 3 epochs


def _ckpt_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


def test_killed_run_resumes_bit_for_bit(tmp_path):
    data = _images(tmp_path / "images")
    sets = tuple(tuple(s.split("=", 1)) for s in (*SMALL, "distill.temp_warmup_epochs=2"))
    common = dict(method="ibot", arch="ibot-vit-test", data=str(data), epochs=3, batch_size=4, lr=1e-3,
                  warmup_epochs=1.0, seed=2, save_every=2, threads=1, overrides=sets)  # bitwise: same threads
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "mimzoo.cli.main", "pretrain", *RESUME, "--data", str(data), "--step-delay", "0.5",
           "-o", str(cut)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(mimzoo.__file__).parents[1] / "plugins"),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ckpt = cut / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while _ckpt_step(ckpt) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _ckpt_step(ckpt)
    assert 2 <= killed_at < STEPS, f"the run was not killed mid-way (checkpoint at step {killed_at})"
    pretrain(TrainConfig(output=str(cut), resume=True, **common))
    whole = tmp_path / "whole"
    pretrain(TrainConfig(output=str(whole), **common))

    a, b = (torch.load(f / "checkpoints" / "last.pt", map_location="cpu", weights_only=True) for f in (cut, whole))
    assert a["step"] == b["step"] == STEPS and a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert int(a["model"]["step"]) == STEPS and a["model"]["center2"].abs().sum() > 0
    teacher = {k[len("target.teacher."):]: v for k, v in a["model"].items() if k.startswith("target.teacher.")}
    assert any(not torch.equal(v, a["model"][f"encoder.{k}"]) for k, v in teacher.items())  # EMA lags the student
    flat = lambda o: [t for st in o["state"].values() for t in st.values() if isinstance(t, torch.Tensor)]  # noqa: E731
    assert all(torch.equal(x, y) for x, y in zip(flat(a["optimizer"]), flat(b["optimizer"])))
    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()


def test_two_processes_equal_one_with_two_accumulation_steps(tmp_path):
    """torchrun with 2 gloo processes (DDP) ends with the weights, teacher and centres of 1 process with the
    same global batch in 2 micro-batches: the centre sums are gathered over micro-batches and processes."""
    args = ["ibot", "--arch", "ibot-vit-test", "--data", "digits", "--epochs", "1", "--batch-size", "16",
            "--max-steps", "2", "--seed", "5", "--threads", "1", *[a for s in SMALL for a in ("--set", s)]]
    sets = tuple(tuple(s.split("=", 1)) for s in SMALL)
    pretrain(TrainConfig(method="ibot", arch="ibot-vit-test", data="digits", epochs=1, batch_size=16, max_steps=2,
                         seed=5, threads=1, accum_steps=2, overrides=sets, output=str(tmp_path / "one")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(mimzoo.__file__).parents[1] / "plugins"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mimzoo.cli.main", "pretrain", *args, "-o", str(tmp_path / "two")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(tmp_path / f / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
            for f in ("one", "two"))
    assert a.keys() == b.keys() and a["center"].abs().sum() > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
