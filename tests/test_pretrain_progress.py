"""A long run is never silent: plan first, an estimate after step 1, a report every ~10 s, and Ctrl-C
stops a real `mimzoo pretrain` within seconds, names the checkpoint it kept, and --resume goes on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from mimzoo.pretrain.progress import Progress, describe
from mimzoo.pretrain.trainer import TrainConfig, pretrain

ARGS = ["mae", "--arch", "mae-vit-test", "--data", "digits", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
        "--warmup-epochs", "0.1", "--threads", "1", "--set", "decoder.dim=16", "--set", "decoder.depth=1",
        "--set", "decoder.heads=2", "--set", "target.kind=pixels"]


def _ckpt_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


def test_plan_comes_before_the_first_step_then_an_estimate(tmp_path):
    seen: list[tuple[str, dict]] = []
    threads = torch.get_num_threads()
    pretrain(TrainConfig(method="mae", arch="mae-vit-test", data="digits", epochs=1, batch_size=16, max_steps=3,
                         log_every=2, threads=1, output=str(tmp_path / "run"),
                         overrides=(("decoder.dim", "16"), ("decoder.depth", "1"), ("decoder.heads", "2"))),
             on_log=lambda r: seen.append(("log", r)), on_progress=lambda r: seen.append((r["event"], r)))
    assert torch.get_num_threads() == threads  # the run's --threads 1 does not outlive it
    kinds = [k for k, _ in seen]
    assert kinds[0] == "plan" and kinds.index("plan") < kinds.index("log")
    plan = seen[0][1]
    assert (plan["model"], plan["total"], plan["batch"], plan["device"], plan["threads"]) == \
           ("mae-vit-test", 3, 16, "cpu", 1)
    line = describe(plan)
    assert line.startswith("plan: mae on mae-vit-test") and "3 steps" in line and "batch 16" in line and "cpu" in line
    estimates = [r for k, r in seen if k == "estimate"]
    assert [r["step"] for r in estimates] == [1, 2] and all(r["eta_s"] > 0 for r in estimates)
    assert re.match(r"step 1/3 took [\d.]+ s: about \d+ s for the 2 steps left", describe(estimates[0]))


def test_reports_while_one_step_is_slow_and_between_fast_ones():
    events: list[dict] = []
    p = Progress(events.append, every_s=0.2)
    p.plan({"start": 0, "total": 50, "batch": 8})
    time.sleep(0.7)  # step 1 takes long: the heartbeat says so
    running = [e for e in events if e["event"] == "running"]
    assert running and running[0]["step"] == 1 and running[0]["seconds"] >= 0.2
    p.step_done(1, 2.0, logged=False)
    for step in range(2, 12):  # fast steps: a progress line once ~0.2 s have passed since the last report
        time.sleep(0.06)
        p.step_done(step, 1.0, logged=False)
    p.close()
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(e["steps_per_s"] > 0 and e["eta_s"] > 0 for e in progress)
    assert "steps/s" in describe(progress[0]) and "eta" in describe(progress[0])


def test_ctrl_c_stops_within_seconds_names_the_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mimzoo.cli.main", "pretrain", *ARGS, "--max-steps", "12", "--save-every", "2",
           "--step-delay", "0.3", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while _ckpt_step(ckpt) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    kept = _ckpt_step(ckpt)
    assert proc.returncode == 130, err
    assert took < 5, f"{took:.1f} s after SIGINT"
    assert "Traceback" not in err
    assert err.splitlines()[0].startswith("plan: mae on mae-vit-test")
    assert f"checkpoints/last.pt (step {kept})" in err and "--resume" in err, err
    assert 2 <= kept < 12
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming at step {kept}" in r.stderr and (out / "config.json").is_file()
    assert _ckpt_step(ckpt) == 12


def test_eval_progress_off_a_terminal_reports_every_ten_seconds_with_an_eta(monkeypatch):
    """Feature extraction of a big model: a quarter can take an hour, a line still comes every ~10 s."""
    import io

    import mimzoo.cli.eval_cmd as eval_cmd

    clock = iter(float(t) for t in range(0, 400, 4))  # each batch takes 4 s
    monkeypatch.setattr(eval_cmd.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    bar = eval_cmd.ProgressBar(stream, width=8)
    for i in range(1, 41):
        bar("extract train", i, 1000)  # 40 batches: still in the first quarter
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 14, lines  # 156 s: the first line, then one per >= 10 s
    assert lines[-1].endswith("40/1000  156.0s  eta 3744s"), lines[-1]  # 3.9 s per item so far, 960 left
