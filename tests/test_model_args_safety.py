"""A model folder's config.json `model_args` may only describe the architecture: keyword arguments of
timm.create_model that load files, download or swap in pretrained configs are refused in one line."""

from __future__ import annotations

import json

import pytest

import mimzoo
from mimzoo.errors import MimzooError
from tests.faults.trial import expect_error, run


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    mimzoo.load("mae-vit-test", pretrained=False).save_pretrained(folder)
    return folder


def crafted(saved, tmp_path, **model_args):
    folder = tmp_path / "crafted"
    folder.mkdir()
    cfg = json.loads((saved / "config.json").read_text())
    cfg["model_args"] = {**(cfg.get("model_args") or {}), **model_args}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    return folder


@pytest.mark.parametrize("key, value", [
    ("checkpoint_path", "CKPT"),
    ("pretrained", True),
    ("pretrained_cfg", {"url": "https://example.org/x.pth", "hf_hub_id": "evil/x"}),
    ("pretrained_cfg_overlay", {"file": "CKPT"}),
    ("cache_dir", "/tmp/elsewhere"),
    ("features_only", True),
    ("__class__", "x"),
])
def test_file_and_network_arguments_are_refused(saved, tmp_path, key, value):
    ckpt = tmp_path / "other.pth"
    ckpt.write_bytes(b"not read")
    value = str(ckpt) if value == "CKPT" else ({"file": str(ckpt)} if value == {"file": "CKPT"} else value)
    folder = crafted(saved, tmp_path, **{key: value})
    with pytest.raises(MimzooError, match=rf"model_args '{key}' is not an architecture argument.*remove it"):
        mimzoo.load(str(folder))


def test_values_must_be_plain(saved, tmp_path):
    folder = crafted(saved, tmp_path, depth={"nested": "object"})
    with pytest.raises(MimzooError, match=r"model_args 'depth' has a value of type dict"):
        mimzoo.load(str(folder))


def test_architecture_arguments_still_load(saved, tmp_path):
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["model_args"], "the saved folder records its architecture arguments"
    folder = crafted(saved, tmp_path)  # the same arguments, rewritten
    assert mimzoo.load(str(folder)).num_features == mimzoo.load(str(saved)).num_features


def test_the_cli_says_it_in_one_line(saved, tmp_path):
    folder = crafted(saved, tmp_path, checkpoint_path=str(tmp_path / "x.pth"))
    out = run("eval", str(folder), "--subset", "20", "--eval-subset", "10", "-q", "--no-cache", "--device", "cpu",
              cache=tmp_path / "cache")
    expect_error(out, says=("model_args 'checkpoint_path' is not an architecture argument",),
                 fix=("remove it from model_args",))
