"""`mimzoo verify` on an export as a published Hub repo holds it (onnx/<precision>/, no .mimzoo-output.json).

The marker only claims "complete and verified"; verify re-measures against PyTorch with mimzoo's own
tolerances anyway. So an unmarked folder is accepted when its files match the artifact_sha256 of its
export.json (which proves them complete), refused when they do not or when there is no digest; a marker
that does not claim a verified export is refused as before, and publish still requires the marker.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import mimzoo
from mimzoo._outputs import write_marker
from mimzoo.exporters.metadata import META_KEY
from tests.faults.trial import expect_error, run


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("published")
    model = mimzoo.load("mae-vit-test", pretrained=False).save_pretrained(root / "model")
    mimzoo.export(str(model), root / "exp", images=16)
    mimzoo.publish(str(model), "acme/tiny", with_onnx=[root / "exp"], dry_run=True, output=root / "repo")
    return {"model": Path(model), "onnx": root / "repo" / "onnx" / "fp32", "root": root}


def copy_of(published, tmp_path) -> Path:
    out = tmp_path / "fp32"
    shutil.copytree(published["onnx"], out)
    return out


def verify(folder: Path, published, tmp_path):
    return run("verify", str(folder), "--model", str(published["model"]), "--images", "16", cwd=tmp_path,
               cache=tmp_path / "cache")


def test_the_layout_publish_uploads_has_no_marker_and_verifies(published, tmp_path):
    folder = published["onnx"]
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "model.onnx"]  # as uploaded: no marker
    out = verify(folder, published, tmp_path)
    assert out.rc == 0, out.stderr
    assert f"{folder}: verification passed" in out.stdout


def _rewrite_onnx(folder: Path, change) -> None:
    import onnx

    model = onnx.load(str(folder / "model.onnx"))
    change(model)
    onnx.save(model, str(folder / "model.onnx"))


def test_changed_weights_do_not_match_the_digest(published, tmp_path):
    import numpy as np
    from onnx import numpy_helper

    folder = copy_of(published, tmp_path)

    def nudge(model):
        init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        arr = numpy_helper.to_array(init).copy()
        arr.flat[0] += 1.0
        init.CopyFrom(numpy_helper.from_array(arr, init.name))

    _rewrite_onnx(folder, nudge)
    out = verify(folder, published, tmp_path)
    expect_error(out, says=("does not match the artifact_sha256 in export.json",), fix=("download or export it again",))


def test_no_digest_and_no_marker_is_refused(published, tmp_path):
    folder = copy_of(published, tmp_path)
    meta = json.loads((folder / "export.json").read_text())
    meta.pop("artifact_sha256")
    (folder / "export.json").write_text(json.dumps(meta))

    def drop(model):
        for prop in model.metadata_props:
            if prop.key == META_KEY:
                prop.value = json.dumps(meta)

    _rewrite_onnx(folder, drop)
    out = verify(folder, published, tmp_path)
    expect_error(out, says=("has neither mimzoo's .mimzoo-output.json nor an artifact_sha256",), fix=("export again",))


def test_a_marker_that_claims_no_verified_export_is_still_refused(published, tmp_path):
    folder = copy_of(published, tmp_path)
    write_marker(folder, "export", verified=False)
    out = verify(folder, published, tmp_path)
    expect_error(out, says=("is not a complete, verified mimzoo export",), fix=("export it again",))


def test_publish_still_requires_the_marker(published, tmp_path):
    out = run("publish", str(published["model"]), "--repo", "acme/again", "--with-onnx", str(published["onnx"]),
              "--dry-run", "-o", str(tmp_path / "repo"), cwd=tmp_path, cache=tmp_path / "cache")
    expect_error(out, says=("is not a complete, verified mimzoo export",))
    assert not (tmp_path / "repo").exists()
