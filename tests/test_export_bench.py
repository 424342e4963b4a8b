"""`mimzoo bench` on the tiny ViT: backends side by side, skips with reasons, table, markdown and chart."""

from __future__ import annotations

import json

import pytest
from export_helpers import tiny_export
from helpers import run_cli
from PIL import Image

from mimzoo.api.export import bench
from mimzoo.exporters.bench import Backend, BenchConfig, rows_from_times, time_interleaved, to_markdown
from mimzoo.exporters.chart import bar_chart
from mimzoo.exporters.spec import ExportError


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return {"onnxruntime": tiny_export(root, "fp32")[0], "onnxruntime-int8": tiny_export(root, "int8", precision="int8")[0]}


def test_bench_runs_backends_side_by_side(exports):
    rows = bench("mae-vit-test", pretrained=False, backends=["torch", "onnxruntime", "onnxruntime-int8", "tensorrt"],
                 batches=[1, 4], iters=3, warmup=1, threads=1, exports=exports)
    assert [(r["backend"], r["batch"]) for r in rows] == [
        (b, n) for n in (1, 4) for b in ("torch", "onnxruntime", "onnxruntime-int8", "tensorrt")]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 6
    for r in ok:
        assert r["throughput"] == pytest.approx(r["batch"] / (r["p50_ms"] / 1e3))
        assert r["p95_ms"] >= r["p50_ms"] > 0 and r["speedup"] > 0
        assert r["peak_mib"] is not None and r["peak_mib"] > 0  # measured in a fresh interpreter
    assert all(r["speedup"] == 1.0 for r in ok if r["backend"] == "torch")
    trt = [r for r in rows if r["backend"] == "tensorrt"]
    assert all(r["status"] == "skipped" and "GPU" in r["note"] for r in trt)
    assert "mae-vit-test-onnx" not in rows[1]["note"] and "fp32" in rows[1]["note"]  # the export it ran


def test_cli_writes_table_markdown_and_chart(tmp_path, exports):
    md, png = tmp_path / "bench.md", tmp_path / "bench.png"
    r = run_cli("bench", "mae-vit-test", "--random-init", "--backends", "torch,onnxruntime,torch-fp16",
                "--batch-sizes", "2", "--iters", "2", "--warmup", "1", "--threads", "1", "--no-memory",
                "--export", f"onnxruntime={exports['onnxruntime']}", "-o", str(md), "--chart", str(png))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines[lines.index("") + 1].split()  # the run's header, a blank line, then the table
    assert header[:9] == ["backend", "batch", "img/s", "p50", "ms", "IQR", "ms", "p95", "ms"]
    assert "torch-fp16" in r.stdout and "skipped" in r.stdout and "--device cuda" in r.stdout
    text = md.read_text()
    assert text.startswith("- model: mae-vit-test\n")
    table = text[text.index("| backend | batch | img/s |"):]
    assert table.count("\n") == 2 + 3 and "| IQR ms |" in table and "| x IQR | threads |" in table
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (960, 540)
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    assert (0, 114, 178) in colours and (230, 159, 0) in colours  # bars of the two backends that ran


def test_interleaved_timing_and_rows():
    order = []
    backends = [Backend(n, lambda x: x, lambda x, n=n: order.append(n)) for n in ("torch", "onnxruntime")]
    times = time_interleaved(backends, {"torch": 0, "onnxruntime": 0}, iters=3)
    # every round runs each backend once; the round's first backend rotates
    assert order == ["torch", "onnxruntime", "onnxruntime", "torch", "torch", "onnxruntime"]
    assert all(len(v) == 3 for v in times.values())
    rows = rows_from_times({"torch": [0.4, 0.2, 0.3], "onnxruntime": [0.1, 0.1, 0.2]}, 8, {"torch": 5.0}, {})
    assert rows[0].p50_ms == pytest.approx(300) and rows[1].speedup == pytest.approx(3.0)
    # spreads: latency quartiles and the IQR of per-round ratios (4, 2, 1.5 paired by round)
    assert (rows[0].q1_ms, rows[0].q3_ms, rows[0].min_ms, rows[0].max_ms) == pytest.approx((250, 350, 200, 400))
    assert (rows[1].speedup_q1, rows[1].speedup_q3) == pytest.approx((1.75, 3.0))
    assert rows[1].to_dict()["speedup_iqr"] == "1.75-3.00" and rows[1].to_dict()["iqr_ms"] == "100-150"
    assert rows[0].throughput == pytest.approx(8 / 0.3) and rows[0].peak_mib == 5.0 and rows[1].peak_mib is None
    assert "| onnxruntime | 8 |" in to_markdown([r.to_dict() for r in rows])


def test_bad_configs_are_errors():
    with pytest.raises(ExportError, match="unknown backend tensorflow"):
        BenchConfig(backends=("torch", "tensorflow"))
    with pytest.raises(ExportError, match="batches must be positive"):
        BenchConfig(batches=(0,))
    r = run_cli("bench", "mae-vit-test", "--batch", "1,x")
    assert r.returncode == 2 and "not a comma-separated list of positive integers" in r.stderr


def test_chart_lists_skipped_backends(tmp_path):
    rows = [{"backend": "torch", "batch": 1, "throughput": 4.0}, {"backend": "tensorrt", "batch": 1, "throughput": None}]
    path = bar_chart(rows, tmp_path / "c.png", title="t")
    assert path.is_file() and not list(tmp_path.glob(".*"))  # written atomically, no temp left
    with Image.open(path) as im:
        assert im.size == (960, 540)
    assert json.dumps(rows)  # rows stay plain data


def test_cuda_provider_that_falls_back_is_reported(exports, monkeypatch):
    """Issue 12 item 3: onnxruntime lists CUDA (onnxruntime-gpu without its CUDA libraries, or beside the CPU
    package) but the session runs on the CPU: the row says so, it is never timed as a CUDA row."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    rows = bench("mae-vit-test", pretrained=False, backends=["onnxruntime"], batches=[1], iters=1, warmup=0,
                 device="cuda", exports={"onnxruntime": exports["onnxruntime"]}, memory=False)
    assert len(rows) == 1 and rows[0]["status"] == "skipped" and rows[0]["throughput"] is None
    assert "fell back to CPUExecutionProvider" in rows[0]["note"]
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in rows[0]["note"]


def test_io_binding_gives_the_session_outputs(exports):
    """Item 8: the IO-binding call used for CUDA rows returns what session.run does (checked here on the CPU)."""
    import numpy as np

    from mimzoo.exporters.bench_backends import io_binding
    from mimzoo.exporters.runtime import OnnxModel

    model = OnnxModel(exports["onnxruntime"] / "model.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    prepare, call = io_binding(model, "cpu")
    (got,) = call(prepare(x))
    np.testing.assert_allclose(got.numpy(), model.session.run(None, {model.input_name: x})[0], rtol=1e-6, atol=1e-6)


def test_cpu_rows_say_how_they_were_timed(exports):
    rows = bench("mae-vit-test", pretrained=False, backends=["torch", "onnxruntime"], batches=[1], iters=1, warmup=1,
                 threads=1, exports={"onnxruntime": exports["onnxruntime"]}, memory=False)
    assert "timed: input and outputs CPU tensors" in rows[0]["note"]
    assert "CPU; timed: numpy in and out (session.run)" in rows[1]["note"]


def test_every_backend_gets_the_same_threads(exports):
    """Issue 14 item 3: one thread count for all backends, never each runtime's own default; each row reports
    what its runtime really used (read back from torch and from the onnxruntime session)."""
    import torch

    from mimzoo.exporters.bench_machine import default_threads

    before = torch.get_num_threads()
    for threads, expected in ((None, default_threads()), (1, 1)):
        rows = bench("mae-vit-test", pretrained=False, backends=["torch", "onnxruntime", "onnxruntime-int8"],
                     batches=[1], iters=2, warmup=1, threads=threads, exports=exports, memory=False)
        assert [r["threads"] for r in rows] == [expected] * 3, rows
    assert torch.get_num_threads() == before  # the caller's setting is restored


def test_onnxruntime_sessions_take_the_bench_threads(exports):
    from mimzoo.exporters.bench_backends import load_backend

    from mimzoo.exporters.bench_backends import BenchSession

    b = load_backend("onnxruntime", None, BenchConfig(backends=("onnxruntime",), threads=3), exports["onnxruntime"])
    assert b.threads() == 3  # read back from the session bench runs
    s = BenchSession.open(exports["onnxruntime"] / "model.onnx", ["CPUExecutionProvider"], 3)
    opts = s.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (3, 1)
    with pytest.raises(ExportError, match="--threads must be >= 1"):
        BenchConfig(threads=0)


def _fake_load(load1):
    from mimzoo.exporters.bench_machine import LoadProbe

    return LoadProbe(loadavg=lambda: (load1, load1, load1), cpu_seconds=lambda: 0.0)


def test_header_states_threads_model_command_machine_and_warns_on_load():
    from importlib.metadata import version

    from mimzoo.exporters.bench_machine import bench_header, usable_cores

    cores = usable_cores()
    quiet = bench_header("mae-vit-b", threads=cores, device="cpu", batches=(1, 8), iters=10, warmup=2,
                         command="python benchmarks/export_vitb_cpu.py", probe=_fake_load(0.2))
    text = "\n".join(quiet.lines())
    assert quiet.warning is None and "warning" not in text
    assert "model: mae-vit-b" in text and "command: python benchmarks/export_vitb_cpu.py" in text
    assert f"threads: {cores} intra-op thread(s) for every backend" in text and "inter_op_num_threads 1" in text
    assert f"torch {version('torch')}" in text and f"onnxruntime {version('onnxruntime')}" in text
    assert f"{cores} usable cores" in text and quiet.machine.cpu in text
    busy = bench_header("mae-vit-b", threads=cores, device="cpu", batches=(1,), iters=3, warmup=1, command="x",
                        probe=_fake_load(cores + 3.0))
    assert busy.warning and "machine is busy" in busy.warning and "\n" not in busy.warning
    assert busy.lines()[-1] == f"warning: {busy.warning}"
    # one thread leaves cores - 1 free: the same load minus those cores still warns only above the tolerance
    assert bench_header("m", threads=1, device="cpu", batches=(1,), iters=1, warmup=0, command="x",
                        probe=_fake_load(cores - 1 + 0.3)).warning is None
    data = json.loads(json.dumps(busy.to_dict()))
    assert data["threads"] == cores and data["machine"]["torch"] == version("torch") and data["warning"]


def test_cli_prints_one_warning_line_when_the_load_is_high(tmp_path, exports):
    """The CLI reads the load through a probe it is handed (click's context object), so a test fakes a busy
    machine without touching os; the warning is one line on stderr and in the JSON output."""
    from click.testing import CliRunner

    from mimzoo.cli.bench_cmd import bench as bench_command

    out = tmp_path / "b.json"
    args = ["mae-vit-test", "--random-init", "--backends", "torch,onnxruntime", "--batch-sizes", "1", "--iters", "2",
            "--warmup", "0", "--threads", "1", "--no-memory", "--export", f"onnxruntime={exports['onnxruntime']}",
            "-o", str(out)]
    busy = CliRunner().invoke(bench_command, args, obj={"load_probe": _fake_load(50.0)})
    assert busy.exit_code == 0, busy.output
    warnings = [line for line in busy.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "machine is busy" in warnings[0]
    data = json.loads(out.read_text())
    assert data["header"]["warning"] and data["header"]["threads"] == 1
    assert {r["threads"] for r in data["rows"]} == {1} and all(r["speedup_iqr"] for r in data["rows"])
    args[-1] = str(tmp_path / "quiet.json")
    quiet = CliRunner().invoke(bench_command, args, obj={"load_probe": _fake_load(0.0)})
    assert quiet.exit_code == 0 and "warning:" not in quiet.stderr


def test_vitb_script_runs_on_the_tiny_model(tmp_path):
    """benchmarks/export_vitb_cpu.py (the command the README's figures come from), checked on mae-vit-test:
    equal threads on every row, a header with the command and machine, medians with their spread."""
    import subprocess
    import sys

    from helpers import REPO

    stem = tmp_path / "out" / "vitb"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "export_vitb_cpu.py"), "--model", "mae-vit-test",
                        "--threads", "1", "--iters", "2", "--warmup", "1", "--images", "64", "--no-ablations",
                        "--no-memory", "--workdir", str(tmp_path / "work"), "--out", str(stem)],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["header"]["threads"] == 1 and data["header"]["command"].startswith(
        "python benchmarks/export_vitb_cpu.py --model mae-vit-test --threads 1")
    rows = data["bench"]
    assert [(x["backend"], x["batch"]) for x in rows] == [(b, n) for n in (1, 8)
                                                          for b in ("torch", "onnxruntime", "onnxruntime-int8")]
    assert all(x["status"] == "ok" and x["threads"] == 1 and x["iqr_ms"] and x["speedup_iqr"] for x in rows)
    md = stem.with_suffix(".md").read_text()
    assert "- command: `python benchmarks/export_vitb_cpu.py --model mae-vit-test" in md and "- machine: " in md
    assert "ONNX Runtime fp32 vs PyTorch eager: batch 1 **" in md and "(IQR " in md and "| x IQR | threads |" in md
    with Image.open(stem.with_suffix(".png")) as im:
        assert im.format == "PNG"


def test_load_probe_subtracts_this_process_by_its_recent_cpu_time():
    """The kernel's 1-minute load decays with a 60 s time constant; so does the estimate of this process's share:
    a process busy on 2 cores only in its last minute counts far more than one busy long ago."""
    import math
    import time

    from mimzoo.exporters.bench_machine import LoadProbe

    cpu = [0.0]
    probe = LoadProbe(loadavg=lambda: (3.0, 0, 0), cpu_seconds=lambda: cpu[0])
    now = time.monotonic()
    probe._samples = [(now - 600, 0.0), (now - 60, 0.0)]  # idle for 9 minutes, then 2 cores busy for a minute
    cpu[0] = 120.0
    load = probe.read()
    assert load.own == pytest.approx(2 * (1 - math.exp(-1)), rel=0.02) and load.others == pytest.approx(3 - load.own)
    probe._samples = [(now - 600, 0.0), (now - 540, 120.0)]  # the same work, but eight minutes ago
    assert probe.read().own < 0.01
    with probe.watching(every=0.01):
        time.sleep(0.1)
    assert len(probe._samples) > 4  # sampled while the block ran
