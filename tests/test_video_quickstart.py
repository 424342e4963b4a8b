"""`mimzoo quickstart --video`: the video twin end to end, offline, on the bundled videomae-vit-digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import mimzoo
from helpers import NO_NETWORK, run_cli

BUNDLED = Path(mimzoo.__file__).parent / "assets" / "videomae-digits"
STEPS = ["load", "k-NN probe", "linear probe", "export ONNX", "verify", "reconstruct", "publish (dry run)"]

pytestmark = pytest.mark.skipif(
    "videomae-vit-digits" not in mimzoo.list_models(include_test=True) or not (BUNDLED / "model.safetensors").is_file(),
    reason="needs the videomae plugin and the bundled mimzoo/assets/videomae-digits weights")


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qsv") / "mimzoo-quickstart-video"
    r = run_cli("quickstart", "--video", "-o", str(out), env={**NO_NETWORK, "OMP_NUM_THREADS": "1"})
    return out, r


def test_video_quickstart_runs_offline_and_reports_every_step(video_run):
    out, r = video_run
    assert r.returncode == 0, r.stderr[-2000:]
    for step in STEPS:
        row = next(line for line in r.stdout.splitlines() if line.startswith(step))
        assert row.rstrip().endswith("yes"), row
    summary = json.loads((out / "quickstart.json").read_text())
    assert [s["step"] for s in summary["steps"]] == STEPS and summary["config"]["video"] is True
    assert summary["config"]["model"] == "videomae-vit-digits" and summary["config"]["data"] == "moving-digits"
    assert "[1/6] load" in r.stderr
    results = json.loads((BUNDLED / "results.json").read_text())  # the same figures as the bundled ones
    for task in ("knn", "linear"):
        assert summary["figures"]["eval"][task]["top1"] == pytest.approx(results["pretrained"][task], abs=0.01)
    assert summary["figures"]["verify"]["passed"]


def test_video_quickstart_artifacts(video_run):
    out, _ = video_run
    records = json.loads((out / "eval.json").read_text())
    assert {(rec["task"], rec["dataset"]) for rec in records} == {("knn", "moving-digits"), ("linear", "moving-digits")}
    with Image.open(out / "reconstruction.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 8  # the model's 8 frames
    config = json.loads((out / "hub-folder" / "config.json").read_text())
    assert config["architecture"] == "video_vit" and config["pretrained_cfg"]["num_frames"] == 8
    card = (out / "hub-folder" / "README.md").read_text()
    assert "your-name/videomae-vit-digits" in card and "clips of 8 frames" in card
    assert not (out / "bench.md").exists()
