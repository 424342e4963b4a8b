"""`mimzoo quickstart`: the main job end to end, with every network route closed."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from helpers import NO_NETWORK, run_cli

STEPS = ["load", "k-NN probe", "linear probe", "export ONNX", "verify", "bench", "reconstruct", "publish (dry run)"]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "mimzoo-quickstart"
    r = run_cli("quickstart", "-o", str(out), env=NO_NETWORK)
    return out, r


def test_quickstart_runs_offline_and_reports_every_step(quickstart_run):
    out, r = quickstart_run
    assert r.returncode == 0, r.stderr[-2000:]
    for step in STEPS:  # the summary table: one row per step, each passed
        row = next(line for line in r.stdout.splitlines() if line.startswith(step))
        assert row.rstrip().endswith("yes"), row
    assert "mimzoo.load('mae-vit-b')" in r.stdout  # says what to run next on real models
    summary = json.loads((out / "quickstart.json").read_text())
    assert [s["step"] for s in summary["steps"]] == STEPS
    figures = summary["figures"]
    # the bundled model is pretrained: far above the 10 % of chance and the ~21 % of a random-init k-NN
    assert figures["eval"]["knn"]["top1"] > 50 and figures["eval"]["linear"]["top1"] > 85
    assert figures["verify"]["passed"] and figures["verify"]["max_abs"] <= 1e-4
    assert {row["backend"] for row in figures["bench"]} == {"torch", "onnxruntime"}


def test_quickstart_artifacts_are_usable(quickstart_run):
    out, _ = quickstart_run
    records = json.loads((out / "eval.json").read_text())
    assert {rec["task"] for rec in records} == {"knn", "linear"}
    assert (out / "onnx-fp32" / "model.onnx").is_file() and (out / "onnx-fp32" / "export.json").is_file()
    with Image.open(out / "reconstruction.png") as im:
        assert im.width > im.height / 6 * 3  # four panels per row, six rows
    card = (out / "hub-folder" / "README.md").read_text()
    assert "your-name/mae-vit-digits" in card and "apache-2.0" in card and "model-index" in card
    config = json.loads((out / "hub-folder" / "config.json").read_text())
    assert config["mimzoo"]["variant"] == "mae-vit-digits"
    assert "bench.md" in {p.name for p in out.iterdir()}


def test_quickstart_refuses_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    r = run_cli("quickstart", "-o", str(tmp_path), env=NO_NETWORK)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "choose another -o" in r.stderr
    assert "Traceback" not in r.stderr
    assert precious.read_text() == "keep me" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_interrupted_rerun_keeps_the_previous_results_and_a_plain_rerun_works(quickstart_run, tmp_path):
    import shutil

    from mimzoo.api.quickstart import QuickstartConfig, quickstart
    from tests.faults.trial import snapshot

    out = shutil.copytree(quickstart_run[0], tmp_path / "qs")
    before = snapshot(out)

    def interrupt(line):  # Ctrl-C once the new run has written its export
        if line.startswith("[4/7]"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quickstart(QuickstartConfig(output=str(out), bench_iters=2), progress=interrupt)
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["qs"]
    report = quickstart(QuickstartConfig(output=str(out), bench_iters=2), progress=lambda line: None)
    assert report.ok and (out / "quickstart.json").read_bytes() != before["quickstart.json"]
    assert {k for k in snapshot(out) if k.startswith("cache/")} == {k for k in before if k.startswith("cache/")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]  # no temp folder, no lock file left


def test_default_repo_ids_are_valid_hub_names():
    from mimzoo.api.quickstart import default_repo
    from mimzoo.hub.repo_id import validate_repo_id

    for model, expected in [("mae-vit-digits", "your-name/mae-vit-digits"), ("hf-hub:acme/my-mae@v2", "your-name/my-mae"),
                            ("runs/first/", "your-name/first"), ("./we ird+name", "your-name/we-ird-name")]:
        assert default_repo(model) == expected
        assert validate_repo_id(expected) == expected


def test_a_failed_check_makes_the_command_fail_after_the_table(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import mimzoo.api.quickstart as qs
    from mimzoo.cli.main import cli

    report = qs.QuickstartReport(output=tmp_path, steps=(qs.Step("load", "ok", 0.1),
                                                         qs.Step("verify", "FAILED: cosine 0.5", 0.2, ok=False)))
    monkeypatch.setattr(qs, "quickstart", lambda cfg, overwrite, progress: report)
    r = CliRunner().invoke(cli, ["quickstart", "-o", str(tmp_path)])
    assert r.exit_code == 1
    assert "FAILED: cosine 0.5" in r.output and "failed checks: verify" in r.output
