"""Verification always: failing exports leave nothing, `verify` refuses corrupt or mismatched folders.

Real exports of the tiny ViT, real onnxruntime sessions, real digits images. Interrupts are real
KeyboardInterrupts raised from the progress callback at a given step of the pipeline.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from export_helpers import tiny_encoder, tiny_export

import mimzoo
from mimzoo.exporters.metadata import CorruptExportError
from mimzoo.exporters.spec import ExportError, Tolerances, VerificationError
from mimzoo.exporters.verify import Outputs, compare, knn_figures, knn_predict


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return tiny_export(tmp_path_factory.mktemp("good"))[0]


def _leftovers(root):
    return sorted(p.name for p in root.iterdir())


def test_verify_passes_on_a_fresh_export(good):
    rep = mimzoo.verify(good, images=32)
    assert rep["passed"] and rep["max_abs"] <= 1e-4 and rep["images"] == 32 and rep["failures"] == []
    assert rep["tolerances"] == {"max_abs": 1e-4}  # the ones recorded at export time


def test_failed_verification_writes_nothing(tmp_path):
    with pytest.raises(VerificationError, match=r"fp32 export of mae-vit-test failed verification \(max_abs .* > 0\)"
                                                 r".*nothing was written") as e:
        mimzoo.export("mae-vit-test", tmp_path / "out", pretrained=False, images=16, tolerances={"max_abs": 0.0})
    assert e.value.report["passed"] is False and e.value.report["max_abs"] > 0
    assert _leftovers(tmp_path) == []  # no folder, no hidden temp folder


def test_a_failed_export_keeps_the_previous_good_one(tmp_path):
    folder, _ = tiny_export(tmp_path, "out")
    before = (folder / "export.json").read_bytes()
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        mimzoo.export("mae-vit-test", folder, pretrained=False, images=16)
    with pytest.raises(VerificationError):
        mimzoo.export("mae-vit-test", folder, pretrained=False, images=16, tolerances={"max_abs": 0.0}, overwrite=True)
    assert (folder / "export.json").read_bytes() == before and _leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize("step", ["exporting ONNX", "verifying with onnxruntime"])
def test_an_interrupted_export_leaves_nothing(tmp_path, step):
    def progress(line):  # Ctrl-C while the ONNX file is being written, or once it is complete
        if line.startswith(step):
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        mimzoo.export("mae-vit-test", out, pretrained=False, images=8, progress=progress)
    assert _leftovers(tmp_path) == []


def test_verify_fails_beyond_tolerance_via_cli(good):
    from click.testing import CliRunner

    from mimzoo.cli.main import cli

    r = CliRunner().invoke(cli, ["verify", str(good), "--images", "16", "--tol", "max_abs=1e-12"])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {good} fails verification: max_abs ")
    assert "max abs error" in r.stdout and "NO" in r.stdout
    ok = CliRunner().invoke(cli, ["verify", str(good), "--images", "16", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["passed"] is True


def test_corrupt_onnx_is_a_clear_error(tmp_path, good):
    folder = shutil.copytree(good, tmp_path / "corrupt")
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])  # a half-copied file
    with pytest.raises(CorruptExportError, match="model.onnx is not a readable ONNX model|fails the ONNX checker"):
        mimzoo.verify(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(CorruptExportError, match="model.onnx is missing; copy the whole export folder"):
        mimzoo.verify(folder)
    with pytest.raises(CorruptExportError, match="has no export.json"):
        mimzoo.verify(tmp_path)
    (folder / "export.json").write_text("{not json")
    with pytest.raises(CorruptExportError, match="export.json is not valid JSON"):
        mimzoo.verify(folder)


def test_missing_external_data_is_a_clear_error(tmp_path, monkeypatch):
    from mimzoo.exporters import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 1024)
    r = mimzoo.export("mae-vit-test", tmp_path / "ext", pretrained=False, images=8)
    (r.path / "model.onnx.data").unlink()
    with pytest.raises(CorruptExportError, match=r"needs model.onnx.data, which is missing; copy the whole export folder"):
        mimzoo.verify(r.path)


def test_mixed_or_mismatched_folders_are_refused(tmp_path, good):
    other, _ = tiny_export(tmp_path, "tokens", tokens=True)
    mixed = shutil.copytree(good, tmp_path / "mixed")
    shutil.copy(other / "model.onnx", mixed / "model.onnx")  # model.onnx of another export
    with pytest.raises(CorruptExportError, match="export.json and the metadata inside model.onnx disagree"):
        mimzoo.verify(mixed)
    # an export of a differently sized model, compared with this one
    with pytest.raises(CorruptExportError, match=r"takes input \[3, 32, 32\], the model \[3, 48, 48\]"):
        mimzoo.verify(good, mimzoo.load("mae-vit-test", pretrained=False, img_size=48))


def test_provenance_that_now_loads_other_weights_is_refused(tmp_path, good):
    folder = shutil.copytree(good, tmp_path / "seed")
    meta = json.loads((folder / "export.json").read_text())
    meta["provenance"]["init_seed"] = 1  # rebuilds other random weights
    (folder / "export.json").write_text(json.dumps(meta))
    model = onnx.load(str(folder / "model.onnx"))
    next(p for p in model.metadata_props if p.key == "mimzoo_export").value = json.dumps(meta)
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(CorruptExportError, match="loads other weights than the ones exported .*--model"):
        mimzoo.verify(folder)
    # given the right encoder explicitly, the numbers decide, and they pass
    assert mimzoo.verify(folder, tiny_encoder(0), images=16)["passed"]
    # the wrong one fails numerically
    rep = mimzoo.verify(folder, tiny_encoder(1), images=16, raise_on_failure=False)
    assert rep["passed"] is False and rep["max_abs"] > 1e-2


def test_int8_gate_needs_labelled_images(tmp_path):
    with pytest.raises(ExportError, match="k-NN check that needs labelled real images; pass --data digits"):
        mimzoo.export("mae-vit-test", tmp_path / "q", pretrained=False, precision="int8", data=None)
    assert _leftovers(tmp_path) == []


def test_compare_and_knn_figures():
    ref = Outputs([{"embedding": np.array([[1.0, 0.0], [0.0, 2.0]])}], None)
    got = Outputs([{"embedding": np.array([[1.0, 0.1], [0.0, 2.0]])}], None)
    fig = compare(ref, got)
    assert fig["max_abs"] == pytest.approx(0.1) and fig["max_rel"] == pytest.approx(0.1)
    assert fig["cosine_min"] == pytest.approx(1 / np.sqrt(1.01))
    nan = Outputs([{"embedding": np.array([[np.nan, 0.0], [0.0, 2.0]])}], None)
    assert compare(ref, nan)["cosine_min"] == float("-inf")  # NaN never passes
    # two tight clusters: perfect k-NN; swapping labels of one point costs exactly one prediction
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal([5, 0], 0.1, (20, 2)), rng.normal([0, 5], 0.1, (20, 2))])
    labels = np.array([0] * 20 + [1] * 20)
    assert (knn_predict(feats, labels) == labels).all()
    moved = feats.copy()
    moved[0] = [0, 5]  # one image's embedding lands in the other cluster
    k = knn_figures(feats, moved, labels)
    assert k["knn_top1_torch"] == 100.0 and k["knn_top1_export"] == 97.5
    assert k["knn_top1_drop"] == 2.5 and k["knn_top1_agreement"] == pytest.approx(39 / 40)


def test_tolerances():
    assert Tolerances.for_precision("fp32").to_dict() == {"max_abs": 1e-4}
    assert Tolerances.for_precision("fp16").to_dict() == {"cosine_min": 0.999}
    assert Tolerances.for_precision("int8").to_dict() == {"cosine_min": 0.99, "knn_top1_drop": 0.5}
    t = Tolerances.for_precision("int8")
    assert t.failures({"cosine_min": 0.995, "knn_top1_drop": 0.5}) == []
    assert t.failures({"cosine_min": 0.93, "knn_top1_drop": 1.0}) == ["cosine_min 0.93 < 0.99", "knn_top1_drop 1 > 0.5"]
    assert t.failures({"cosine_min": float("nan"), "knn_top1_drop": None})[1].startswith("knn_top1_drop not measured")
    with pytest.raises(ExportError, match="unknown tolerance cos"):
        t.updated({"cos": 0.9})
    with pytest.raises(ExportError, match="must be a number >= 0"):
        t.updated({"max_abs": -1})


def _tamper(folder, *, scale: float | None = None, loosen: bool = True, redigest: bool = False):
    """Edit an export as an attacker would: scale its largest initializer, loosen the limits export.json
    records (and its copy inside model.onnx), and optionally recompute the weights digest it records."""
    from onnx import numpy_helper

    from mimzoo._outputs import MARKER
    from mimzoo.exporters.metadata import artifact_sha256

    model = onnx.load(str(folder / "model.onnx"))
    if scale is not None:
        init = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, init.name))
    meta = json.loads((folder / "export.json").read_text())
    if loosen:
        meta["verification"]["tolerances"] = {"max_abs": 1e6, "cosine_min": 0.0}
    if redigest:
        onnx.save(model, str(folder / "model.onnx"))
        meta["artifact_sha256"] = artifact_sha256(folder / "model.onnx")
        marker = json.loads((folder / MARKER).read_text())
        (folder / MARKER).write_text(json.dumps({**marker, "artifact_sha256": meta["artifact_sha256"]}))
    next(p for p in model.metadata_props if p.key == "mimzoo_export").value = json.dumps(meta)
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "export.json").write_text(json.dumps(meta))
    return meta


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """The exported weights as a model folder (what `publish --with-onnx` ships the export beside)."""
    folder = tmp_path_factory.mktemp("src") / "tiny"
    mimzoo.save_pretrained(tiny_encoder(0), folder)
    return folder


def _publish_dry_run(model_folder, export, out):
    from tests.faults.trial import run

    return run("publish", str(model_folder), "--repo", "acme/tiny", "--with-onnx", str(export), "--dry-run", "-o", str(out))


@pytest.mark.parametrize("redigest", [False, True], ids=["digest-kept", "digest-recomputed"])
def test_tampered_weights_with_loosened_limits_fail_verify_and_publish(tmp_path, good, model_folder, redigest):
    from tests.faults.trial import expect_error, listing, run

    folder = shutil.copytree(good, tmp_path / "tampered")
    _tamper(folder, scale=-0.5, redigest=redigest)
    out = run("verify", str(folder), "--images", "16")
    if redigest:  # the digest matches the edited file: the numbers, gated by mimzoo's own limits, decide
        line = expect_error(out, says=("fails verification", "max_abs"))
        assert "limit" in out.stdout and "NO" in out.stdout
    else:
        line = expect_error(out, says=("differs from the model verified at export",), fix=("export again",))
    pub = _publish_dry_run(model_folder, folder, tmp_path / "repo")
    expect_error(pub, says=("does not match the model" if redigest else "weights digest",))
    assert "repo" not in {p.split("/")[0] for p in listing(tmp_path)}, line  # nothing published


def test_verify_ignores_the_limits_a_folder_records_and_rechecks_its_figures(tmp_path, good):
    folder = shutil.copytree(good, tmp_path / "claims")
    meta = _tamper(folder, loosen=True)  # weights intact, limits loosened: the real figures still pass
    rep = mimzoo.verify(folder, images=16)
    assert rep["passed"] and rep["tolerances"] == {"max_abs": 1e-4}
    meta["verification"]["max_abs"] = 0.5  # a report claiming figures that break the gate
    model = onnx.load(str(folder / "model.onnx"))
    next(p for p in model.metadata_props if p.key == "mimzoo_export").value = json.dumps(meta)
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "export.json").write_text(json.dumps(meta))
    rep = mimzoo.verify(folder, images=16, raise_on_failure=False)
    assert not rep["passed"] and rep["failures"] == ["export.json records max_abs 0.5 > 0.0001"]
    # an explicit limit from the caller still counts
    assert mimzoo.verify(folder, images=16, tolerances={"max_abs": 1.0})["passed"]


def test_a_folder_without_the_verified_marker_is_refused(tmp_path, good, model_folder):
    from tests.faults.trial import expect_error, run

    from mimzoo._outputs import MARKER

    from mimzoo._outputs import write_marker

    folder = shutil.copytree(good, tmp_path / "unmarked")
    (folder / MARKER).unlink()  # what an export made before the marker looks like (or one downloaded from the Hub)
    expect_error(_publish_dry_run(model_folder, folder, tmp_path / "repo"), says=("not a complete, verified",))
    assert not (tmp_path / "repo").exists()  # publish requires the marker; verify re-measures an unmarked folder
    # whose digest matches (tests/test_verify_published_export.py), but never one whose marker says unverified
    write_marker(folder, "export", verified=False)
    expect_error(run("verify", str(folder)), says=("not a complete, verified mimzoo export",), fix=("export it again",))
