"""OpenVINO exports (fp32, bf16, int8), the torch-free runtime on them, bench rows and `export --target cpu`.

Everything here runs the real OpenVINO and NNCF (no doubles); the module is skipped, with the reason,
where `mimzoo[openvino]` is not installed, except the test of what a user sees without it.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from export_helpers import tiny_export
from helpers import run_cli, run_py

import mimzoo
from mimzoo.exporters.spec import ExportError, ExportSpec, Tolerances, VerificationError

pytest.importorskip("openvino", reason="pip install 'mimzoo[openvino]' to test the OpenVINO exports")
pytest.importorskip("nncf", reason="pip install 'mimzoo[openvino]' to test OpenVINO INT8")

RUNTIME = Path(mimzoo.__file__).parent / "exporters" / "runtime.py"
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}

# Blocks the import of the named top-level packages, as if they were not installed.
BLOCKER = """
import sys
class _Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Block(NAMES))
"""


def blocker(names: set[str]) -> str:
    return BLOCKER.replace("NAMES", repr(sorted(names)))


def ov_export(tmp_path: Path, precision: str, name: str = "ov"):
    return tiny_export(tmp_path, name, format="openvino", precision=precision)


def test_bf16_has_mimzoos_gate_and_is_openvino_only():
    assert Tolerances.for_precision("bf16").to_dict() == {"cosine_min": 0.999}
    with pytest.raises(ExportError, match=r"onnx exports have no bf16; use --precision fp32/fp16/int8, or --format openvino"):
        ExportSpec(format="onnx", precision="bf16")
    with pytest.raises(ExportError, match=r"openvino exports have no fp16; use --precision fp32/bf16/int8"):
        ExportSpec(format="openvino", precision="fp16")


def test_int8_method_is_refused_where_it_picks_nothing(tmp_path):
    """--int8-method chooses onnxruntime's quantizer; OpenVINO INT8 (NNCF) and TensorRT would silently ignore it."""
    with pytest.raises(ExportError, match=r"--int8-method applies to ONNX INT8 exports only \(OpenVINO INT8 is NNCF"):
        ExportSpec(format="openvino", precision="int8", int8_method="static")
    with pytest.raises(ExportError, match=r"drop --int8-method dynamic or use --format onnx --int8"):
        ExportSpec(format="onnx", precision="fp32", int8_method="dynamic")
    assert ExportSpec(format="onnx", precision="int8", int8_method="static").int8_method == "static"
    r = run_cli("export", "mae-vit-test", "--random-init", "--format", "openvino", "--int8", "--int8-method",
                "static", "-o", str(tmp_path / "x"))
    assert r.returncode != 0 and "--int8-method applies to ONNX INT8 exports only" in r.stderr
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_export_writes_a_verified_ir_folder(tmp_path, precision):
    folder, _ = ov_export(tmp_path, precision)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [".mimzoo-output.json", "export.json", "model.bin", "model.xml"]
    meta = json.loads((folder / "export.json").read_text())
    assert (meta["format"], meta["precision"]) == ("openvino", precision)
    assert meta["openvino"]["inference_precision"] == HINTS[precision]
    assert meta["preprocess"]["input_size"] == [3, 32, 32] and meta["provenance"]["model"] == "mae-vit-test"
    rep = meta["verification"]
    assert rep["passed"] and rep["tolerances"] == Tolerances.for_precision(precision).to_dict()
    if precision == "fp32":
        assert rep["max_abs"] <= 1e-4
    else:
        assert rep["cosine_min"] >= (0.999 if precision == "bf16" else 0.99) and rep["cosine_min"] < 1 - 1e-9
    if precision == "int8":
        assert rep["knn_top1_drop"] <= 0.5 and meta["int8"]["calibration_images"] == 64
        assert meta["int8"]["attempts"][-1]["passed"]
    marker = json.loads((folder / ".mimzoo-output.json").read_text())
    assert marker["verified"] is True and marker["artifact_sha256"] == meta["artifact_sha256"]
    # the preprocessing also travels inside the IR
    import openvino as ov

    rt = ov.Core().read_model(str(folder / "model.xml")).get_rt_info(["mimzoo", "preprocess"])
    assert json.loads(rt.astype(str)) == meta["preprocess"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_verify_passes_and_the_cli_shows_it(tmp_path, precision):
    folder, encoder = ov_export(tmp_path, precision)
    rep = mimzoo.verify(folder, encoder, images=64)
    assert rep["passed"] and rep["tolerances"] == Tolerances.for_precision(precision).to_dict()
    r = run_cli("verify", str(folder), "--images", "64")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(f"{folder}: verification passed")


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bf16 units (OpenVINO runs the bf16 hint as f32)")
def test_bf16_really_runs_in_bf16(tmp_path):
    """The folder's hint is applied: the bf16 export differs from fp32 by bf16 rounding, not by 0."""
    folder, encoder = ov_export(tmp_path, "bf16")
    meta = json.loads((folder / "export.json").read_text())
    assert meta["openvino"]["verified_on"]["inference_precision"] == "bf16"
    from mimzoo.exporters.runtime import OpenVinoModel, load_export

    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    got = load_export(folder).run(x)["embedding"]
    exact = OpenVinoModel(folder / "model.xml", inference_precision="f32").run(x)["embedding"]
    import torch

    ref = encoder(torch.from_numpy(x)).detach().numpy()
    assert np.abs(exact - ref).max() < 1e-4
    assert 1e-5 < np.abs(got - ref).max() < 0.1


def test_a_tampered_bin_fails_verify(tmp_path):
    folder, _ = ov_export(tmp_path, "fp32")
    data = bytearray((folder / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0x40
    (folder / "model.bin").write_bytes(bytes(data))
    r = run_cli("verify", str(folder), "--images", "16")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == (f"error: {folder}/model.xml or model.bin differs from the model verified "
                                                 "at export (digest mismatch): it was changed afterwards; export again")


def test_a_gate_bf16_cannot_meet_fails_and_writes_nothing(tmp_path):
    with pytest.raises(VerificationError, match=r"openvino bf16 export of mae-vit-test failed verification \(max_abs"):
        mimzoo.export("mae-vit-test", tmp_path / "ov", format="openvino", precision="bf16", pretrained=False,
                      images=16, tolerances={"max_abs": 1e-7})
    assert list(tmp_path.iterdir()) == []


def test_the_torch_free_runtime_runs_an_ir_folder(tmp_path):
    folder, encoder = ov_export(tmp_path, "bf16")
    code = blocker({"torch", "mimzoo", "onnxruntime", "onnx", "timm"}) + textwrap.dedent(f"""
        import importlib.util, numpy as np
        from PIL import Image
        spec = importlib.util.spec_from_file_location("runtime", {str(RUNTIME)!r})
        rt = importlib.util.module_from_spec(spec); spec.loader.exec_module(rt)
        img = Image.fromarray((np.arange(40 * 50 * 3) % 251).astype(np.uint8).reshape(40, 50, 3))
        m = rt.load_export({str(folder)!r}, threads=1)
        print(type(m).__name__, m.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
        print(m.embed([img]).tolist())
    """)
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    name, hint = r.stdout.splitlines()[0].split()
    assert name == "ExportedOpenVinoModel" and hint == ("bf16" if _cpu_has_bf16() else "f32")  # the folder's hint
    got = np.asarray(json.loads(r.stdout.splitlines()[1]))
    from PIL import Image

    img = Image.fromarray((np.arange(40 * 50 * 3) % 251).astype(np.uint8).reshape(40, 50, 3))
    ref = encoder(encoder.transform(img)[None]).detach().numpy()
    cos = float((got * ref).sum() / (np.linalg.norm(got) * np.linalg.norm(ref)))
    assert got.shape == ref.shape and cos >= 0.999


def test_without_openvino_one_line_says_how_to_install(tmp_path):
    out = tmp_path / "ov"
    code = blocker({"openvino"}) + textwrap.dedent(f"""
        from mimzoo.cli.main import main
        sys.argv = ["mimzoo", "export", "mae-vit-test", "--random-init", "--format", "openvino", "-o", {str(out)!r}]
        main()
    """)
    r = run_py(code)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["error: OpenVINO fp32 exports need it, but OpenVINO is not installed; "
                                             "pip install 'mimzoo[openvino]'"]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bench_rows_for_the_openvino_backends(tmp_path):
    exports = {f"openvino{s}": ov_export(tmp_path, p, f"ov-{p}")[0] for s, p in (("", "fp32"), ("-bf16", "bf16"),
                                                                                 ("-int8", "int8"))}
    rows = mimzoo.api.export.bench("mae-vit-test", pretrained=False, backends=["torch", *exports], batches=(2,),
                                   iters=3, warmup=1, threads=1, exports=exports, memory=False)
    by = {r["backend"]: r for r in rows}
    for name, precision in (("openvino", "f32"), ("openvino-bf16", "bf16"), ("openvino-int8", "f32")):
        row = by[name]
        assert row["status"] == "ok", row["note"]
        assert row["threads"] == 1 and row["throughput"] > 0 and row["speedup"] is not None
        assert f"OpenVINO CPU, {precision}" in row["note"]


def test_target_cpu_keeps_the_fastest_that_passes(tmp_path):
    out = tmp_path / "best"
    r = run_cli("export", "mae-vit-test", "--random-init", "--target", "cpu", "--images", "64", "--threads", "1",
                "-o", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    table = {ln.split()[0]: ln for ln in lines[2:-1]}
    assert set(table) == {"onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8"}
    kept = [n for n, ln in table.items() if " kept " in ln]
    assert len(kept) == 1 and "fastest that passed its gate" in table[kept[0]]
    assert all("slower than " + kept[0] in ln for n, ln in table.items() if n != kept[0] and " slower " in ln)
    meta = json.loads((out / "export.json").read_text())
    fmt, precision = {"onnxruntime": ("onnx", "fp32"), "onnxruntime-int8": ("onnx", "int8"),
                      "openvino": ("openvino", "fp32"), "openvino-bf16": ("openvino", "bf16"),
                      "openvino-int8": ("openvino", "int8")}[kept[0]]
    assert (meta["format"], meta["precision"]) == (fmt, precision)
    assert lines[-1].startswith(f"wrote {out} ({kept[0]}: {fmt} {precision}, verified, fastest of 5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # the other candidates are gone
    assert mimzoo.verify(out, images=64)["passed"]


def test_target_refuses_a_format_of_its_own_choosing(tmp_path):
    r = run_cli("export", "mae-vit-test", "--random-init", "--target", "cpu", "--precision", "bf16",
                "-o", str(tmp_path / "x"))
    assert r.returncode != 0 and "--target picks the format and precision itself; drop --precision" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_target_cuda_without_a_gpu_names_doctor(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    r = run_cli("export", "mae-vit-test", "--random-init", "--target", "cuda", "-o", str(tmp_path / "x"))
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("error: --target cuda has nothing to run on here (no CUDA GPU is visible)")
    assert "run `mimzoo doctor`" in line and list(tmp_path.iterdir()) == []


def test_publish_ships_an_openvino_folder(tmp_path):
    """`publish --with-export` (dry run): the IR under openvino/<precision>/, re-checked against the weights."""
    from hub_standin import make_model_folder

    folder, encoder = make_model_folder(tmp_path, "enc", seed=0)
    export = tmp_path / "ov"
    mimzoo.export(str(folder), export, format="openvino", precision="bf16", images=16)
    other, _ = make_model_folder(tmp_path, "other", seed=1)
    out = tmp_path / "repo"
    r = run_cli("publish", str(folder), "--repo", "acme/tiny-mae", "--with-export", str(export), "--dry-run", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "openvino" / "bf16").iterdir()) == ["export.json", "model.bin", "model.xml"]
    card = (out / "README.md").read_text()
    assert "openvino/bf16/model.xml" in card and "With OpenVINO (`openvino/bf16`, bf16" in card
    from mimzoo.exporters.runtime import load_export

    got = load_export(out / "openvino" / "bf16").run(np.zeros((1, 3, 32, 32), np.float32))["embedding"]
    assert got.shape == (1, encoder.num_features)
    assert mimzoo.verify(out / "openvino" / "bf16", encoder, images=16)["passed"]  # as downloaded: no marker, digest ok
    (out / "openvino" / "bf16" / "model.bin").write_bytes(b"\0" + (out / "openvino" / "bf16" / "model.bin").read_bytes()[1:])
    with pytest.raises(ExportError, match=r"does not match the artifact_sha256 in export.json: incomplete or changed"):
        mimzoo.verify(out / "openvino" / "bf16", encoder, images=16)
    r = run_cli("publish", str(other), "--repo", "acme/tiny-mae", "--with-export", str(export), "--dry-run",
                "-o", str(tmp_path / "repo2"))
    assert r.returncode == 1 and "does not match the model being published" in r.stderr
    assert not (tmp_path / "repo2").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
