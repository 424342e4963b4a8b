"""Under torchrun: 2 real CPU processes (gloo) give the numbers 1 process gives.

One launch runs the unchanged CLI (`-m mimzoo.cli.main eval`) for feature extraction + k-NN and
for fine-tuning; the same evaluation then runs in this process and the results are compared:
features bit for bit, fine-tuning at the same global batch within floating-point tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import mimzoo

OPTIONS = dict(subset=240, eval_subset=120, batch_size=24, extract_batch_size=32, epochs=2, amp="off", drop_path=0.0,
               base_lr=2e-2, checkpoint_every=5, workers=1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _cli_args(opts):
    args = []
    for key, value in opts.items():
        if key in ("subset", "eval_subset", "batch_size", "extract_batch_size", "epochs", "amp", "drop_path", "workers"):
            args += [f"--{key.replace('_', '-')}", str(value)]
        else:
            args += ["--set", f"{key}={value}"]
    return args


def test_two_torchrun_processes_match_one(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    mimzoo.save_pretrained(mimzoo.load("mae-vit-test", pretrained=False), folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mimzoo.cli.main", "eval", str(folder), "-t", "knn", "-t", "finetune", "--cache-dir",
           str(tmp_path / "two"), "-o", str(tmp_path / "two.json"), "--quiet", *_cli_args(OPTIONS)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("finetune") == 1  # only rank 0 prints the table
    two = {r["task"]: r for r in json.loads((tmp_path / "two.json").read_text())}
    assert two["knn"]["config"]["world_size"] == 2

    one = _one_process(folder, tmp_path)

    # features: the same cache files (same key), with identical tensors
    names = sorted(p.name for p in (tmp_path / "one" / "features").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two" / "features").iterdir()) and len(names) == 2
    for name in names:
        a, b = _tensors(tmp_path / "one" / "features" / name), _tensors(tmp_path / "two" / "features" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert one["knn"]["metrics"] == two["knn"]["metrics"]
    # fine-tuning: the same 20 steps at a global batch of 24 (12 per process), gradients averaged by DDP
    f1, f2 = one["finetune"], two["finetune"]
    assert f1["config"]["steps"] == f2["config"]["steps"] == 20
    assert f1["config"]["loss_history"] == pytest.approx(f2["config"]["loss_history"], rel=1e-4, abs=1e-4)
    assert f1["metrics"]["top1"] == pytest.approx(f2["metrics"]["top1"], abs=1.0)  # at most one of 120 images flips
    assert f1["metrics"]["top5"] == pytest.approx(f2["metrics"]["top5"], abs=1.0)


def _one_process(folder, tmp_path):
    opts = dict(OPTIONS)
    extract_bs = opts.pop("extract_batch_size")
    subset, eval_subset = opts.pop("subset"), opts.pop("eval_subset")
    records = mimzoo.evaluate(str(folder), ["knn", "finetune"], "digits", subset=subset, eval_subset=eval_subset,
                              cache_dir=tmp_path / "one", extract_batch_size=extract_bs, **opts)
    return {r.task: r.to_dict() for r in records}


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))
