"""The CLI as a user runs it, and what importing mimzoo costs."""

from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import run_cli, run_py

import mimzoo
from mimzoo.cli.main import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"mimzoo, version {mimzoo.__version__}"


def test_list_table():
    r = invoke("list")
    assert r.exit_code == 0
    header = r.output.splitlines()[0].split()
    assert header[:4] == ["name", "method", "family", "architecture"]
    row = next(line for line in r.output.splitlines() if line.startswith("mae-vit-b "))
    assert row.split() == ["mae-vit-b", "MAE", "reconstruction", "vit_base_patch16_224", "85.8", "224",
                           "cc-by-nc-4.0", "83.6", "68.0", "-"]  # no k-NN figure for MAE
    assert "mae-vit-test" not in r.output
    assert "mae-vit-test" in invoke("list", "--all").output


def test_list_pattern_and_json():
    rows = json.loads(invoke("list", "mae-vit-[bl]", "--json").output)
    assert [r["name"] for r in rows] == ["mae-vit-b", "mae-vit-l"]
    assert rows[1]["params_m"] == 303.3 and rows[1]["lin_top1"] == 75.8
    r = invoke("list", "nothing-*")
    assert r.exit_code == 1


def test_list_taxonomy_groups_by_family():
    r = invoke("list", "--taxonomy")
    assert r.exit_code == 0
    assert "reconstruction-based" in r.output
    mae = next(line for line in r.output.splitlines() if line.startswith("MAE "))
    assert "random-patch 75%" in mae and "normalized-pixels" in mae and "visible" in mae and "2111.06377" in mae
    rows = json.loads(invoke("list", "--taxonomy", "--json").output)
    assert {"family", "masking", "target", "objective", "architecture"} <= set(rows[0])


def test_info():
    r = invoke("info", "mae-vit-h")
    assert r.exit_code == 0
    assert "vit_huge_patch14_224" in r.output and "cc-by-nc-4.0" in r.output
    assert "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth" in r.output
    assert "fine-tune 86.9 / linear 76.6" in r.output
    data = json.loads(invoke("info", "mae-vit-h", "--json").output)
    assert data["method"]["paper"]["arxiv"] == "2111.06377"
    assert [lay["name"] for lay in data["layouts"]] == ["official", "timm", "transformers"]


def test_unknown_name_is_one_line_without_traceback():
    r = run_cli("info", "mae-vit-bb")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "error: unknown model 'mae-vit-bb'; did you mean 'mae-vit-b'?"
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_plugins_lists_mae():
    r = invoke("plugins")
    mae = next(line for line in r.output.splitlines() if line.startswith("mae "))
    assert mae.split() == ["mae", "mimzoo", mimzoo.__version__, "4", "(+1", "test)", "ok"]  # as many as `list` shows


def test_import_and_listing_do_not_import_heavy_dependencies():
    code = """
        import sys
        import mimzoo
        assert mimzoo.list_models()
        mimzoo.info("mae-vit-b")
        from click.testing import CliRunner
        from mimzoo.cli.main import cli
        for args in (["--help"], ["list"], ["list", "--taxonomy"], ["info", "mae-vit-b"], ["plugins"]):
            r = CliRunner().invoke(cli, args)
            assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.output)
        heavy = [m for m in ("torch", "timm", "onnx", "onnxruntime", "tensorrt", "torchvision") if m in sys.modules]
        print("heavy:", heavy)
    """
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "heavy: []"


# -- failures: one `error:` line, the traceback only with -v ---------------------------------------

def _failing_group(exc: BaseException):
    """A group of mimzoo's own class whose one command raises `exc` (the real handler, a fake command)."""
    import click

    from mimzoo.cli.main import MimzooGroup

    @click.group(cls=MimzooGroup)
    @click.option("-v", "--verbose", is_flag=True)
    def group(verbose: bool) -> None:
        pass

    @group.command("boom")
    def boom() -> None:
        raise exc

    @group.command("usage")
    @click.option("--n", type=int, required=True)
    def usage(n: int) -> None:
        pass

    return group


def _run(exc: BaseException, *args: str):
    return CliRunner().invoke(_failing_group(exc), list(args), catch_exceptions=False)


def test_an_unexpected_exception_is_one_line_naming_its_type_and_minus_v():
    r = _run(ValueError("Expected a positive image size (H, W), got (0, 0).\nsecond line"), "boom")
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert lines == ["error: Expected a positive image size (H, W), got (0, 0). (ValueError); rerun with -v for the "
                     "traceback"]


def test_minus_v_shows_the_traceback_then_the_line():
    r = _run(RuntimeError("no NVIDIA driver"), "-v", "boom")
    assert r.exit_code == 1
    assert "Traceback (most recent call last)" in r.stderr and "RuntimeError: no NVIDIA driver" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("error: no NVIDIA driver (RuntimeError)")


def test_ctrl_c_is_interrupted_with_exit_130():
    r = _run(KeyboardInterrupt(), "boom")
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted" and "Traceback" not in r.stderr


def test_click_usage_errors_stay_as_click_prints_them():
    r = CliRunner().invoke(_failing_group(ValueError()), ["usage"])
    assert r.exit_code == 2 and "Missing option '--n'" in r.stderr and "error:" not in r.stderr


def test_os_errors_name_the_path_and_the_fix(tmp_path):
    import errno

    (tmp_path / "file").write_text("x")
    cases = {
        OSError(errno.ENOSPC, "No space left on device", "/data/out/model.onnx"):
            "error: no space left on device writing /data/out/model.onnx; free space or choose another -o",
        OSError(errno.ENOSPC, "No space left on device"):
            "error: no space left on device writing the output; free space or choose another -o",
        PermissionError(errno.EACCES, "Permission denied", "/srv/out"):
            "error: /srv/out is not writable (permission denied); choose another -o or make it writable",
        OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x.json"):
            "error: /mnt/ro/x.json is not writable (read-only file system); choose another -o or make it writable",
        NotADirectoryError(errno.ENOTDIR, "Not a directory", str(tmp_path / "file" / "out" / "a.json")):
            f"error: {tmp_path / 'file' / 'out' / 'a.json'} is under the file {tmp_path / 'file'}, not a folder; "
            "choose another -o (or move that file)",
    }
    for exc, line in cases.items():
        r = _run(exc, "boom")
        assert (r.exit_code, r.stderr.splitlines()) == (1, [line])


def test_mimzoo_errors_keep_their_own_line_and_code():
    from mimzoo.errors import MimzooError

    class Special(MimzooError):
        exit_code = 3

    r = _run(Special("bad thing; do this"), "boom")
    assert (r.exit_code, r.stderr) == (3, "error: bad thing; do this\n")


def test_output_checks_refuse_a_path_under_a_file_and_an_unwritable_folder(tmp_path, monkeypatch):
    import os

    import pytest

    from mimzoo.cli.outputs import check_output
    from mimzoo.errors import MimzooError

    (tmp_path / "f").write_text("x")
    with pytest.raises(MimzooError, match=r"-o .*f/run is under the file .*f, not a folder; choose another -o"):
        check_output(tmp_path / "f" / "run", folder=True)
    with pytest.raises(MimzooError, match=r"--cache-dir .*f is a file, not a folder"):
        check_output(tmp_path / "f", option="--cache-dir", folder=True)
    with pytest.raises(MimzooError, match=r"is a folder; give a file path"):
        check_output(tmp_path)
    check_output(tmp_path / "new" / "deeper" / "r.json")  # a folder that will be created: fine
    # root may write anywhere, so os.access is replaced: the check asks it about the nearest existing folder
    asked = []
    monkeypatch.setattr(os, "access", lambda p, mode: asked.append(str(p)) or False)
    with pytest.raises(MimzooError, match=r"-o .*new/r.json \(its folder .*\) is not writable; choose another -o"):
        check_output(tmp_path / "new" / "r.json")
    assert asked == [str(tmp_path)]
