"""Devices under torchrun (issue 12, item 7): each rank on cuda:LOCAL_RANK, a conflicting explicit
index refused in one line, and resuming on a different number of GPUs does not crash.

The rule is a pure function (mimzoo._torchrun.choose_device) given the visible GPU count, so every
case runs on a CPU; the torchrun variables are set per test with monkeypatch (restored after).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared trial runner imports tests.helpers

from mimzoo._torchrun import Launch, choose_device, launch_from_env  # noqa: E402
from mimzoo.errors import MimzooError  # noqa: E402
from tests.faults.trial import expect_error, listing, run  # noqa: E402

TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture
def torchrun(monkeypatch):
    """Set the torchrun variables of one process: torchrun(rank=2, world=4, local=2)."""
    for key in TORCHRUN:
        monkeypatch.delenv(key, raising=False)

    def set_env(rank: int, world: int, local: int) -> Launch:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("LOCAL_RANK", str(local))
        return launch_from_env()

    return set_env


def test_one_plain_process_reads_defaults(torchrun) -> None:
    assert launch_from_env() == Launch(rank=0, world=1, local_rank=0)


@pytest.mark.parametrize("local", [0, 1, 3])
def test_cuda_means_cuda_local_rank(torchrun, local: int) -> None:
    launch = torchrun(rank=4 + local, world=8, local=local)  # second machine of two
    assert choose_device("cuda", launch, cuda_count=4) == f"cuda:{local}"
    assert choose_device(None, launch, cuda_count=4) == f"cuda:{local}"
    assert choose_device("auto", launch, cuda_count=4) == f"cuda:{local}"


def test_explicit_index_equal_to_local_rank_is_accepted(torchrun) -> None:
    assert choose_device("cuda:1", torchrun(rank=1, world=2, local=1), cuda_count=2) == "cuda:1"


def test_explicit_index_conflicting_with_local_rank_is_refused(torchrun) -> None:
    launch = torchrun(rank=1, world=2, local=1)
    with pytest.raises(MimzooError, match=r"--device cuda:0 conflicts with LOCAL_RANK=1 .*use --device cuda"):
        choose_device("cuda:0", launch, cuda_count=2)


def test_one_process_may_name_any_visible_gpu(torchrun) -> None:
    assert choose_device("cuda:3", launch_from_env(), cuda_count=4) == "cuda:3"
    with pytest.raises(MimzooError, match=r"only 2 CUDA GPU\(s\) are visible \(cuda:0 to cuda:1\)"):
        choose_device("cuda:2", launch_from_env(), cuda_count=2)


def test_more_ranks_than_gpus_is_refused(torchrun) -> None:
    with pytest.raises(MimzooError, match=r"LOCAL_RANK=2 but only 2 CUDA GPU\(s\).*--nproc-per-node 2"):
        choose_device("cuda", torchrun(rank=2, world=3, local=2), cuda_count=2)


def test_no_gpu(torchrun) -> None:
    launch = torchrun(rank=0, world=2, local=0)
    assert choose_device(None, launch, cuda_count=0) == "cpu"
    assert choose_device("cpu", launch, cuda_count=4) == "cpu"
    with pytest.raises(MimzooError, match="needs a CUDA GPU, and none is visible; use --device cpu"):
        choose_device("cuda", launch, cuda_count=0)


@pytest.mark.parametrize("bad", ["cuda:x", "cuda:-1", "gpu"])
def test_malformed_devices(torchrun, bad: str) -> None:
    with pytest.raises(MimzooError, match="use cpu, cuda or cuda:N"):
        choose_device(bad, launch_from_env(), cuda_count=1)


def test_malformed_torchrun_variables(torchrun, monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "zero")
    with pytest.raises(MimzooError, match="LOCAL_RANK='zero' is not a whole number"):
        launch_from_env()


def test_both_dist_modules_use_the_rule(torchrun, monkeypatch) -> None:
    """pretrain.distributed.init and eval.dist.get_dist put a rank on cuda:LOCAL_RANK (CUDA faked: 2 GPUs)."""
    import torch

    from mimzoo.eval import dist as eval_dist
    from mimzoo.pretrain import distributed as pre_dist

    torchrun(rank=1, world=2, local=1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    groups: list[str] = []
    for module in (pre_dist.dist, eval_dist.dist):
        monkeypatch.setattr(module, "is_initialized", lambda: bool(groups))
        monkeypatch.setattr(module, "init_process_group", lambda backend=None, **kw: groups.append(backend))
        monkeypatch.setattr(module, "get_backend", lambda *a: groups[-1])
    assert pre_dist.init("cuda").device == torch.device("cuda", 1)
    groups.clear()
    with pytest.raises(MimzooError, match="conflicts with LOCAL_RANK=1"):
        pre_dist.init("cuda:0")
    with pytest.raises(MimzooError, match="conflicts with LOCAL_RANK=1"):
        eval_dist.get_dist("cuda:0")
    assert not groups, "the process group must not be joined before the device is accepted"
    monkeypatch.setattr(eval_dist.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(eval_dist.dist, "get_world_size", lambda: 2)
    assert eval_dist.get_dist("cuda").device == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)] * 2 and groups == ["nccl"]


# --- through the CLI -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["pretrain", "mae", "--arch", "mae-vit-test", "--max-steps", "1"],
    ["eval", "mae-vit-test", "--random-init", "--task", "knn", "--data", "digits", "--subset", "20"],
])
def test_cli_conflicting_device_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """Rank 1 of 2 asked for cuda:0: refused before any GPU, process group or file is touched."""
    out_dir = tmp_path / "out"
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}
    out = run(*command, "--device", "cuda:0", "-o", str(out_dir), env=env, cwd=tmp_path, cache=tmp_path,
              timeout=120)
    expect_error(out, rc=1, says=("--device cuda:0 conflicts with LOCAL_RANK=1",),
                 fix=("use --device cuda", "CUDA_VISIBLE_DEVICES"))
    assert listing(tmp_path) == set(), f"the refused run left {listing(tmp_path)}"


# --- resume on another number of GPUs ---------------------------------------------------------


class _FakeGPUs:
    """torch.cuda with `count` GPUs: set_rng_state on a missing index fails as the real one does
    (IndexError from torch.cuda.default_generators[idx])."""

    def __init__(self, count: int):
        self.count, self.restored = count, {}

    def set_rng_state(self, state, device="cuda"):
        idx = device if isinstance(device, int) else 0
        if idx >= self.count:
            raise IndexError("tuple index out of range")
        self.restored[idx] = state


@pytest.mark.parametrize("saved_gpus, now_gpus", [(4, 2), (1, 2), (2, 2)])
def test_resume_with_another_gpu_count_restores_what_matches(monkeypatch, caplog, saved_gpus: int,
                                                              now_gpus: int) -> None:
    import torch
    import torch.cuda.random

    from mimzoo.pretrain import checkpoint as ckpt

    fake = _FakeGPUs(now_gpus)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: now_gpus)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", fake.set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "get_rng_state_all", lambda: [torch.zeros(8, dtype=torch.uint8)] * now_gpus)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", torch.cuda.random.get_rng_state_all)
    state = ckpt.rng_state()
    state["cuda"] = [torch.full((8,), i, dtype=torch.uint8) for i in range(saved_gpus)]
    with caplog.at_level(logging.WARNING):
        ckpt.set_rng_state(state)
    matched = min(saved_gpus, now_gpus)
    assert sorted(fake.restored) == list(range(matched))
    assert all(int(fake.restored[i][0]) == i for i in range(matched))
    warnings = [r.getMessage() for r in caplog.records if "GPU" in r.getMessage()]
    if saved_gpus == now_gpus:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"{saved_gpus}" in warnings[0] and f"{now_gpus}" in warnings[0]
