"""`mimzoo release`: a recipe run end to end against the Hub stand-in, and every gate stopping it.

The model is the bundled mae-vit-digits (0.7M params, real weights, digits offline); the Hub is
tests/hub_standin.py over real HTTP with the real huggingface_hub client (LFS path, not Xet; see
test_hub_publish.py). Evaluation features are cached in one folder for the whole module, so only
the first release extracts them.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from hub_standin import NO_PROXY, TOKEN, HubStandIn, client_env

import mimzoo
from mimzoo.hub.publish import PublishError
from mimzoo.hub.recipe import RecipeError
from mimzoo.hub.release import ReleaseError, ReleaseGateError

EXPORTS = Path(__file__).resolve().parents[1] / "exports"
X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mimzoo-cache")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def hub(monkeypatch, tmp_path, feature_cache):
    """A fresh stand-in where the token may write to acme/ and mimzoo/; the client uses LFS and HF_TOKEN."""
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import close_session

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.setenv("NO_PROXY", NO_PROXY)
    monkeypatch.setenv("MIMZOO_CACHE", str(feature_cache))
    close_session()
    with HubStandIn({TOKEN: ("acme", "mimzoo")}) as server:
        yield server
    close_session()


def recipe(tmp_path, *, gates: str = "", exports: str = "", repo: str = "acme/digits") -> Path:
    """A release recipe for the bundled mae-vit-digits with the given [[validate]] / [[export]] tables."""
    path = tmp_path / "recipe.toml"
    path.write_text(textwrap.dedent(f"""
        format = 1
        model = "mae-vit-digits"
        weights = "bundled"

        [hub]
        repo = "{repo}"
        license = "apache-2.0"
        message = "Release from a test"
    """) + textwrap.dedent(gates) + textwrap.dedent(exports))
    return path


def knn_gate(min_top1: float) -> str:
    return f"""
        [[validate]]
        task = "knn"
        dataset = "digits"
        data = "digits"
        split = "test"
        min_top1 = {min_top1}
    """


def reference_outputs():
    with torch.no_grad():
        return mimzoo.load("mae-vit-digits")(X)


def test_shipped_recipe_releases_end_to_end(hub, tmp_path, caplog, capsys):
    import logging

    import huggingface_hub as hf
    import numpy as np
    import onnxruntime as ort

    caplog.set_level(logging.DEBUG)  # everything, huggingface_hub's request logging included
    lines: list[str] = []
    report = mimzoo.release(EXPORTS / "mae-vit-digits.toml", endpoint=hub.url, token=TOKEN, workdir=tmp_path / "work",
                            progress=lines.append)
    assert report.passed and report.failed is None and not report.dry_run
    assert [(s.stage, s.target, s.status) for s in report.stages] == [
        ("load", "mae-vit-digits", "passed"),
        ("validate", "knn digits", "passed"), ("validate", "linear digits", "passed"),
        ("export", "onnx-fp32", "passed"), ("verify", "onnx-fp32", "passed"),
        ("publish", "mimzoo/mae-vit-digits@main", "passed"),
    ]
    knn, linear = report.stages[1:3]
    assert (knn.metric, knn.threshold, knn.op, linear.threshold) == ("top1", 55.0, ">=", 90.0)
    assert knn.value >= 55.0 and linear.value >= 90.0
    exported = report.stages[3]
    assert exported.metric == "max_abs" and exported.value <= exported.threshold == 1e-4
    assert exported.artifacts == (str(tmp_path / "work" / "onnx-fp32"),)
    assert "[validate] knn digits" in lines and "[publish] mimzoo/mae-vit-digits@main: passed" in lines
    # what the Hub holds: one commit with the recipe's message, the model, the card and the fp32 ONNX
    assert report.commit == hub.head("mimzoo/mae-vit-digits") and report.previous == hub.history("mimzoo/mae-vit-digits")[1]
    assert hub.repos["mimzoo/mae-vit-digits"].branches["main"] == report.commit
    files = hub.files("mimzoo/mae-vit-digits")
    assert {"README.md", "config.json", "model.safetensors", "onnx/fp32/model.onnx", "onnx/fp32/export.json"} <= set(files)
    card = hf.ModelCard(files["README.md"].decode())
    assert card.data.license == "apache-2.0"
    results = {(r.task_name, r.dataset_name, r.metric_value) for r in card.data.eval_results}
    assert results >= {("k-NN classification on frozen features", "digits", round(knn.value, 4)),
                       ("Linear probe on frozen features", "digits", round(linear.value, 4))}
    assert json.loads((tmp_path / "work" / "eval.json").read_text())[0]["model"] == "mae-vit-digits"
    # it loads back from the Hub with exactly the released weights, in PyTorch and in onnxruntime
    back = mimzoo.load(report.load_name, endpoint=hub.url, cache_dir=tmp_path / "hf-cache")
    with torch.no_grad():
        assert torch.equal(back(X), reference_outputs())
    snap = hf.snapshot_download("mimzoo/mae-vit-digits", endpoint=hub.url, cache_dir=tmp_path / "hf-cache")
    got = ort.InferenceSession(f"{snap}/onnx/fp32/model.onnx").run(["embedding"], {"pixel_values": X.numpy()})[0]
    np.testing.assert_allclose(got, reference_outputs().numpy(), atol=1e-4)
    # the token is nowhere: logs, progress, printed output, the report, the repo
    out = capsys.readouterr()
    texts = [caplog.text, out.out, out.err, "\n".join(lines), json.dumps(report.__dict__, default=str),
             *(f.decode(errors="replace") for f in files.values())]
    assert caplog.text and all(TOKEN not in t for t in texts)


def test_failed_gate_stops_before_export_and_uploads_nothing(hub, tmp_path):
    mimzoo.publish(mimzoo.load("mae-vit-digits"), "acme/digits", endpoint=hub.url)  # a repo already there
    head, requests = hub.head("acme/digits"), len(hub.log)
    path = recipe(tmp_path, gates=knn_gate(100.0), exports=FP32)
    with pytest.raises(ReleaseGateError, match=r"stopped at validate \(knn digits\): top1 \d+\.\d\d < 100\.00; "
                                               r"nothing was exported or uploaded; fix: ") as err:
        mimzoo.release(path, endpoint=hub.url, workdir=tmp_path / "work")
    report = err.value.report
    assert [(s.stage, s.status) for s in report.stages] == [
        ("load", "passed"), ("validate", "failed"), ("export", "skipped"), ("verify", "skipped"), ("publish", "skipped")]
    assert report.failed is report.stages[1] and report.stages[1].threshold == 100.0 and report.commit is None
    assert report.stages[-1].note == "stopped at the failed validate gate (knn digits)"
    assert hub.log[requests:] == [] and hub.head("acme/digits") == head  # not one request: the repo is unchanged
    assert list((tmp_path / "work").iterdir()) == []  # nothing exported


FP32 = """
    [[export]]
    format = "onnx"
    precision = "fp32"

    [export.tolerances]
    max_abs = 1e-4
"""


def test_failed_export_tolerance_stops_before_publish(hub, tmp_path):
    fp16_too_strict = """
        [[export]]
        format = "onnx"
        precision = "fp16"

        [export.tolerances]
        max_abs = 1e-6
    """
    path = recipe(tmp_path, exports=fp16_too_strict)
    work = tmp_path / "work"
    (work / "onnx-fp16").mkdir(parents=True)  # an earlier release's export: must not survive beside a failure
    (work / "onnx-fp16" / "export.json").write_text("{}")
    with pytest.raises(ReleaseGateError, match=r"stopped at export \(onnx-fp16\): max_abs \S+ > 1e-06; nothing was "
                                               r"uploaded; fix: .*loosen \[export.tolerances\]") as err:
        mimzoo.release(path, endpoint=hub.url, workdir=work)
    report = err.value.report
    assert [(s.stage, s.status) for s in report.stages] == [
        ("load", "passed"), ("export", "failed"), ("verify", "skipped"), ("publish", "skipped")]
    failed = report.stages[1]
    assert failed.metric == "max_abs" and failed.value > failed.threshold == 1e-6 and failed.artifacts == ()
    assert list(work.iterdir()) == []  # no export that looks valid, no temporary leftovers
    assert hub.log == [] and "acme/digits" not in hub.repos


def test_a_foreign_folder_in_the_workdir_is_refused_not_deleted(hub, tmp_path):
    """The work dir's export folder of an earlier release is replaced only when mimzoo's export wrote it."""
    path = recipe(tmp_path, exports="""
        [[export]]
        format = "onnx"
        precision = "fp32"

        [export.tolerances]
        max_abs = 1e-4
    """)
    mine = tmp_path / "work" / "onnx-fp32"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("a user's notes")
    with pytest.raises(ReleaseError, match=r"onnx-fp32 holds files mimzoo did not write as a export \(notes.txt\); "
                                           r"release replaces only exports mimzoo wrote: choose another --workdir"):
        mimzoo.release(path, endpoint=hub.url, workdir=tmp_path / "work")
    assert (mine / "notes.txt").read_text() == "a user's notes" and hub.log == []


def test_dry_run_writes_the_repo_folder_and_uploads_nothing(hub, tmp_path):
    import huggingface_hub as hf

    path = recipe(tmp_path, gates=knn_gate(50.0))
    with pytest.raises(ReleaseError, match=r"pass output \(-o DIR\)"):
        mimzoo.release(path, dry_run=True)
    out = tmp_path / "repo"
    report = mimzoo.release(path, endpoint=hub.url, dry_run=True, output=out)
    assert report.passed and report.dry_run and report.commit is None and report.folder == str(out)
    assert hub.log == []
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".mimzoo-output.json", "README.md", "config.json", "model.safetensors"]
    card = hf.ModelCard((out / "README.md").read_text())
    top1 = [(r.task_name, r.metric_value) for r in card.data.eval_results if r.metric_name.startswith("top-1")]
    assert top1 == [("k-NN classification on frozen features", round(report.stages[1].value, 4))]
    with torch.no_grad():
        assert torch.equal(mimzoo.load(str(out))(X), reference_outputs())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written atomically, no leftovers
    with pytest.raises(ReleaseError, match=r"already exists; choose another folder or pass --overwrite \(overwrite=True\)"):
        mimzoo.release(path, dry_run=True, output=out)  # refused before any work


def test_failed_upload_says_to_rerun_the_release(hub, tmp_path):
    path = recipe(tmp_path, gates=knn_gate(50.0))
    hub.fail("commit", 500)
    with pytest.raises(PublishError) as err:
        mimzoo.release(path, endpoint=hub.url)
    msg = str(err.value)
    assert f"re-run: mimzoo release {path}" in msg and "nothing was committed" in msg and TOKEN not in msg
    assert list(hub.files("acme/digits")) == [".gitattributes"]  # created, but nothing committed
    report = mimzoo.release(path, endpoint=hub.url)  # what the message says to do
    assert report.passed and hub.head("acme/digits") == report.commit


def test_refused_before_any_work(hub, tmp_path, monkeypatch):
    ungated = recipe(tmp_path, gates="""
        [[validate]]
        task = "knn"
        dataset = "imagenet-1k"
        data = "${MIMZOO_TEST_UNSET_DIR}"
        min_top1 = 10.0
    """)
    monkeypatch.delenv("MIMZOO_TEST_UNSET_DIR", raising=False)
    with pytest.raises(RecipeError, match=r"set the environment variable in '\$\{MIMZOO_TEST_UNSET_DIR\}'"):
        mimzoo.release(ungated, endpoint=hub.url)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ReleaseError, match="publishing needs a Hub token with write access: set HF_TOKEN"):
        mimzoo.release(recipe(tmp_path), endpoint=hub.url)
    with pytest.raises(RecipeError, match="release recipe .*nothing.toml not found"):
        mimzoo.release(tmp_path / "nothing.toml")
    assert hub.log == []


def test_cli_prints_the_table_and_exits_1_at_a_failed_gate(hub, tmp_path, feature_cache):
    path = recipe(tmp_path, gates=knn_gate(100.0), exports=FP32)
    env = {**client_env(str(tmp_path / "hf-home"), token=TOKEN), "MIMZOO_CACHE": str(feature_cache), "OMP_NUM_THREADS": "1"}
    r = run_cli("release", str(path), "--endpoint", hub.url, env=env)
    assert r.returncode == 1, r.stderr
    table = r.stdout.splitlines()
    assert table[0].split() == ["stage", "target", "status", "figure", "s", "artifacts", "/", "note"]
    rows = [("load", "mae-vit-digits", "passed"), ("validate", "knn digits", "failed"), ("export", "onnx-fp32", "skipped"),
            ("verify", "onnx-fp32", "skipped"), ("publish", "acme/digits@main", "skipped")]
    assert len(table) == 2 + len(rows)
    assert all(re.match(rf"{stage}\s+{re.escape(target)}\s+{status}\s", line) for (stage, target, status), line in
               zip(rows, table[2:]))
    assert re.search(r"failed\s+top1 \d+\.\d\d < 100\.00\s", table[3])
    err = r.stderr.splitlines()
    assert "[load] mae-vit-digits" in err and "[validate] knn digits" in err
    assert err[-1].startswith("error: release of mae-vit-digits stopped at validate (knn digits): top1 ")
    assert "Traceback" not in r.stderr and TOKEN not in r.stdout + r.stderr
    assert hub.log == []
    as_json = run_cli("release", str(path), "--endpoint", hub.url, "--json", env=env)
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and data["passed"] is False and data["stages"][1]["status"] == "failed"
    missing = run_cli("release", str(tmp_path / "nothing.toml"), env=env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [f"error: release recipe {tmp_path / 'nothing.toml'} not found; "
                                                   "recipes live in exports/<model>.toml"]
