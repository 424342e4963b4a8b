"""`mimzoo eval` and `mimzoo.evaluate`: tables, the results JSON, model-index, options, errors, progress."""

from __future__ import annotations

import io
import json

import pytest
import torch
from click.testing import CliRunner
from helpers import run_cli

import mimzoo
from mimzoo.api.evaluate import build_configs, model_index, parse_tasks
from mimzoo.cli.eval_cmd import ProgressBar
from mimzoo.cli.main import cli
from mimzoo.errors import MimzooError
from mimzoo.eval.results import read_results


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_eval_table_json_merge_and_model_index(tmp_path):
    out = tmp_path / "eval.json"
    base = ["eval", "mae-vit-test", "--random-init", "--subset", "200", "--eval-subset", "100", "--cache-dir",
            str(tmp_path), "-o", str(out), "--quiet", "--workers", "0"]
    r = invoke(*base, "-t", "knn,linear", "-t", "attentive", "--epochs", "2", "--set", "min_steps=0", "--k", "10")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:6] == ["model", "task", "dataset", "split", "top-1", "%"]
    assert [ln.split()[1] for ln in lines[2:5]] == ["knn", "linear", "attentive"]
    records = json.loads(out.read_text())
    knn = records[0]
    assert {k: knn[k] for k in ("model", "task", "dataset", "split")} == {
        "model": "mae-vit-test", "task": "knn", "dataset": "digits", "split": "test"}
    assert set(knn["metrics"]) == {"top1", "top5"} and 10.0 < knn["metrics"]["top1"] <= 100.0
    assert knn["config"]["k"] == 10 and knn["config"]["weights"] == "random init" and knn["mimzoo_version"]
    assert records[2]["config"]["epochs"] == 2 and records[1]["config"]["solver"] == "lbfgs"
    assert knn["config"]["features_cache"] == "miss"
    again = invoke(*base, "-t", "knn", "--k", "5", "--json")  # same model/task/data: replaces the knn record
    assert again.exit_code == 0 and json.loads(again.stdout)[0]["config"]["features_cache"] == "hit"
    merged = read_results(out)
    assert [x.task for x in merged] == ["linear", "attentive", "knn"] and merged[-1].config["k"] == 5
    index = model_index(merged, "acme/mae-vit-test")
    assert index[0]["name"] == "acme/mae-vit-test" and len(index[0]["results"]) == 3
    res = index[0]["results"][2]
    assert res["task"] == {"type": "image-classification", "name": "k-NN classification on frozen features"}
    assert res["dataset"] == {"type": "digits", "name": "digits", "split": "test"}
    assert [m["value"] for m in res["metrics"]] == [merged[-1].top1, merged[-1].top5]


def test_results_file_is_what_model_cards_read(tmp_path):
    """The Hub side's reader accepts what `mimzoo eval -o` writes (the shared interface)."""
    hub = pytest.importorskip("mimzoo.hub.eval_results", reason="the Hub publishing module is not installed")
    out = tmp_path / "eval.json"
    mimzoo.evaluate("mae-vit-test", "knn", "digits", pretrained=False, subset=100, eval_subset=50,
                    cache_dir=tmp_path, output=out, workers=0)
    recs = hub.read_eval_results(out, ["mae-vit-test"])
    assert [r["task"] for r in recs] == ["knn"]
    assert hub.model_index(recs, "m") == model_index(recs, "m")


def test_user_errors_are_one_line():
    r = invoke("eval", "mae-vit-test", "--random-init", "-t", "knn,probe")
    assert r.exit_code == 1 and r.output.strip() == ("error: unknown task 'probe'; use knn, linear, attentive, "
                                                   "finetune or all, or seg-linear on segmentation data")
    r = run_cli("eval", "mae-vit-test", "--random-init", "--data", "cifar10:/no/such/dir")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: no cifar10 python batches in /no/such/dir")
    r = invoke("eval", "mae-vit-test", "--random-init", "--set", "epochs")
    assert r.exit_code == 1 and "error: --set takes KEY=VALUE, got 'epochs'" in r.output


def test_options_route_to_their_tasks():
    cfgs, extract = build_configs(["linear", "attentive", "finetune"],
                                  {"epochs": "7", "attentive_epochs": 3, "batch_size": 32, "extract_batch_size": 8,
                                   "amp": "off", "prefix_tokens": "true", "run_dir": "none"})
    assert (cfgs["linear"].epochs, cfgs["attentive"].epochs, cfgs["finetune"].epochs) == (7, 3, 7)
    assert cfgs["finetune"].batch_size == 32 and extract.batch_size == 8  # bare batch_size: the heads' only
    assert cfgs["attentive"].prefix_tokens is True and cfgs["finetune"].run_dir == "none"
    with pytest.raises(MimzooError, match="unknown option 'epoch'; known options: .*epochs"):
        build_configs(["knn"], {"epoch": 3})
    with pytest.raises(MimzooError, match="option 'k' needs a int, got 'many'"):
        build_configs(["knn"], {"k": "many"})
    assert parse_tasks("all") == parse_tasks(["finetune,knn", "attentive", "linear"]) == [
        "knn", "linear", "attentive", "finetune"]
    assert mimzoo.evaluate is __import__("mimzoo.api.evaluate", fromlist=["evaluate"]).evaluate


def test_progress_bar_lines_off_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(stream, width=8)
    for i in range(1, 11):
        bar("extract train", i, 10)
    lines = stream.getvalue().splitlines()
    assert [ln.split()[3] for ln in lines] == ["1/10", "3/10", "5/10", "8/10", "10/10"]
    assert lines[-1].startswith("extract train      [########] 10/10")
