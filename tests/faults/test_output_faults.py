"""Fault trials on output folders: --overwrite, foreign and odd folders, two writers at once, old outputs.

Each trial runs the real CLI in a fresh process (tests/faults/trial.py) and asserts the exit code, the one
`error:` line with the fix it names, no traceback, and with snapshots that nothing foreign was removed or
changed and nothing half-written was left. Models are the tiny `mae-vit-test` (random init) and the
smallest settings, so each trial takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.trial import CLI, cli_env, expect_error, listing, run, snapshot

EXPORT = ["export", "mae-vit-test", "--random-init", "--images", "16"]


def pretrain_args(steps: int = 2) -> list[str]:
    """The smallest MAE pretraining: the tiny ViT, a one-block decoder, `steps` steps of 16 digits."""
    return ["pretrain", "mae", "--arch", "mae-vit-test", "--epochs", "1", "--batch-size", "16", "--max-steps", str(steps),
            "--log-every", "1", "--set", "decoder.dim=16", "--set", "decoder.depth=1", "--set", "decoder.heads=2"]


PRETRAIN = pretrain_args()


def user_folder(root: Path, name: str = "mine") -> Path:
    """A folder of someone's own files (what --overwrite must never delete)."""
    folder = root / name
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "sub" / "data.csv").write_text("1,2,3\n")
    return folder


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """The CLI in the background (the first of two writers)."""
    return subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cli_env(cache=cwd), cwd=cwd)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the first writer ended before {path} appeared:\n{proc.communicate()[1]}"
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def good_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    assert run(*EXPORT, "-o", "e", cwd=root, cache=root).rc == 0
    return root / "e"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    import torch

    import mimzoo

    folder = tmp_path_factory.mktemp("model") / "tiny"
    torch.manual_seed(0)
    mimzoo.save_pretrained(mimzoo.load("mae-vit-test", pretrained=False), folder)
    return folder


# -- --overwrite replaces only what mimzoo wrote ---------------------------------------------------

def test_export_overwrite_refuses_a_users_folder(tmp_path):
    folder = user_folder(tmp_path)
    before = snapshot(tmp_path)
    out = run(*EXPORT, "-o", str(folder), "--overwrite", cwd=tmp_path, cache=tmp_path / "c")
    expect_error(out, says=("holds files mimzoo did not write", "notes.txt"), fix=("choose another -o",))
    assert snapshot(tmp_path) == before and listing(tmp_path) == {"mine", "mine/sub", "mine/notes.txt", "mine/sub/data.csv"}


def test_export_without_overwrite_keeps_an_existing_export(tmp_path, good_export):
    import shutil

    shutil.copytree(good_export, tmp_path / "e")
    before = snapshot(tmp_path)
    expect_error(run(*EXPORT, "-o", "e", cwd=tmp_path, cache=tmp_path / "c"), says=("already exists",),
                 fix=("--overwrite",))
    assert snapshot(tmp_path) == before


def test_export_overwrite_refuses_another_kind_of_mimzoo_output(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".mimzoo-output.json").write_text(json.dumps({"kind": "pretrain"}))
    (run_dir / "log.jsonl").write_text('{"step": 1}\n')
    before = snapshot(tmp_path)
    expect_error(run(*EXPORT, "-o", "run", "--overwrite", cwd=tmp_path, cache=tmp_path / "c"),
                 says=("of a pretrain output",), fix=("choose another -o",))
    assert snapshot(tmp_path) == before


def test_export_overwrite_replaces_an_export_made_before_the_marker(tmp_path, good_export):
    import shutil

    old = shutil.copytree(good_export, tmp_path / "e")
    (old / ".mimzoo-output.json").unlink()  # what mimzoo wrote before it marked its folders
    out = run(*EXPORT, "-o", "e", "--overwrite", cwd=tmp_path, cache=tmp_path / "c")
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    assert json.loads((old / ".mimzoo-output.json").read_text())["kind"] == "export"
    assert listing(tmp_path) == {"e", "e/.mimzoo-output.json", "e/export.json", "e/model.onnx"}


def test_an_old_export_with_a_foreign_file_is_not_replaced(tmp_path, good_export):
    import shutil

    old = shutil.copytree(good_export, tmp_path / "e")
    (old / ".mimzoo-output.json").unlink()
    (old / "my-results.md").write_text("mine")
    before = snapshot(tmp_path)
    expect_error(run(*EXPORT, "-o", "e", "--overwrite", cwd=tmp_path, cache=tmp_path / "c"),
                 says=("my-results.md",), fix=("choose another -o",))
    assert snapshot(tmp_path) == before


def test_pretrain_refuses_a_users_folder(tmp_path):
    folder = user_folder(tmp_path)
    before = snapshot(tmp_path)
    expect_error(run(*PRETRAIN, "-o", str(folder), cwd=tmp_path), says=("did not write as a pretraining run",),
                 fix=("choose another -o",))
    assert snapshot(tmp_path) == before


def test_pretrain_refuses_a_file_as_its_folder(tmp_path):
    (tmp_path / "out").write_text("a file")
    before = snapshot(tmp_path)
    expect_error(run(*PRETRAIN, "-o", "out", cwd=tmp_path), says=("is a file",), fix=("choose another -o",))
    assert snapshot(tmp_path) == before


def test_export_to_a_path_under_a_file(tmp_path):
    (tmp_path / "f").write_text("a file")
    before = snapshot(tmp_path)
    expect_error(run(*EXPORT, "-o", "f/e", cwd=tmp_path, cache=tmp_path / "c"), says=("f/e",),
                 fix=("choose another -o",))
    assert snapshot(tmp_path) == before


def test_publish_dry_run_overwrite_refuses_a_users_folder(tmp_path, model_folder):
    folder = user_folder(tmp_path)
    before = snapshot(tmp_path)
    out = run("publish", str(model_folder), "--repo", "acme/tiny", "--dry-run", "-o", str(folder), "--overwrite",
              cwd=tmp_path)
    expect_error(out, says=("holds files mimzoo did not write",), fix=("choose another -o",))
    assert snapshot(tmp_path) == before


def test_publish_dry_run_overwrite_replaces_its_own_folder(tmp_path, model_folder):
    args = ["publish", str(model_folder), "--repo", "acme/tiny", "--dry-run", "-o", "repo"]
    assert run(*args, cwd=tmp_path).rc == 0
    assert json.loads((tmp_path / "repo" / ".mimzoo-output.json").read_text())["kind"] == "hub-folder"
    out = run(*args, "--overwrite", cwd=tmp_path)
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    assert {p for p in listing(tmp_path) if "/" not in p} == {"repo"}  # no temp folder, no lock file


def test_quickstart_refuses_a_users_folder_even_with_overwrite(tmp_path):
    folder = user_folder(tmp_path)
    before = snapshot(tmp_path)
    expect_error(run("quickstart", "-o", str(folder), "--overwrite", cwd=tmp_path),
                 says=("holds files mimzoo did not write",), fix=("choose another -o",))
    assert snapshot(tmp_path) == before


def test_save_pretrained_never_replaces_a_users_folder(tmp_path):
    import torch

    import mimzoo
    from mimzoo._outputs import ForeignOutputError

    folder = user_folder(tmp_path)
    before = snapshot(tmp_path)
    torch.manual_seed(0)
    with pytest.raises(ForeignOutputError, match="holds files mimzoo did not write .*choose another -o"):
        mimzoo.save_pretrained(mimzoo.load("mae-vit-test", pretrained=False), folder)  # overwrite=True by default
    assert snapshot(tmp_path) == before


# -- two writers of one output -----------------------------------------------------------------------

def test_two_pretrains_into_one_folder(tmp_path):
    first = start([*pretrain_args(6), "--step-delay", "0.5", "-o", "run"], tmp_path)
    try:
        wait_for(tmp_path / ".run.lock", first)
        t0 = time.monotonic()
        line = expect_error(run(*PRETRAIN, "-o", "run", cwd=tmp_path), says=(f"is being written by process {first.pid}",),
                            fix=("wait for it or choose another -o",))
        assert time.monotonic() - t0 < 30, line  # at once: before any training
        assert first.wait(timeout=300) == 0, first.communicate()[1]
    finally:
        first.kill()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]  # one run's log, not two interleaved
    assert ".run.lock" not in listing(tmp_path)


def test_two_exports_into_one_folder(tmp_path):
    first = start([*EXPORT, "-o", "e"], tmp_path)
    try:
        wait_for(tmp_path / ".e.lock", first)
        expect_error(run(*EXPORT, "-o", "e", "--overwrite", cwd=tmp_path, cache=tmp_path / "c"),
                     says=(f"e is being written by process {first.pid}",), fix=("wait for it or choose another -o",))
        assert first.wait(timeout=300) == 0, first.communicate()[1]
    finally:
        first.kill()
    assert run("verify", "e", "--images", "16", cwd=tmp_path).rc == 0
    assert {p for p in listing(tmp_path) if "/" not in p} - {"c"} == {"e"}  # no temp folder, no lock file


def test_a_lock_file_left_by_a_dead_process_is_no_obstacle(tmp_path):
    (tmp_path / ".e.lock").write_text("999999")  # left by a run killed with SIGKILL: the kernel dropped its lock
    out = run(*EXPORT, "-o", "e", cwd=tmp_path, cache=tmp_path / "c")
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    assert {p for p in listing(tmp_path) if "/" not in p} - {"c"} == {"e"}  # no temp folder, no lock file


# -- finished and torn runs --------------------------------------------------------------------------

def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    assert run(*PRETRAIN, "-o", "run", cwd=tmp_path).rc == 0
    before = snapshot(tmp_path)
    out = run(*PRETRAIN, "-o", "run", "--resume", cwd=tmp_path)
    assert out.rc == 0 and "Traceback" not in out.stderr and "nothing to do" in out.stderr, out.stderr
    assert snapshot(tmp_path) == before
    config = json.loads((tmp_path / "run" / "config.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert config["mimzoo"]["pretrain"]["final_loss"] > 0


def test_resume_with_a_torn_log_line(tmp_path):
    assert run(*PRETRAIN, "-o", "run", cwd=tmp_path).rc == 0
    with open(tmp_path / "run" / "log.jsonl", "a") as f:
        f.write('{"step": 3, "lo')
    out = run(*pretrain_args(3), "-o", "run", "--resume", cwd=tmp_path)
    assert out.rc == 0 and "Traceback" not in out.stderr and "dropped 1 unreadable line" in out.stderr, out.stderr
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_without_a_checkpoint_names_the_fix(tmp_path):
    expect_error(run(*PRETRAIN, "-o", "run", "--resume", cwd=tmp_path), says=("no checkpoint",),
                 fix=("run without --resume",))
    assert listing(tmp_path) == set()


# -- verify and publish accept only complete, verified exports -------------------------------------

def test_verify_refuses_an_export_without_its_marker_whose_files_changed(tmp_path, good_export):
    """Without the marker, verify accepts only files that match export.json's artifact_sha256 (a published
    Hub export carries no marker); a changed weight is refused before anything runs."""
    import shutil

    import onnx

    folder = shutil.copytree(good_export, tmp_path / "e")
    (folder / ".mimzoo-output.json").unlink()
    weights = max(onnx.load(str(folder / "model.onnx")).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    data = bytearray((folder / "model.onnx").read_bytes())
    data[data.index(weights[:64]) + 10] ^= 0x01  # one bit of one weight
    (folder / "model.onnx").write_bytes(bytes(data))
    before = snapshot(tmp_path)
    expect_error(run("verify", "e", cwd=tmp_path), says=("does not match the artifact_sha256 in export.json",),
                 fix=("download or export it again",))
    assert snapshot(tmp_path) == before


def test_publish_refuses_an_export_whose_onnx_changed(tmp_path, good_export, model_folder):
    import shutil

    folder = shutil.copytree(good_export, tmp_path / "e")
    import onnx

    weights = max(onnx.load(str(folder / "model.onnx")).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    data = bytearray((folder / "model.onnx").read_bytes())
    data[data.index(weights[:64]) + 10] ^= 0x01  # one bit of one weight
    (folder / "model.onnx").write_bytes(bytes(data))
    before = snapshot(tmp_path)
    out = run("publish", str(model_folder), "--repo", "acme/tiny", "--with-onnx", "e", "--dry-run", "-o", "repo",
              cwd=tmp_path)
    expect_error(out, says=("differs from the model verified at export",), fix=("export again",))
    assert snapshot(tmp_path) == before


def test_a_previous_export_moved_aside_by_a_killed_swap_is_put_back(tmp_path, good_export):
    import shutil

    # killed between the two renames of a swap: the old export aside, the new one not yet in place
    shutil.copytree(good_export, tmp_path / ".e.old-999999-0123abcd")
    (tmp_path / ".e.tmp-999999-4567cdef").mkdir()  # and the new one's temp folder
    (tmp_path / ".e.tmp-89abcdef").mkdir()  # a temp folder of an older mimzoo (no PID in its name)
    previous = snapshot(tmp_path / ".e.old-999999-0123abcd")
    expect_error(run(*EXPORT, "-o", "e", cwd=tmp_path, cache=tmp_path / "c"), says=("e already exists",),
                 fix=("--overwrite",))
    assert snapshot(tmp_path / "e") == previous and top_level(tmp_path) == {"e"}
    assert run("verify", "e", "--images", "16", cwd=tmp_path).rc == 0


def test_a_run_refused_after_taking_its_lock_leaves_no_folder_behind(tmp_path):
    out = run("pretrain", "nosuchmethod", "--arch", "mae-vit-test", "-o", "runs/x", cwd=tmp_path)
    expect_error(out, says=("nosuchmethod",))
    assert listing(tmp_path) == set()  # neither runs/ nor a lock file


def top_level(root: Path) -> set[str]:
    return {p for p in listing(root) if "/" not in p}


def test_two_quickstarts_into_one_folder(tmp_path):
    first = start(["quickstart", "-o", "qs"], tmp_path)
    try:
        wait_for(tmp_path / ".qs.lock", first)
        expect_error(run("quickstart", "-o", "qs", cwd=tmp_path), says=(f"qs is being written by process {first.pid}",),
                     fix=("wait for it or choose another -o",))
    finally:
        first.kill()  # SIGKILL: the first run never finishes
        first.wait()
    # nothing under the name (a first run builds in a temp folder), only what the next run sweeps
    assert not (tmp_path / "qs").exists()
    assert all(p.startswith((".qs.tmp-", ".qs.lock")) for p in top_level(tmp_path) - {"mimzoo", "hf"})
