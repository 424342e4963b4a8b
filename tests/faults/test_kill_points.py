"""Kill points: the CLI killed with SIGKILL at several moments, then run again.

After a kill, whatever stands under the output's name is complete (or the previous output, untouched),
nothing half-written is ever accepted, and the next plain run cleans up what the killed one left (temp
folders, temp files, its lock file) and succeeds. SIGKILL cannot be caught: these trials show what
survives a power cut or the OOM killer, not what a cleanup handler does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.faults.test_output_faults import EXPORT, pretrain_args
from tests.faults.trial import expect_error, kill_when, listing, run, snapshot


def top(root: Path) -> set[str]:
    return {p for p in listing(root) if "/" not in p}


def leftovers(root: Path) -> set[str]:
    """Hidden temp entries anywhere under `root` (what a killed writer leaves)."""
    return {p for p in listing(root) if ".tmp-" in p or ".old-" in p or p.endswith(".lock")}


def strict_json_lines(path: Path) -> list[dict]:
    def refuse(c):
        raise ValueError(f"{c} is not JSON")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def good_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    assert run(*EXPORT, "-o", "e", cwd=root, cache=root).rc == 0
    return root / "e"


# -- export ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["running PyTorch", "exporting ONNX", "verifying with onnxruntime"])
def test_export_killed_leaves_nothing_under_its_name_and_the_next_run_cleans_up(tmp_path, moment):
    killed = kill_when([*EXPORT, "-o", "e"], marker=moment, cwd=tmp_path, cache=tmp_path / "c")
    assert killed.rc == -9, killed.stdout
    assert not (tmp_path / "e").exists() and top(tmp_path) - {"c"} <= leftovers(tmp_path)
    expect_error(run("verify", "e", cwd=tmp_path), says=("no export folder at e",), fix=("mimzoo export",))
    for temp in (p for p in top(tmp_path) if ".e.tmp-" in p):  # a half-made export is never accepted
        expect_error(run("verify", temp, cwd=tmp_path), says=(temp,), fix=("export",))
    out = run(*EXPORT, "-o", "e", cwd=tmp_path, cache=tmp_path / "c")
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    assert top(tmp_path) - {"c"} == {"e"} and not leftovers(tmp_path)


def test_export_killed_while_replacing_keeps_the_previous_export(tmp_path, good_export):
    shutil.copytree(good_export, tmp_path / "e")
    before = snapshot(tmp_path / "e")
    killed = kill_when([*EXPORT, "-o", "e", "--overwrite", "--seed", "1"], marker="verifying with onnxruntime",
                       cwd=tmp_path, cache=tmp_path / "c")
    assert killed.rc == -9
    assert snapshot(tmp_path / "e") == before  # the previous, verified export, byte for byte
    assert run("verify", "e", "--images", "16", cwd=tmp_path).rc == 0
    out = run(*EXPORT, "-o", "e", "--overwrite", "--seed", "1", cwd=tmp_path, cache=tmp_path / "c")
    assert out.rc == 0 and not leftovers(tmp_path) and snapshot(tmp_path / "e") != before


def test_what_appears_under_the_name_is_already_verified(tmp_path):
    killed = kill_when([*EXPORT, "-o", "e"], path=tmp_path / "e", cwd=tmp_path, cache=tmp_path / "c")
    assert killed.rc in (-9, 0)  # killed the moment the folder took its name (or just done)
    out = run("verify", "e", "--images", "16", cwd=tmp_path)
    assert out.rc == 0 and "verification passed" in out.stdout, out.stderr


# -- pretraining -------------------------------------------------------------------------------------

def _resume_and_check(tmp_path: Path, steps: int) -> None:
    out = run(*pretrain_args(steps), "--save-every", "2", "-o", "run", "--resume", cwd=tmp_path)
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    log = strict_json_lines(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, steps + 1))  # one line per step, each valid JSON
    config = json.loads((tmp_path / "run" / "config.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert config["mimzoo"]["pretrain"]["steps"] == steps
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("moment", ["checkpoint", "log"])
def test_pretrain_killed_at_a_checkpoint_or_a_log_write_resumes(tmp_path, moment):
    args = [*pretrain_args(6), "--save-every", "2", "--step-delay", "0.2", "-o", "run"]
    if moment == "checkpoint":  # the folder is made the moment the first checkpoint is written
        killed = kill_when(args, path=tmp_path / "run" / "checkpoints", cwd=tmp_path)
    else:  # just after step 3's line went into log.jsonl (past the step-2 checkpoint)
        killed = kill_when(args, marker="step 3/6", cwd=tmp_path)
    assert killed.rc == -9, killed.stdout
    assert not (tmp_path / "run" / "config.json").exists()
    if not (tmp_path / "run" / "checkpoints" / "last.pt").exists():  # killed before the first one was complete
        expect_error(run(*pretrain_args(6), "--save-every", "2", "-o", "run", "--resume", cwd=tmp_path),
                     says=("no checkpoint",), fix=("run without --resume",))
        assert run(*pretrain_args(6), "--save-every", "2", "-o", "run", cwd=tmp_path).rc == 0
    _resume_and_check(tmp_path, 6)


def test_pretrain_killed_while_writing_the_model_folder_resumes(tmp_path):
    args = [*pretrain_args(2), "--save-every", "2", "-o", "run"]
    killed = kill_when(args, path=tmp_path / "run" / "pretrain.safetensors", cwd=tmp_path)
    assert killed.rc == -9
    _resume_and_check(tmp_path, 2)


# -- eval's feature cache ------------------------------------------------------------------------------

EVAL = ["eval", "mae-vit-test", "--random-init", "--task", "knn", "--data", "digits", "-q"]


def test_eval_killed_while_caching_features_rebuilds_them(tmp_path):
    features = tmp_path / "mimzoo" / "features"
    killed = kill_when(EVAL, path=features, cwd=tmp_path, cache=tmp_path)
    assert killed.rc == -9
    out = run(*EVAL, cwd=tmp_path, cache=tmp_path)
    assert out.rc == 0 and "Traceback" not in out.stderr and "knn" in out.stdout, out.stderr
    assert not leftovers(tmp_path) and any(p.suffix == ".safetensors" for p in features.iterdir())
    again = run(*EVAL, "--json", cwd=tmp_path, cache=tmp_path)
    assert json.loads(again.stdout)[0]["metrics"] == json.loads(run(*EVAL, "--json", "--no-cache", cwd=tmp_path,
                                                                      cache=tmp_path).stdout)[0]["metrics"]


def test_eval_with_a_torn_cache_entry_rebuilds_it(tmp_path):
    assert run(*EVAL, cwd=tmp_path, cache=tmp_path).rc == 0
    features = tmp_path / "mimzoo" / "features"
    entry = next(p for p in features.iterdir() if p.suffix == ".safetensors")
    entry.write_bytes(entry.read_bytes()[:1000])  # what a non-atomic writer killed mid-write would leave
    out = run(*EVAL, cwd=tmp_path, cache=tmp_path)
    assert out.rc == 0 and "Traceback" not in out.stderr and "rebuilding it" in out.stderr, out.stderr
    assert entry.stat().st_size > 1000 and not leftovers(tmp_path)


# -- quickstart ----------------------------------------------------------------------------------------

def test_quickstart_killed_keeps_the_previous_results_and_a_plain_rerun_works(tmp_path):
    qs = tmp_path / "qs"
    qs.mkdir()  # a previous quickstart's results (its steps abbreviated)
    (qs / ".mimzoo-output.json").write_text(json.dumps({"kind": "quickstart"}))
    (qs / "quickstart.json").write_text('{"steps": []}\n')
    (qs / "eval.json").write_text("[]\n")
    before = snapshot(qs)
    killed = kill_when(["quickstart", "-o", "qs"], marker="[3/7]", cwd=tmp_path, cache=tmp_path / "c")
    assert killed.rc == -9
    results = {k: v for k, v in snapshot(qs).items() if not k.startswith("cache/")}  # the feature cache may grow
    assert results == before and top(tmp_path) - {"c"} - leftovers(tmp_path) == {"qs"}
    out = run("quickstart", "-o", "qs", cwd=tmp_path, cache=tmp_path / "c")
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    assert json.loads((qs / "quickstart.json").read_text())["steps"] and not leftovers(tmp_path)
    assert top(tmp_path) - {"c"} == {"qs"}
