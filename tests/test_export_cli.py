"""CLI wiring of `mimzoo export`, `mimzoo verify` and `mimzoo bench`, as a user runs them."""

from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import run_cli, run_py

import mimzoo
from mimzoo.cli.main import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_commands_are_listed_and_cheap_to_import():
    out = CliRunner().invoke(cli, ["--help"]).output
    assert all(f"  {c} " in out for c in ("export", "verify", "bench"))
    r = run_py("""
        import sys
        from mimzoo.cli.main import main
        sys.argv = ["mimzoo", "export", "--help"]
        try:
            main()
        except SystemExit:
            pass
        import mimzoo.cli.bench_cmd, mimzoo.cli.export_cmd
        print(sorted(m for m in ("torch", "timm", "onnx", "onnxruntime", "tensorrt", "sklearn") if m in sys.modules))
    """)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]"


def test_export_and_verify_from_the_command_line(tmp_path):
    out = tmp_path / "tiny"
    r = run_cli("export", "mae-vit-test", "--random-init", "--images", "16", "-o", str(out))  # the real entry point
    assert r.returncode == 0, r.stderr
    assert "running PyTorch" in r.stderr and "exporting ONNX (opset 18, batch dynamic)" in r.stderr  # progress
    assert "max abs error" in r.stdout and r.stdout.strip().endswith(f"wrote {out} (onnx fp32, verified)")
    assert json.loads((out / "export.json").read_text())["verification"]["passed"] is True
    v = invoke("verify", str(out), "--images", "16")
    assert v.exit_code == 0 and v.stdout.strip().endswith("verification passed")
    again = invoke("export", "mae-vit-test", "--random-init", "--images", "16", "-o", str(out))
    assert again.exit_code == 1
    assert again.stderr.strip() == f"error: {out} already exists; pass --overwrite (overwrite=True) or choose another -o"


def test_user_errors_are_one_line(tmp_path):
    r = run_cli("export", "mae-vit-bb", "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and r.stderr.strip() == "error: unknown model 'mae-vit-bb'; did you mean 'mae-vit-b'?"
    r = invoke("export", "mae-vit-test", "-o", str(tmp_path / "x"))
    assert r.exit_code == 1 and "has no pretrained weights" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = invoke("export", "mae-vit-test", "--random-init", "--batch", "zero")
    assert r.exit_code == 1 and r.stderr.strip() == "error: batch must be 'dynamic' or a positive integer, got 'zero'"
    r = invoke("export", "mae-vit-test", "--random-init", "--opset", "13")
    assert r.exit_code == 1 and "opset 13 is not supported; use 17..23" in r.stderr
    r = invoke("verify", str(tmp_path))
    assert r.exit_code == 1 and r.stderr.strip().startswith(f"error: {tmp_path} has no export.json")
    r = invoke("export", "mae-vit-test", "--tol", "cosine")
    assert r.exit_code == 2 and "is not KEY=NUMBER" in r.output
    assert not list(tmp_path.iterdir())


def test_json_output(tmp_path):
    r = invoke("export", "mae-vit-test", "--random-init", "--images", "8", "--tokens", "-o", str(tmp_path / "t"), "--json")
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)
    assert meta["outputs"]["tokens"] == ["N", 65, 32] and meta["verification"]["images"] == 8


def test_mimzoo_export_stays_the_function():
    """The exporters live in `mimzoo.exporters`: a subpackage `mimzoo.export` would replace the lazily
    resolved function `mimzoo.export` with a module as soon as anything imported it."""
    import mimzoo.exporters.onnx  # noqa: F401
    import mimzoo.exporters.pipeline  # noqa: F401

    assert callable(mimzoo.export) and callable(mimzoo.verify)
    assert mimzoo.export.__module__ == "mimzoo.api.export"
