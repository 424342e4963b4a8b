"""What publishing refuses before it talks to any Hub: names, paths, licenses, eval files, exports.

No server here: every check runs before the first request (dry runs write locally only).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub_standin import make_model_folder

import mimzoo
from mimzoo.cli.main import cli
from mimzoo.hub.eval_results import EvalResultsError, read_eval_results
from mimzoo.hub.export_folder import ExportFolderError, read_export
from mimzoo.hub.public import public_name, public_source
from mimzoo.hub.publish import PublishError
from mimzoo.hub.repo_id import RepoIdError, validate_branch, validate_repo_id, validate_repo_path


@pytest.mark.parametrize("repo_id", ["acme/x", "a/b.c-d_e", "Acme-Labs/mae_vit.b16", "x/" + "a" * 96])
def test_good_repo_ids(repo_id):
    assert validate_repo_id(repo_id) == repo_id


@pytest.mark.parametrize("repo_id", ["acme", "acme/x/y", "../x", "acme/..", "acme/a--b", "acme/-x", "acme/x.", "/acme/x",
                                     "acme/x.git", "acme/ x", "acme\\x", "x/" + "a" * 97, "", None, "acme/x?y=1"])
def test_bad_repo_ids(repo_id):
    with pytest.raises(RepoIdError, match="is not a Hub repo id; use 'org/name'"):
        validate_repo_id(repo_id)


@pytest.mark.parametrize("branch", ["main", "v1.0", "release/2024-06", "exp_3"])
def test_good_branches(branch):
    assert validate_branch(branch) == branch


@pytest.mark.parametrize("branch", ["", "../x", "a..b", "x/", "x.lock", "a b", "-x", "a@{1}", "refs//x", "/main", None])
def test_bad_branches(branch):
    with pytest.raises(RepoIdError, match="is not a valid branch name"):
        validate_branch(branch)


def test_a_commit_id_is_not_a_branch_to_publish_to():
    with pytest.raises(RepoIdError, match="is a commit id; publish to a branch name"):
        validate_branch("0123456789abcdef0123456789abcdef01234567")


@pytest.mark.parametrize("path", ["model.safetensors", "onnx/fp32/model.onnx.data", "README.md"])
def test_good_repo_paths(path):
    assert validate_repo_path(path) == path


@pytest.mark.parametrize("path", ["../x", "/abs/x", "a/../b", "a//b", ".git/config", ".hidden", "a\\b", "C:/x", "a/./b",
                                  "", "a/b/", "x;rm -rf", "name with space"])
def test_bad_repo_paths(path):
    with pytest.raises(RepoIdError, match="not an acceptable file path in a repo"):
        validate_repo_path(path)


def test_public_names_hide_this_machine(tmp_path):
    assert public_name(str(tmp_path / "data" / "cifar100")) == "cifar100"
    assert public_name("./data/x") == "x" and public_name("~/imagenet") == "imagenet"
    assert public_name("ILSVRC/imagenet-1k") == "ILSVRC/imagenet-1k" and public_name("digits") == "digits"
    assert public_source("/home/alice/runs/ckpt.pth") == "local:ckpt.pth"
    assert public_source("runs/mae/enc") == "local:enc"
    for kept in ("hf-hub:timm/vit_base_patch16_224.mae/model.safetensors", "bundled:assets/x.safetensors",
                 "https://dl.fbaipublicfiles.com/mae/x.pth", "random init", "mae-vit-b"):
        assert public_source(kept) == kept


# -- publish's own checks, dry runs only --------------------------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("validation"), "enc", seed=3)[0]


def test_bad_names_are_refused_before_loading(tmp_path):
    with pytest.raises(RepoIdError):
        mimzoo.publish("no-such-model", "acme/../x", dry_run=True, output=tmp_path / "o")
    with pytest.raises(RepoIdError, match="is a commit id"):
        mimzoo.publish("no-such-model", "acme/x", revision="a" * 40, dry_run=True, output=tmp_path / "o")
    with pytest.raises(PublishError, match="unknown model 'no-such-model'.*SOURCE is a zoo name, a model folder"):
        mimzoo.publish("no-such-model", "acme/x", dry_run=True, output=tmp_path / "o")


def test_licenses_are_kept_and_required(folder, tmp_path):
    with pytest.raises(PublishError, match="carry the license cc-by-nc-4.0 from their source; they cannot be published "
                                           "as apache-2.0: drop --license"):
        mimzoo.publish(str(folder), "acme/x", license="apache-2.0", dry_run=True, output=tmp_path / "o")
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["mimzoo"]["license"]
    (unknown / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PublishError, match="license of these weights is unknown; pass --license ID"):
        mimzoo.publish(str(unknown), "acme/x", dry_run=True, output=tmp_path / "o")
    result = mimzoo.publish(str(unknown), "acme/x", license="Apache-2.0", dry_run=True, output=tmp_path / "o")
    assert result.license == "apache-2.0" and not result.noncommercial
    assert "license: apache-2.0" in (tmp_path / "o" / "README.md").read_text()
    assert json.loads((tmp_path / "o" / "config.json").read_text())["mimzoo"]["license"] == "apache-2.0"


def test_eval_result_files_are_checked(tmp_path):
    good = {"model": "m", "task": "knn", "dataset": "digits", "split": "val", "metrics": {"top1": 90.0}}
    cases = {
        "missing.json": None,
        "bad.json": "{oops",
        "dict.json": json.dumps(good),
        "task.json": json.dumps([{**good, "task": "probe"}]),
        "range.json": json.dumps([{**good, "metrics": {"top1": 0.9, "top5": 190.0}}]),
        "bool.json": json.dumps([{**good, "metrics": {"top1": True}}]),
        "split.json": json.dumps([{**good, "split": "train"}]),
        "nomodel.json": json.dumps([{**good, "model": ""}]),
    }
    messages = {
        "missing.json": "not found; write it with `mimzoo eval", "bad.json": "is not valid JSON",
        "dict.json": "must hold a JSON list", "task.json": "has task 'probe', not one of knn, linear",
        "range.json": "needs metrics.top5 as a percentage", "bool.json": "needs metrics.top1 as a percentage",
        "split.json": "has split 'train'", "nomodel.json": "record 0 has no 'model'",
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        with pytest.raises(EvalResultsError, match=messages[name]):
            read_eval_results(tmp_path / name, ["m"])
    (tmp_path / "ok.json").write_text(json.dumps([good, {**good, "model": "other"}]))
    assert [r["model"] for r in read_eval_results(tmp_path / "ok.json", ["m"])] == ["m"]
    assert read_eval_results(tmp_path / "ok.json", ["hf-hub:m"]) != []


def test_export_folders_that_are_not_mimzoo_exports(tmp_path):
    with pytest.raises(ExportFolderError, match="is not an export folder"):
        read_export(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "export.json").write_text('{"format": "onnx"}')
    with pytest.raises(ExportFolderError, match="is not a mimzoo export report"):
        read_export(tmp_path)
    (tmp_path / "export.json").write_text('{"mimzoo_export": 1, "format": "onnx", "precision": "fp64"}')
    with pytest.raises(ExportFolderError, match="has precision 'fp64'"):
        read_export(tmp_path)


def test_cli_dry_run_table(folder, tmp_path):
    out = tmp_path / "repo"
    r = CliRunner().invoke(cli, ["publish", str(folder), "--repo", "acme/tiny", "--dry-run", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "checking the encoder" in r.stderr  # progress goes to stderr, results to stdout
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["file", "size", "sha256"]
    assert [line.split()[0] for line in lines[2:5]] == ["README.md", "config.json", "model.safetensors"]
    assert f"dry run: repo folder written to {out}; nothing was uploaded" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == [".mimzoo-output.json", "README.md", "config.json", "model.safetensors"]
    r = CliRunner().invoke(cli, ["publish", str(folder), "--repo", "acme/tiny", "--dry-run", "-o", str(out), "--json"])
    assert r.exit_code == 1 and "already exists; choose another folder or pass --overwrite (overwrite=True)" in r.output
    r = CliRunner().invoke(cli, ["publish", str(folder), "--repo", "acme/tiny", "--dry-run", "-o", str(out),
                                 "--overwrite", "--json"])
    data = json.loads(r.stdout)
    assert data["dry_run"] and data["commit"] is None and data["noncommercial"] and len(data["files"]) == 3


def test_paper_numbers_only_describe_the_zoo_weights():
    from mimzoo.api.publish import _zoo_weights
    from mimzoo.encoders.encoder import EncoderInfo
    from mimzoo.weights import LoadReport

    variant = mimzoo.get_registry().model("mae-vit-b").variant
    official = "hf-hub:timm/vit_base_patch16_224.mae/model.safetensors"

    def info(source, origin=None):
        extra = {"origin_weights": {"source": origin}} if origin else {}
        return EncoderInfo("x", "vit_base_patch16_224", {}, "token", weights=LoadReport(source, "timm", 1), extra=extra)

    assert _zoo_weights(info(official), variant)
    assert _zoo_weights(info("hf-hub:acme/mirror", origin=official), variant)  # a republished copy
    assert not _zoo_weights(info("/runs/finetuned.pth"), variant)
    assert not _zoo_weights(info(official), None)


def test_broken_weights_are_not_published(folder, tmp_path):
    import torch

    encoder = mimzoo.load(str(folder))
    with torch.no_grad():
        encoder.model.blocks[1].attn.qkv.weight[3, 4] = float("inf")
    with pytest.raises(PublishError, match="hold NaN or inf values \\(model.blocks.1.attn.qkv.weight\\)"):
        mimzoo.publish(encoder, "acme/x", dry_run=True, output=tmp_path / "o")
    assert not (tmp_path / "o").exists()
