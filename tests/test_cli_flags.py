"""Flags that mean the same in every command: conflicts refused, one --device rule, renamed options that
still work and warn once, spellings, help texts, and case-insensitive "did you mean"."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mimzoo.cli.main import cli
from mimzoo.cli.options import DEVICE_HELP
from mimzoo.exporters.bench_machine import LoadProbe

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str, **kw):
    return CliRunner().invoke(cli, list(args), **kw)


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


# -- conflicting flags ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, named", [
    (("--fp16", "--int8"), "--fp16 and --int8 cannot be used together"),
    (("--int8", "--fp16"), "--fp16 and --int8 cannot be used together"),
    (("--int8", "--precision", "fp16"), "--int8 and --precision fp16 cannot be used together"),
    (("--trt", "--format", "openvino"), "--trt and --format openvino cannot be used together"),
    (("--random-init", "--weights", "x.pth"), "--random-init and --weights cannot be used together"),
])
def test_export_refuses_conflicting_flags(args, named, tmp_path):
    r = invoke("export", "mae-vit-test", *args, "-o", str(tmp_path / "out"))
    assert r.exit_code == 2, r.output
    assert _error_lines(r.output) == [next(ln for ln in r.output.splitlines() if ln.startswith("error:"))]
    assert named in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, precision", [((), "fp32"), (("--fp16",), "fp16"), (("--int8",), "int8"),
                                             (("--precision", "int8"), "int8"), (("--fp16", "--precision", "fp16"), "fp16")])
def test_export_takes_one_precision_however_spelt(args, precision, monkeypatch, tmp_path):
    import types

    import mimzoo.api.export as api

    asked = {}

    def export(model, output, **kw):
        asked.update(kw)
        return types.SimpleNamespace(meta={"precision": kw["precision"]}, verification={}, path=output)

    monkeypatch.setattr(api, "export", export)
    r = invoke("export", "mae-vit-test", *args, "--json", "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert asked["precision"] == precision


def test_eval_and_bench_refuse_random_init_with_weights():
    for command in ("eval", "bench"):
        r = invoke(command, "mae-vit-test", "--random-init", "--weights", "x.pth")
        assert r.exit_code == 2 and "--random-init and --weights cannot be used together" in r.output, r.output


# -- bench: --batch-sizes, the deprecated --batch, --device auto ------------------------------------

@pytest.fixture
def fake_bench(monkeypatch):
    """The bench command with its work replaced: records what it was asked to run."""
    import mimzoo.api.export as api

    calls: list[dict] = []

    def bench(model, **kw):
        calls.append(kw)
        return []

    monkeypatch.setattr(api, "bench", bench)
    quiet = LoadProbe(loadavg=lambda: (0.0, 0.0, 0.0), cpu_seconds=lambda: 0.0)
    return calls, {"obj": {"load_probe": quiet}}


def test_bench_batch_sizes_and_its_deprecated_alias(fake_bench):
    calls, kw = fake_bench
    r = invoke("bench", "mae-vit-test", "--batch-sizes", "2,4", "--no-memory", **kw)
    assert r.exit_code == 0, r.output
    assert calls[-1]["batches"] == [2, 4] and "deprecated" not in r.output
    r = invoke("bench", "mae-vit-test", "--batch", "1,8", "--no-memory", **kw)
    assert r.exit_code == 0, r.output
    assert calls[-1]["batches"] == [1, 8]  # the old spelling still works
    assert r.output.count("warning: --batch is deprecated; use --batch-sizes") == 1
    r = invoke("bench", "mae-vit-test", "--batch", "1", "--batch-sizes", "2", **kw)
    assert r.exit_code == 2 and "--batch-sizes and --batch cannot be used together" in r.output
    r = invoke("bench", "mae-vit-test", "--batch", "1,x", **kw)
    assert r.exit_code == 2 and "'1,x' is not a comma-separated list" in r.output and "--batch" in r.output


def test_one_device_rule_everywhere(fake_bench):
    """--device defaults to auto in eval, pretrain and bench, with the same help; auto is cuda when a GPU is
    available, else cpu (what bench receives here, on a machine without a GPU)."""
    import torch

    ctx = click.Context(cli)
    for name in ("eval", "pretrain", "bench"):
        opt = next(p for p in cli.get_command(ctx, name).params if p.name == "device")
        assert opt.default == "auto" and opt.help == DEVICE_HELP, name
    calls, kw = fake_bench
    r = invoke("bench", "mae-vit-test", "--no-memory", **kw)
    assert r.exit_code == 0, r.output
    assert calls[-1]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", ["bench", "eval", "pretrain"])
def test_device_cuda_without_a_gpu_is_one_line(command, fake_bench):
    _, kw = fake_bench
    name = "mae" if command == "pretrain" else "mae-vit-test"
    r = invoke(command, name, "--device", "cuda", **kw)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert len(_error_lines(r.output)) == 1
    assert "--device cuda: no usable CUDA GPU here" in r.output and "use --device cpu" in r.output


# -- spellings, help texts ------------------------------------------------------------------------

@pytest.mark.parametrize("old, new", [
    ("--nproc_per_node", "--nproc-per-node"),
    ("huggingface-cli login", "hf auth login"),
    ("overwrite (--overwrite)", "--overwrite (overwrite=True)"),
    ("pass overwrite=True", "--overwrite (overwrite=True)"),
])
def test_one_spelling_in_every_mimzoo_text(old, new):
    texts = [*sorted((ROOT / "mimzoo").rglob("*.py")), *sorted((ROOT / "docs").rglob("*.md"))]
    found = [str(p.relative_to(ROOT)) for p in texts if old in p.read_text(encoding="utf-8")]
    assert not found, f"{old!r} (use {new!r}) in {found}"


def test_every_option_has_help_and_short_helps_are_whole():
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        bare = [p.opts for p in cmd.params if isinstance(p, click.Option) and not p.hidden and not p.help]
        assert not bare, f"mimzoo {name}: options without help: {bare}"
    top = invoke("--help").output
    assert "List the zoo models matching a glob PATTERN." in top
    assert not re.search(r"e\.g\.\s*$", top, re.M)  # a summary is never cut at "e.g."


def test_bench_help_keeps_its_example_on_one_line():
    out = invoke("bench", "--help", terminal_width=60).output
    assert "  mimzoo bench mae-vit-b --backends torch,onnxruntime,onnxruntime-int8 --batch-sizes 1,8\n" in out
    assert re.search(r"--seed INTEGER\s+Seed of random weights", out)


# -- names in another case ------------------------------------------------------------------------

def test_a_name_in_another_case_suggests_the_canonical_one():
    r = invoke("info", "MAE-ViT-B")
    assert r.exit_code == 1 and "unknown model 'MAE-ViT-B'; did you mean 'mae-vit-b'?" in r.output
    from mimzoo.errors import closest_name

    assert closest_name("Mae-Vit-L", ["mae-vit-b", "mae-vit-l"]) == "mae-vit-l"
    assert closest_name("MAE-VIT-BB", ["mae-vit-b"]) == "mae-vit-b"
    assert closest_name("xyz", ["mae-vit-b"]) is None
    r = invoke("pretrain", "MAE", "--epochs", "1")
    assert r.exit_code == 1 and "did you mean 'mae'?" in r.output
