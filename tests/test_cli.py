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
                           "cc-by-nc-4.0", "83.6", "68.0"]
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
    assert mae.split() == ["mae", "mimzoo", mimzoo.__version__, "5", "ok"]


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
