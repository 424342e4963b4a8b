"""Fault trials: bad values and bad places, through the real `mimzoo` CLI in a fresh process.

Each trial asserts the exit code, exactly one `error:` line that says what is wrong and names the fix,
no traceback, and that nothing was written (the work folder and the caches are byte-for-byte as before).
The read-only and full-disk trials mount a tiny tmpfs (root only); they skip where that is not allowed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.trial import CLI, cli_env, expect_error, listing, run, snapshot

TINY = "mae-vit-test"  # ViT with 4-px patches at 32 px: fast to build
FAST_EVAL = ("--random-init", "--subset", "40", "--eval-subset", "20", "-q")
PRETRAIN = ("pretrain", "mae", "--arch", TINY, "--max-steps", "1")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "cache").mkdir()
    return tmp_path


def trial(work: Path, *args: str, env: dict[str, str] | None = None):
    """Run the CLI in `work`, and assert that it wrote nothing there (nor in the caches inside it)."""
    before = snapshot(work), listing(work)
    out = run(*args, cwd=work, cache=work / "cache", env=env)
    assert (snapshot(work), listing(work)) == before, "the failed command wrote or removed files"
    return out


# -- image sizes ------------------------------------------------------------------------------------

def test_img_size_zero(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--img-size", "0"),
                 says=("img_size 0", "positive"), fix=("e.g. 224",))


def test_img_size_not_a_multiple_of_the_patch_names_the_nearest_sizes(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--img-size", "30"),
                 says=("img_size 30", "patch size 4", "pixels would be dropped"), fix=("use 28 or 32",))


def test_img_size_smaller_than_a_patch(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--img-size", "2"),
                 says=("smaller than one patch", "4 px"), fix=("multiple of 4",))


def test_pretrain_img_size_not_a_multiple(work):
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--img-size", "33"), says=("img_size 33",), fix=("32 or 36",))


# -- devices ----------------------------------------------------------------------------------------

def _no_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")


def test_eval_device_cuda_without_a_gpu(work):
    _no_gpu()
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--device", "cuda"),
                 says=("--device cuda", "no usable CUDA GPU"), fix=("--device cpu", "mimzoo doctor"))


def test_pretrain_device_cuda_without_a_gpu(work):
    _no_gpu()
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--device", "cuda:1"),
                 says=("cuda:1",), fix=("--device cpu", "mimzoo doctor"))


def test_a_device_that_is_no_device(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--device", "gpu0"),
                 says=("gpu0 is not a device",), fix=("cpu, cuda or cuda:N",))


# -- recipe overrides -------------------------------------------------------------------------------

def test_set_a_number_field_to_text(work):
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--set", "decoder.dim=abc"),
                 says=("decoder.dim=abc", "whole number"), fix=("--set decoder.dim=512",))


def test_set_masking_ratio_nan(work):
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--set", "masking.ratio=nan"),
                 says=("masking.ratio", "finite number"), fix=("--set masking.ratio=0.75",))


def test_set_decoder_depth_negative(work):
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--set", "decoder.depth=-1"),
                 says=("decoder.depth must be at least 1", "-1"), fix=("--set decoder.depth=",))


# -- batch sizes and counts -------------------------------------------------------------------------

def test_pretrain_batch_size_zero_does_not_run_with_a_default(work):
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--batch-size", "0"),
                 says=("--batch-size must be at least 1", "got 0"), fix=("--batch-size 1 or more",))


def test_pretrain_batch_size_negative(work):
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--batch-size", "-4"), says=("got -4",), fix=("--batch-size",))


def test_pretrain_lr_nan(work):
    expect_error(trial(work, *PRETRAIN, "-o", "run", "--lr", "nan"), says=("--lr", "nan"), fix=("--lr 1.5e-4",))


def test_eval_batch_size_negative(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--task", "linear", "--batch-size", "-1"),
                 says=("linear: batch_size must be at least 1", "-1"), fix=("--batch-size N",))


def test_eval_extract_batch_size_negative_does_not_score_zero_images(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--extract-batch-size", "-1"),
                 says=("extract: batch_size must be at least 1",), fix=("--extract-batch-size N",))


def test_eval_extract_batch_size_zero(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--extract-batch-size", "0"),
                 says=("got 0",), fix=("--extract-batch-size N",))


def test_eval_knn_temperature_nan(work):
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "--set", "knn_temperature=nan"),
                 says=("temperature must be greater than 0", "nan"), fix=("--temperature",))


def test_eval_subset_zero(work):
    expect_error(trial(work, "eval", TINY, "--random-init", "-q", "--subset", "0"),
                 says=("subset must be a positive number of images",), fix=("--subset N",))


# -- data -------------------------------------------------------------------------------------------

def _image_folder(root: Path, good: int, bad: int) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(good):
                Image.new("RGB", (12, 12), (40 * i, 200 if cls == "a" else 0, 90)).save(d / f"ok{i}.png")
            for i in range(bad):
                (d / f"bad{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


def test_eval_on_a_folder_of_only_corrupt_images_names_the_folder(work):
    _image_folder(work / "data", good=0, bad=3)
    line = expect_error(trial(work, "eval", TINY, "--random-init", "-q", "--no-cache", "--data", "data"),
                        says=("none of the 6 images in data/train could be decoded",),
                        fix=("check that those files are images", "--data"))
    assert "bad0.jpg" in line  # the first failure, so the user sees what is wrong with the files


def test_eval_with_some_corrupt_images_runs_and_says_how_many_were_skipped(work):
    _image_folder(work / "data", good=3, bad=1)
    out = run("eval", TINY, "--random-init", "-q", "--no-cache", "--data", "data", "--set", "k=2", cwd=work,
              cache=work / "cache")
    assert out.rc == 0 and "Traceback" not in out.stderr, out.stderr
    assert "note: 4 images could not be decoded and were skipped" in out.stderr  # 2 per split


# -- model folders whose config cannot be right -----------------------------------------------------

@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    import mimzoo

    folder = tmp_path_factory.mktemp("models") / "tiny"
    mimzoo.load(TINY, pretrained=False).save_pretrained(folder)
    return folder


def _with_std(src: Path, dst: Path, std: list[float]) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["pretrained_cfg"]["std"] = std
    (dst / "config.json").write_text(json.dumps(cfg))  # json writes NaN / Infinity as Python reads them
    return dst


@pytest.mark.parametrize("std", [[float("nan"), 0.2, 0.2], [0.2, 0.0, 0.2], [float("inf"), 0.2, 0.2]],
                         ids=["nan", "zero", "inf"])
def test_a_config_with_a_broken_std_is_refused(work, model_folder, std):
    _with_std(model_folder, work / "m", std)
    expect_error(trial(work, "eval", "./m", "-q", "--subset", "20", "--eval-subset", "10"),
                 says=("config.json of m", "std"), fix=("fix pretrained_cfg.mean/std",))


# -- output paths -----------------------------------------------------------------------------------

def test_eval_output_under_a_file(work):
    (work / "notes.txt").write_text("mine")
    expect_error(trial(work, "eval", TINY, *FAST_EVAL, "-o", "notes.txt/results.json"),
                 says=("is under the file notes.txt",), fix=("choose another -o",))


def test_pretrain_output_under_a_file(work):
    (work / "notes.txt").write_text("mine")
    expect_error(trial(work, *PRETRAIN, "-o", "notes.txt/run"), says=("under the file notes.txt",),
                 fix=("choose another -o",))


def test_export_output_under_a_file(work):
    (work / "notes.txt").write_text("mine")
    expect_error(trial(work, "export", TINY, "--random-init", "-o", "notes.txt/onnx"),
                 says=("under the file notes.txt",), fix=("choose another -o",))


@contextlib.contextmanager
def tmpfs(where: Path, *, read_only: bool = False, size: str = "64k"):
    where.mkdir()
    opts = f"size={size}" + (",ro" if read_only else "")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True).returncode:
        where.rmdir()
        pytest.skip("cannot mount a tmpfs here (needs root); the error mapper's unit test covers these errors")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_eval_output_in_a_read_only_folder(work):
    with tmpfs(work / "ro", read_only=True):
        expect_error(trial(work, "eval", TINY, *FAST_EVAL, "-o", "ro/results.json"),
                     says=("ro/results.json", "is not writable"), fix=("choose another -o",))


def test_eval_output_on_a_full_disk(work):
    """A real ENOSPC: the evaluation runs, the write fails, one line names the file; no temp file is left."""
    with tmpfs(work / "full") as full:
        with contextlib.suppress(OSError):
            (full / "filler").write_bytes(b"\0" * 200_000)
        filler = (full / "filler").read_bytes()
        out = run("eval", TINY, *FAST_EVAL, "-o", "full/results.json", cwd=work, cache=work / "cache")
        expect_error(out, says=("no space left on device writing full/results.json",),
                     fix=("free space or choose another -o",))
        assert listing(full) == {"filler"} and (full / "filler").read_bytes() == filler  # nothing else, nothing lost


# -- exports given to publish -----------------------------------------------------------------------

def test_publish_with_a_damaged_onnx(work, model_folder):
    export = work / "export"
    export.mkdir()
    meta = {"mimzoo_export": 1, "format": "onnx", "precision": "fp32", "provenance": {"model": str(model_folder)},
            "verification": {"passed": True, "max_abs": 0.0, "cosine_min": 1.0}}
    (export / "export.json").write_text(json.dumps(meta))
    (export / "model.onnx").write_bytes(b"\x08\x07\x12\x04torch\xff\xff\xff truncated")
    expect_error(trial(work, "publish", str(model_folder), "--repo", "acme/tiny", "--with-onnx", "export",
                       "--dry-run", "-o", "repo"),
                 says=("export/model.onnx is not a readable ONNX model",), fix=("re-run `mimzoo export`",))


# -- interrupting -----------------------------------------------------------------------------------

def test_ctrl_c_is_one_line_and_exit_130(work):
    """SIGINT while pretraining: `interrupted`, exit 130, no traceback."""
    p = subprocess.Popen([sys.executable, "-u", "-c", CLI, *PRETRAIN[:-1], "50", "-o", "run", "--log-every", "1",
                          "--step-delay", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=work, env=cli_env(cache=work / "cache"))
    seen = []
    assert p.stdout is not None
    for line in p.stdout:
        seen.append(line)
        if line.startswith("step "):
            p.send_signal(signal.SIGINT)
            break
    rest = p.communicate(timeout=120)[0]
    text = "".join(seen) + rest
    assert p.returncode == 130, text
    assert "Traceback" not in text and text.rstrip().splitlines()[-1].startswith("interrupted")
