"""Bad checkpoint files: each is a clear WeightsError, and pickled code never runs."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import mimzoo
from mimzoo.errors import WeightsError
from mimzoo.weights.read import read_checkpoint, sniff_format


class _RunsCode:
    """Unpickling this would call os.system: what a malicious checkpoint does."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"cls_token": torch.zeros(1)}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(WeightsError, match="refused to unpickle .*evil.pth.*system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_legacy_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=2))
    assert sniff_format(path) == "torch-pickle"
    with pytest.raises(WeightsError, match="refused to unpickle|cannot read"):
        mimzoo.load("mae-vit-test", weights=path)
    assert not marker.exists()


def test_official_checkpoint_with_args_namespace_is_allowed(tmp_path):
    import argparse

    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-3), "epoch": 799}, path)
    sd = read_checkpoint(path)
    assert list(sd) == ["w"]


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.randn(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(path)
    path.write_bytes(data[:5])  # not even a header
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_truncated_torch_zip(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"a": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="checkpoint file not found: .*nope.pth; check the path"):
        mimzoo.load("mae-vit-test", weights=tmp_path / "nope.pth")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(WeightsError, match="neither safetensors nor a PyTorch checkpoint"):
        read_checkpoint(path)


def test_checkpoint_without_tensors(tmp_path):
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="contains no tensors"):
        read_checkpoint(tmp_path / "empty.pth")


def test_wrappers_and_module_prefix_are_unwrapped(tmp_path):
    t = torch.arange(3.0)
    for wrapper in ("model", "model_state", "state_dict"):
        torch.save({wrapper: {"module.blocks.0.w": t, "module.norm.w": t}, "epoch": 1}, tmp_path / "c.pth")
        assert sorted(read_checkpoint(tmp_path / "c.pth")) == ["blocks.0.w", "norm.w"]
    torch.save({"encoder": {"module.a": t}, "target_encoder": {"module.a": t}}, tmp_path / "multi.pth")
    assert sorted(read_checkpoint(tmp_path / "multi.pth")) == ["encoder.module.a", "target_encoder.module.a"]
