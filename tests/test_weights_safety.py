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


FAKE_YACS = '''
import os
class CfgNode(dict):
    """Would leave a marker if any of its code ran while loading."""
    def __setstate__(self, state):
        open(os.environ["MARKER"], "w").close()
    def __setitem__(self, k, v):
        open(os.environ["MARKER"], "w").close()
        super().__setitem__(k, v)
'''


def _save_with_config(tmp_path, extra_payload: str = "") -> tuple:
    """Write an official-style checkpoint holding a yacs CfgNode (made where yacs exists)."""
    from helpers import run_py

    (tmp_path / "fake" / "yacs").mkdir(parents=True)
    (tmp_path / "fake" / "yacs" / "__init__.py").write_text("")
    (tmp_path / "fake" / "yacs" / "config.py").write_text(FAKE_YACS)
    path, marker = tmp_path / "simmim_pretrain.pth", tmp_path / "ran"
    code = f"""
        import os, torch
        from yacs.config import CfgNode
        cfg = dict.__new__(CfgNode); dict.__setitem__(cfg, "MODEL", "swin")
        state = {{"model": {{"encoder.w": torch.ones(2)}}, "config": cfg, "epoch": 799}}
        {extra_payload}
        torch.save(state, {str(path)!r})
    """
    r = run_py(code, pythonpath=[tmp_path / "fake"], env={"MARKER": str(tmp_path / "writer-marker")})
    assert r.returncode == 0, r.stderr
    return path, marker


def test_official_checkpoint_with_yacs_config_is_read_without_running_it(tmp_path, monkeypatch):
    path, marker = _save_with_config(tmp_path)
    monkeypatch.setenv("MARKER", str(marker))
    sd = read_checkpoint(path)  # yacs is not importable here, and its code must not run
    assert list(sd) == ["encoder.w"] and torch.equal(sd["encoder.w"], torch.ones(2))
    assert not marker.exists()


def test_config_objects_do_not_excuse_code(tmp_path):
    payload = 'import subprocess; state["x"] = __import__("functools").partial(subprocess.call, ["touch", "/tmp/x"])'
    path, _ = _save_with_config(tmp_path, extra_payload=payload)
    with pytest.raises(WeightsError, match="refused to unpickle .*functools.partial|refused to unpickle .*subprocess"):
        read_checkpoint(path)
