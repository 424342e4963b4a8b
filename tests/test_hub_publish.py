"""Publishing to a Hub and loading back, with the real huggingface_hub client over real HTTP.

The Hub is tests/hub_standin.py, a server on 127.0.0.1. Uploads take the LFS path
(HF_HUB_DISABLE_XET=1): the stand-in does not speak Xet, so the client's Xet upload and download
paths are NOT covered here; neither are LFS multipart transfers or CDN redirects.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from hub_standin import NO_PROXY, TOKEN, HubStandIn, make_model_folder, make_onnx_export

import mimzoo
from mimzoo.errors import HubFileNotFoundError, WeightsError
from mimzoo.hub.publish import PublishError
from mimzoo.weights import read_checkpoint

X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny encoders with different weights, as model folders, and an ONNX export of the first."""
    root = tmp_path_factory.mktemp("models")
    folder_a, enc_a = make_model_folder(root, "enc-a", seed=0)
    folder_b, enc_b = make_model_folder(root, "enc-b", seed=1)
    export = make_onnx_export(enc_a, folder_a, root / "export-a")
    return {"a": folder_a, "b": folder_b, "enc_a": enc_a, "enc_b": enc_b, "export": export, "root": root}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fresh stand-in; the in-process client uses LFS, is online, and finds the token in HF_TOKEN."""
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import close_session

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))  # not the machine's login
    monkeypatch.setenv("NO_PROXY", NO_PROXY)
    close_session()
    with HubStandIn({TOKEN: ("acme",)}) as server:
        yield server
    close_session()


def load(name, hub, tmp_path, **kw):
    return mimzoo.load(name, endpoint=hub.url, cache_dir=tmp_path / "cache", **kw)


def test_round_trip_publish_download_load(models, hub, tmp_path):
    result = mimzoo.publish(str(models["a"]), "acme/tiny-mae", endpoint=hub.url, with_onnx=models["export"])
    assert result.commit == hub.head("acme/tiny-mae") and result.previous == hub.history("acme/tiny-mae")[1]
    # the binary files went through the LFS batch API and the signed PUT, the rest in the ndjson commit
    assert "POST /acme/tiny-mae.git/info/lfs/objects/batch" in hub.log
    assert sum(line.startswith("PUT /_lfs/") for line in hub.log) == 3  # safetensors, onnx, onnx.data
    assert sorted(hub.files("acme/tiny-mae")) == [
        ".gitattributes", "README.md", "config.json", "model.safetensors",
        "onnx/fp32/export.json", "onnx/fp32/model.onnx", "onnx/fp32/model.onnx.data",
    ]
    back = load("hf-hub:acme/tiny-mae", hub, tmp_path)
    sd_back, sd_src = back.model.state_dict(), models["enc_a"].model.state_dict()
    assert sd_back.keys() == sd_src.keys() and all(torch.equal(sd_back[k], sd_src[k]) for k in sd_src)
    with torch.no_grad():
        assert torch.equal(back(X), models["enc_a"](X))
    assert (back.info.method, back.info.variant, back.info.license) == ("mae", "mae-vit-test", "cc-by-nc-4.0")
    assert back.preprocess == models["enc_a"].preprocess


def test_repo_config_card_and_onnx_as_downloaded(models, hub, tmp_path):
    import huggingface_hub as hf
    import numpy as np
    import onnxruntime as ort

    mimzoo.publish(str(models["export"]), "acme/tiny-mae", endpoint=hub.url)  # an export folder as SOURCE
    snap = hf.snapshot_download("acme/tiny-mae", endpoint=hub.url, cache_dir=tmp_path / "cache")
    cfg = json.loads(open(f"{snap}/config.json").read())
    assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["num_features"] == 32 and cfg["global_pool"] == "token"
    assert cfg["pretrained_cfg"]["input_size"] == [3, 32, 32] and cfg["pretrained_cfg"]["crop_pct"] == 0.875
    block = cfg["mimzoo"]
    assert block["name"] == "acme/tiny-mae" and block["method"] == "mae" and block["family"] == "reconstruction"
    assert block["taxonomy"]["masking"] == "random-patch" and block["taxonomy"]["mask_ratio"] == 0.75
    assert block["license"] == "cc-by-nc-4.0" and block["paper"]["arxiv"] == "2111.06377"
    published = read_checkpoint(f"{snap}/model.safetensors")
    assert block["weights"]["source"] == "local:enc-a"  # a local path is reduced to its name
    assert block["weights"]["sha256"] == hub_sha256(hub, "model.safetensors")
    assert block["origin_weights"]["source"] == "local:enc-a.pth"
    assert block["exports"][0]["path"] == "onnx/fp32/model.onnx" and block["exports"][0]["recheck_cosine"] > 0.9999
    assert published.keys() == models["enc_a"].model.state_dict().keys()
    card = hf.ModelCard.load(f"{snap}/README.md")
    assert card.data.license == "cc-by-nc-4.0" and card.data.library_name == "timm"
    assert "mae" in card.data.tags and "onnx" in card.data.tags
    # the verification report travels, minus the exporting machine's paths
    report = json.loads(open(f"{snap}/onnx/fp32/export.json").read())
    assert report["verification"]["passed"] and report["verification"]["data"] == "digits"
    assert str(models["root"]) not in json.dumps(report) + card.content + json.dumps(cfg)
    session = ort.InferenceSession(f"{snap}/onnx/fp32/model.onnx")  # finds model.onnx.data beside it
    got = session.run(["embedding"], {"pixel_values": X.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, models["enc_a"](X).numpy(), atol=1e-4)


def hub_sha256(hub, path):
    import hashlib

    return hashlib.sha256(hub.files("acme/tiny-mae")[path]).hexdigest()


def test_pinned_older_revision_stays_loadable(models, hub, tmp_path):
    first = mimzoo.publish(str(models["a"]), "acme/tiny-mae", endpoint=hub.url, with_onnx=models["export"])
    second = mimzoo.publish(str(models["b"]), "acme/tiny-mae", endpoint=hub.url)
    assert second.previous == first.commit and hub.history("acme/tiny-mae")[:2] == [second.commit, first.commit]
    # the second publish has no ONNX: the stale export of other weights is deleted, not left beside them
    assert not any(p.startswith("onnx/") for p in hub.files("acme/tiny-mae"))
    assert "onnx/fp32/model.onnx" in hub.files("acme/tiny-mae", first.commit)
    with torch.no_grad():
        assert torch.equal(load("hf-hub:acme/tiny-mae", hub, tmp_path)(X), models["enc_b"](X))
        assert torch.equal(load(f"hf-hub:acme/tiny-mae@{first.commit}", hub, tmp_path)(X), models["enc_a"](X))
        assert torch.equal(load(first.load_name, hub, tmp_path)(X), models["enc_a"](X))
    # a branch: created from main, main untouched
    branch = mimzoo.publish(str(models["a"]), "acme/tiny-mae", revision="v1", endpoint=hub.url)
    assert hub.head("acme/tiny-mae", "v1") == branch.commit and hub.head("acme/tiny-mae") == second.commit
    with torch.no_grad():
        assert torch.equal(load("hf-hub:acme/tiny-mae@v1", hub, tmp_path)(X), models["enc_a"](X))


def test_unknown_repo_revision_and_file_are_clear_errors(models, hub, tmp_path):
    import huggingface_hub as hf

    mimzoo.publish(str(models["a"]), "acme/tiny-mae", endpoint=hub.url)
    with pytest.raises(WeightsError, match="Hub repo 'acme/nothing' not found .*check the repo id"):
        load("hf-hub:acme/nothing", hub, tmp_path)
    with pytest.raises(WeightsError, match="revision 'v9' not found in Hub repo 'acme/tiny-mae'; check the revision"):
        load("hf-hub:acme/tiny-mae@v9", hub, tmp_path)
    with pytest.raises(WeightsError, match=f"revision '{'e' * 40}' not found"):
        load(f"hf-hub:acme/tiny-mae@{'e' * 40}", hub, tmp_path)
    # a repo holding weights but no config.json
    api = hf.HfApi(endpoint=hub.url)
    api.create_repo("acme/no-config")
    api.upload_file(path_or_fileobj=str(models["a"] / "model.safetensors"), path_in_repo="model.safetensors",
                    repo_id="acme/no-config")
    with pytest.raises(HubFileNotFoundError, match="file 'config.json' not found in Hub repo 'acme/no-config'"):
        load("hf-hub:acme/no-config", hub, tmp_path)


def test_private_repo_needs_the_token(models, hub, tmp_path, monkeypatch):
    mimzoo.publish(str(models["a"]), "acme/secret", private=True, endpoint=hub.url)
    assert hub.repos["acme/secret"].private
    with torch.no_grad():
        assert torch.equal(load("hf-hub:acme/secret", hub, tmp_path)(X), models["enc_a"](X))
    monkeypatch.delenv("HF_TOKEN")
    n = len(hub.log)
    with pytest.raises(WeightsError, match="Hub repo 'acme/secret' not found \\(or private: set HF_TOKEN\\)"):
        load("hf-hub:acme/secret", hub, tmp_path / "other")
    assert hub.log[n:] == ["HEAD /acme/secret/resolve/main/config.json"]  # answered 401 RepoNotFound
    monkeypatch.setenv("HF_TOKEN", "hf_notAValidToken")
    with pytest.raises(WeightsError, match="the Hub refused the token for acme/secret/config.json \\(401"):
        load("hf-hub:acme/secret", hub, tmp_path / "other")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match="refused the credentials \\(401\\): set HF_TOKEN .* nothing was committed"):
        mimzoo.publish(str(models["b"]), "acme/secret", endpoint=hub.url)


def test_private_flag_never_publishes_into_a_public_repo(models, hub):
    mimzoo.publish(str(models["a"]), "acme/open", endpoint=hub.url)
    head = hub.head("acme/open")
    with pytest.raises(PublishError, match="acme/open already exists and is public; --private cannot hide it"):
        mimzoo.publish(str(models["b"]), "acme/open", private=True, endpoint=hub.url)
    assert hub.head("acme/open") == head


@pytest.mark.parametrize("route,status", [("lfs-put", 403), ("commit", 500)])
def test_failed_upload_leaves_the_previous_revision(models, hub, tmp_path, route, status):
    first = mimzoo.publish(str(models["a"]), "acme/tiny-mae", endpoint=hub.url)
    before = hub.files("acme/tiny-mae")
    hub.fail(route, status)
    with pytest.raises(PublishError) as err:
        mimzoo.publish(str(models["b"]), "acme/tiny-mae", endpoint=hub.url, with_onnx=())
    msg = str(err.value)
    assert f"acme/tiny-mae@main is unchanged at {first.commit[:12]} (nothing was committed)" in msg
    assert f"re-run: mimzoo publish {models['b']} --repo acme/tiny-mae --endpoint {hub.url}" in msg
    assert hub.head("acme/tiny-mae") == first.commit and hub.files("acme/tiny-mae") == before
    with torch.no_grad():
        assert torch.equal(load("hf-hub:acme/tiny-mae", hub, tmp_path)(X), models["enc_a"](X))
    again = mimzoo.publish(str(models["b"]), "acme/tiny-mae", endpoint=hub.url)  # what the message says to do
    assert again.previous == first.commit and hub.head("acme/tiny-mae") == again.commit
    same = mimzoo.publish(str(models["b"]), "acme/tiny-mae", endpoint=hub.url)  # identical: no empty commit
    assert same.commit == same.previous == again.commit and len(hub.history("acme/tiny-mae")) == 3


def test_token_never_in_logs_or_errors(models, hub, caplog, capsys):
    import logging

    caplog.set_level(logging.DEBUG)  # everything, huggingface_hub's request logging included
    mimzoo.publish(str(models["a"]), "acme/tiny-mae", endpoint=hub.url, token=TOKEN)
    hub.fail("commit", 500)
    with pytest.raises(PublishError) as err:
        mimzoo.publish(str(models["b"]), "acme/tiny-mae", endpoint=hub.url, token=TOKEN)
    out = capsys.readouterr()
    texts = [caplog.text, out.out, out.err, str(err.value), *(f.decode(errors="replace") for f in hub.files("acme/tiny-mae").values())]
    assert caplog.text and all(TOKEN not in t for t in texts)


def test_dry_run_writes_the_exact_repo_and_uploads_nothing(models, hub, tmp_path):
    out = tmp_path / "repo"
    dry = mimzoo.publish(str(models["a"]), "acme/tiny-mae", with_onnx=models["export"], dry_run=True, output=out,
                         endpoint=hub.url)
    assert dry.dry_run and dry.commit is None and hub.log == []  # not a single request
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
             if p.is_file() and p.name != ".mimzoo-output.json"}  # mimzoo's marker of its own folders stays local
    assert sorted(local) == [f.path for f in dry.files]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    real = mimzoo.publish(str(models["a"]), "acme/tiny-mae", with_onnx=models["export"], endpoint=hub.url)
    remote = {k: v for k, v in hub.files("acme/tiny-mae").items() if k != ".gitattributes"}
    assert remote == local and real.files == dry.files
    with pytest.raises(PublishError, match="already exists; choose another folder or pass --overwrite"):
        mimzoo.publish(str(models["a"]), "acme/tiny-mae", dry_run=True, output=out)
    with pytest.raises(PublishError, match="pass output"):
        mimzoo.publish(str(models["a"]), "acme/tiny-mae", dry_run=True)


def test_zoo_name_source_and_eval_results(models, hub, tmp_path):
    import huggingface_hub as hf

    ckpt = models["root"] / "enc-a.pth"
    results = tmp_path / "eval.json"
    rec = {"task": "knn", "dataset": str(tmp_path / "data" / "cifar100"), "split": "val",
           "metrics": {"top1": 41.5, "top5": 70.25}, "config": {"k": 20}, "mimzoo_version": "0.1.0"}
    results.write_text(json.dumps([{**rec, "model": "mae-vit-test"}, {**rec, "model": "mae-vit-b", "metrics": {"top1": 99.0}}]))
    mimzoo.publish("mae-vit-test", "acme/zoo", weights=ckpt, eval_results=results, endpoint=hub.url)
    card = hf.ModelCard(hub.files("acme/zoo")["README.md"].decode())
    results = card.data.eval_results  # read back by huggingface_hub from the model-index
    assert {r.dataset_name for r in results} == {"cifar100"}  # only this model's records, no local path
    assert sorted(r.metric_value for r in results) == [41.5, 70.25]
    assert "| k-NN classification on frozen features | cifar100 | val | 41.50 | 70.25 |" in card.text
    with torch.no_grad():
        assert torch.equal(load("hf-hub:acme/zoo", hub, tmp_path)(X), models["enc_a"](X))
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{**rec, "model": "mae-vit-l"}]))
    with pytest.raises(mimzoo.MimzooError, match="holds results for mae-vit-l, not for mae-vit-test"):
        mimzoo.publish("mae-vit-test", "acme/zoo", weights=ckpt, eval_results=other, endpoint=hub.url)


def test_exports_that_cannot_be_published(models, hub, tmp_path):
    from mimzoo.hub.export_folder import ExportFolderError

    def variant(name, edit):
        folder = shutil.copytree(models["export"], tmp_path / name)
        meta = json.loads((folder / "export.json").read_text())
        edit(meta)
        (folder / "export.json").write_text(json.dumps(meta))
        return folder

    failed = variant("failed", lambda m: m["verification"].update(passed=False))
    with pytest.raises(ExportFolderError, match="did not pass its verification .*re-run `mimzoo export`"):
        mimzoo.publish(str(models["a"]), "acme/x", with_onnx=failed, endpoint=hub.url)
    trt = variant("trt", lambda m: m.update(format="tensorrt"))
    with pytest.raises(ExportFolderError, match="only ONNX exports are published"):
        mimzoo.publish(str(models["a"]), "acme/x", with_onnx=trt, endpoint=hub.url)
    # a passing export of other weights never ships beside these
    with pytest.raises(ExportFolderError, match=re.escape("does not match the model being published")):
        mimzoo.publish(str(models["b"]), "acme/x", with_onnx=models["export"], endpoint=hub.url)
    assert hub.log == []


def test_onnx_external_data_outside_the_folder_is_refused(models, tmp_path):
    import onnx

    from mimzoo.hub.export_folder import ExportFolderError, read_export

    folder = shutil.copytree(models["export"], tmp_path / "evil" / "export")
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../secrets.data"
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ExportFolderError, match="references external data '../../secrets.data' outside its folder"):
        read_export(folder)


def test_xet_uploads_are_not_covered_by_the_stand_in(models, hub, monkeypatch):
    """With Xet on (the client's default when hf_xet is installed) uploads go to Xet storage, which the
    stand-in does not implement: it refuses the Xet token, and the publish fails with nothing committed."""
    import huggingface_hub.constants as constants

    pytest.importorskip("hf_xet", reason="the client only takes the Xet path when hf_xet is installed")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    with pytest.raises(PublishError, match="xet-write-token.* acme/tiny-mae@main is unchanged"):
        mimzoo.publish(str(models["a"]), "acme/tiny-mae", endpoint=hub.url)
    assert "GET /api/models/acme/tiny-mae/xet-write-token/main" in hub.log
    assert list(hub.files("acme/tiny-mae")) == [".gitattributes"]
