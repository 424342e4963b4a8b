"""The trainer as users run it: the CLI, a run killed with SIGKILL and resumed, and torchrun.

- A run killed (SIGKILL, a real subprocess) after a checkpoint and resumed with --resume ends
  with the same weights as the same run done in one go.
- 2 processes under torchrun (gloo, CPU), with DDP and with FSDP, end with the same weights as
  1 process with the same global batch (here split into 2 accumulation steps), on a recipe whose
  per-image mask counts vary (blockwise) and that has an EMA teacher (data2vec), so the
  global-count loss normalisation and the (sharded) teacher updates are both exercised.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mimzoo
from mimzoo.pretrain.trainer import TrainConfig, pretrain

MAE = ["mae", "--arch", "mae-vit-test", "--data", "digits", "--epochs", "1", "--batch-size", "32", "--lr", "1e-3",
       "--warmup-epochs", "0.1", "--seed", "3", "--set", "decoder.dim=16", "--set", "decoder.depth=1",
       "--set", "decoder.heads=2", "--set", "target.kind=pixels"]
STEPS = 9


def _config(args: list[str], output: Path, **extra) -> TrainConfig:
    """The TrainConfig the CLI builds from `args` (kept in step with MAE above)."""
    sets = tuple(tuple(v.split("=", 1)) for k, v in zip(args, args[1:]) if k == "--set")
    opts = dict(zip(args[1::2], args[2::2]))
    return TrainConfig(method=args[0], arch=opts["--arch"], data=opts["--data"], epochs=int(opts["--epochs"]),
                       batch_size=int(opts["--batch-size"]), lr=float(opts["--lr"]),
                       warmup_epochs=float(opts["--warmup-epochs"]), seed=int(opts["--seed"]), output=str(output),
                       overrides=sets, **extra)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**load_file(folder / "model.safetensors"),
            **{f"pretrain.{k}": v for k, v in load_file(folder / "pretrain.safetensors").items()}}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol, msg=lambda m, k=k: f"{k}: {m}")


def _ckpt_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "mimzoo.cli.main", "pretrain", *MAE, "--max-steps", str(STEPS), "--save-every", "3",
           "--step-delay", "0.4", "-o", str(cut)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = cut / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while _ckpt_step(ckpt) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _ckpt_step(ckpt)
    assert 3 <= killed_at < STEPS, f"the run was not killed mid-way (checkpoint at step {killed_at})"
    assert not (cut / "config.json").exists()  # no model yet: it was killed before the end

    resumed = pretrain(_config(MAE, cut, max_steps=STEPS, save_every=3, resume=True))
    assert resumed.history[0]["step"] > killed_at  # it went on from the checkpoint, not from scratch
    log = [json.loads(line) for line in (cut / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == sorted({rec["step"] for rec in log}) and log[-1]["step"] == STEPS

    whole = tmp_path / "whole"
    result = pretrain(_config(MAE, whole, max_steps=STEPS, save_every=3))
    assert result.steps == STEPS
    _assert_same(_weights(cut), _weights(whole))
    encoder = mimzoo.load(str(cut))  # a mimzoo model folder
    assert encoder(torch.randn(1, 3, 32, 32)).shape == (1, 32)
    block = json.loads((cut / "config.json").read_text())["mimzoo"]
    assert block["method"] == "mae" and block["recipe"]["target"]["kind"] == "pixels"
    assert block["pretrain"]["steps"] == STEPS and block["weights"]["source"] == "mimzoo pretrain mae"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json", "pretrain.safetensors"):  # shareable, not safetensors' 0600
        assert (cut / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


D2V = ["data2vec", "--arch", "mae-vit-test", "--data", "digits", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
       "--warmup-epochs", "0.1", "--seed", "5", "--set", "masking.min_block=4", "--set", "target.layers=2"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: 1 process, the same global batch in 2 accumulation steps."""
    out = tmp_path_factory.mktemp("one") / "run"
    pretrain(_config(D2V, out, max_steps=3, accum_steps=2))
    return out


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_torchrun_two_processes_match_one(sharding, one_process, tmp_path):
    two = tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mimzoo.cli.main", "pretrain", *D2V, "--max-steps", "3", "-o", str(two)]
    r = subprocess.run(cmd + (["--fsdp"] if sharding == "fsdp" else []), capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    block = json.loads((two / "config.json").read_text())["mimzoo"]
    assert block["pretrain"]["processes"] == 2
    _assert_same(_weights(two), _weights(one_process), tol=1e-4)
    last = [json.loads((f / "log.jsonl").read_text().splitlines()[-1])["loss"] for f in (one_process, two)]
    assert last[0] == pytest.approx(last[1], rel=1e-4)


def test_resume_refuses_other_options(tmp_path):
    from click.testing import CliRunner

    from mimzoo.cli.main import cli

    out = tmp_path / "run"
    pretrain(_config(MAE, out, max_steps=2))

    def invoke(*args: str):
        return CliRunner().invoke(cli, ["pretrain", *args])

    r = invoke(*MAE, "--max-steps", "2", "--seed", "4", "--resume", "-o", str(out))
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].startswith("error: --resume with different seed than the checkpoint")
    r = invoke(*MAE, "--max-steps", "2", "-o", str(out))
    assert r.exit_code == 1 and "already holds a pretraining run; pass --resume" in r.output
    r = invoke("mae", "--arch", "mae-vit-test", "--precision", "fp16", "--device", "cpu", "-o", str(tmp_path / "h"))
    assert r.exit_code == 1 and "fp16 needs a GPU" in r.output


def test_folder_data_bf16_and_reconstruct_picture(tmp_path):
    """Pretraining on a folder of images (any sizes) in bf16 autocast, then the picture of a reconstruction."""
    from click.testing import CliRunner
    from PIL import Image, ImageDraw

    from mimzoo.cli.main import cli

    images = tmp_path / "images" / "nested"
    images.mkdir(parents=True)
    for i in range(8):
        im = Image.new("RGB", (40 + 4 * i, 36), (10 * i, 100, 200 - 10 * i))
        ImageDraw.Draw(im).ellipse((4, 4, 20 + i, 30), fill=(250, 250, 20))
        im.save(images / f"{i}.png")
    out = tmp_path / "run"
    args = ["mae", "--arch", "mae-vit-test", "--data", str(tmp_path / "images"), "--epochs", "2", "--batch-size", "4",
            "--precision", "bf16", "--set", "decoder.dim=16", "--set", "decoder.depth=1", "--set", "decoder.heads=2",
            "-o", str(out)]
    r = CliRunner().invoke(cli, ["pretrain", *args])
    assert r.exit_code == 0, r.output
    assert "run" in r.output and json.loads((out / "config.json").read_text())["mimzoo"]["pretrain"]["steps"] == 4
    pic = tmp_path / "rec.png"
    r = CliRunner().invoke(cli, ["reconstruct", str(out), str(images / "0.png"), str(images / "1.png"), "-o", str(pic)])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"wrote {pic} (2 images)"
    assert Image.open(pic).width > 4 * 128 and Image.open(pic).height > 2 * 128  # 4 columns, 2 rows of >= 128 px


def test_fp16_with_a_gradient_scaler_trains_and_resumes_exactly(tmp_path, monkeypatch):
    """The fp16 path (autocast + GradScaler, offered on GPUs) run on the CPU, where torch supports it too:
    the scaler skips overflowing steps, its state is checkpointed, and a resumed run ends identical."""
    import mimzoo.pretrain.trainer as trainer

    monkeypatch.setattr(trainer, "FP16_DEVICES", ("cuda", "cpu"))
    logs: list[dict] = []
    full = pretrain(_config(MAE, tmp_path / "full", precision="fp16", device="cpu"), on_log=logs.append)
    assert full.steps > 4 and all(torch.isfinite(v).all() for v in _weights(tmp_path / "full").values())
    ckpt = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    scale = ckpt["scaler"]["scale"]
    assert 0 < scale <= 65536.0  # GradScaler's initial scale, halved for every step whose gradients overflowed
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logs if "loss" in r)

    part = tmp_path / "part"
    pretrain(_config(MAE, part, precision="fp16", device="cpu", max_steps=4))
    assert _ckpt_step(part / "checkpoints" / "last.pt") == 4
    pretrain(_config(MAE, part, precision="fp16", device="cpu", resume=True))
    _assert_same(_weights(tmp_path / "full"), _weights(part))
    resumed = torch.load(part / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert resumed["scaler"]["scale"] == scale and resumed["scaler"]["_growth_tracker"] == ckpt["scaler"]["_growth_tracker"]


def test_fp16_steps_whose_gradients_overflow_are_skipped(tmp_path, monkeypatch):
    import functools

    import mimzoo.pretrain.trainer as trainer

    monkeypatch.setattr(trainer, "FP16_DEVICES", ("cuda", "cpu"))
    # a start scale of 2^40 overflows fp16 gradients: the scaler must skip those steps and back off
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0 ** 40))
    run = pretrain(_config(MAE, tmp_path / "o", precision="fp16", device="cpu", max_steps=STEPS))
    state = torch.load(tmp_path / "o" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["scaler"]
    assert state["scale"] < 2.0 ** 40 and state["_growth_tracker"] < run.steps  # it backed off, and recently
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "o").values())


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity (which are not JSON, whatever Python's json module writes)."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_resume_of_a_finished_run_is_a_no_op_that_says_so(tmp_path, caplog):
    from tests.faults.trial import snapshot

    out = tmp_path / "run"
    first = pretrain(_config(MAE, out, max_steps=2, log_every=1))
    before = snapshot(out)
    with caplog.at_level("WARNING", logger="mimzoo.pretrain.trainer"):
        again = pretrain(_config(MAE, out, max_steps=2, log_every=1, resume=True))
    assert "finished all 2 steps already; nothing to do" in caplog.text
    assert again.steps == 2 and again.loss == pytest.approx(first.loss)
    assert snapshot(out) == before  # nothing rewritten, least of all a "final_loss": NaN
    assert _strict_json((out / "config.json").read_text())["mimzoo"]["pretrain"]["final_loss"] == pytest.approx(first.loss)


def test_a_torn_last_log_line_is_dropped_on_resume_with_a_warning(tmp_path, caplog):
    out = tmp_path / "run"
    pretrain(_config(MAE, out, max_steps=2, log_every=1))
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 3, "total": 4, "lo')  # what a kill in the middle of a write leaves
    with caplog.at_level("WARNING", logger="mimzoo.pretrain.trainer"):
        resumed = pretrain(_config(MAE, out, max_steps=4, log_every=1, resume=True))
    assert "dropped 1 unreadable line(s)" in caplog.text and resumed.steps == 4
    records = [_strict_json(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert _strict_json((out / "config.json").read_text())["mimzoo"]["pretrain"]["steps"] == 4


def test_a_run_resumed_at_its_last_step_records_the_logged_loss_not_nan(tmp_path):
    out = tmp_path / "run"
    first = pretrain(_config(MAE, out, max_steps=2, log_every=1))
    (out / "config.json").unlink()  # killed after the last checkpoint, before the model folder was complete
    again = pretrain(_config(MAE, out, max_steps=2, log_every=1, resume=True))
    run = _strict_json((out / "config.json").read_text())["mimzoo"]["pretrain"]
    assert run["final_loss"] == pytest.approx(first.loss) and again.loss == pytest.approx(first.loss)
