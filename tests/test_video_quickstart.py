"""`mimzoo quickstart --video`: the video twin end to end, offline, on a real (short) VideoMAE run."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import mimzoo
from helpers import NO_NETWORK, run_cli

STEPS = ["load", "k-NN probe", "linear probe", "export ONNX", "verify", "reconstruct", "publish (dry run)"]

pytestmark = pytest.mark.skipif("videomae-vit-test" not in mimzoo.list_models(include_test=True),
                                reason="the videomae plugin (videomae-vit-test) is not installed")


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A 2-step VideoMAE run on moving-digits (4 frames of 32 px), then the video quickstart on it."""
    from mimzoo.pretrain.trainer import TrainConfig, pretrain

    root = tmp_path_factory.mktemp("qsv")
    run = root / "vm-run"
    pretrain(TrainConfig(method="videomae", arch="videomae-vit-test", data="moving-digits:train=16,test=4,frames=8",
                         output=str(run), batch_size=8, max_steps=2, epochs=1, threads=1,
                         overrides=(("decoder.dim", "32"), ("decoder.depth", "1"), ("decoder.heads", "2"))))
    out = root / "mimzoo-quickstart-video"
    r = run_cli("quickstart", "--video", "--model", str(run), "--license", "apache-2.0",
                "--data", "moving-digits:train=120,test=60", "-o", str(out), env={**NO_NETWORK, "OMP_NUM_THREADS": "1"})
    return out, r


def test_video_quickstart_runs_offline_and_reports_every_step(video_run):
    out, r = video_run
    assert r.returncode == 0, r.stderr[-2000:]
    for step in STEPS:
        row = next(line for line in r.stdout.splitlines() if line.startswith(step))
        assert row.rstrip().endswith("yes"), row
    assert "[1/6] load" in r.stderr and "[6/6] publish" in r.stderr
    summary = json.loads((out / "quickstart.json").read_text())
    assert [s["step"] for s in summary["steps"]] == STEPS and summary["config"]["video"] is True
    assert summary["figures"]["verify"]["passed"] and 0 <= summary["figures"]["eval"]["knn"]["top1"] <= 100


def test_video_quickstart_artifacts(video_run):
    out, _ = video_run
    records = json.loads((out / "eval.json").read_text())
    assert {(rec["task"], rec["dataset"]) for rec in records} == {("knn", "moving-digits"), ("linear", "moving-digits")}
    with Image.open(out / "reconstruction.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 4  # the model's 4 frames
    config = json.loads((out / "hub-folder" / "config.json").read_text())
    assert config["architecture"] == "video_vit" and config["pretrained_cfg"]["num_frames"] == 4
    card = (out / "hub-folder" / "README.md").read_text()
    assert "your-name/vm-run" in card and "clips of 4 frames" in card and "apache-2.0" in card
    assert not (out / "bench.md").exists()


def test_the_default_video_quickstart_runs_the_bundled_model(tmp_path):
    """No --model: the bundled videomae-vit-digits, offline; its probes are far from chance even on 60 clips."""
    r = run_cli("quickstart", "--video", "--data", "moving-digits:train=200,test=60", "-o", str(tmp_path / "qs"),
                env={**NO_NETWORK, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "qs" / "quickstart.json").read_text())
    assert summary["config"]["model"] == "videomae-vit-digits"
    load = next(s for s in summary["steps"] if s["step"] == "load")
    assert load["ok"] == "yes" and "bundled weights" in load["result"], load
    card = (tmp_path / "qs" / "hub-folder" / "README.md").read_text()
    assert "apache-2.0" in card and "moving-digits" in card
