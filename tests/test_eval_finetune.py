"""Fine-tuning: layer-wise lr decay, drop path, bf16 autocast, atomic checkpoints and exact resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import mimzoo
from mimzoo.data import open_dataset, subset
from mimzoo.eval.checkpoint import CheckpointError
from mimzoo.eval.finetune import Classifier, FinetuneConfig, finetune, param_groups, set_drop_path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder


@pytest.fixture(scope="module")
def source():
    """Digits with augmentation allowed, so resumed runs must reproduce random crops and flips too."""
    return dataclasses.replace(open_dataset("digits"), crop_ok=True, flip_ok=True)


def small(source):
    return dict(train=subset(source.train, 96), eval_split=subset(source.eval, 48))


CFG = FinetuneConfig(epochs=2, batch_size=16, base_lr=5e-3, warmup_epochs=0.5, drop_path=0.2, checkpoint_every=4,
                     amp="off", workers=0)


class Interrupt(Exception):
    pass


def stop_at(step):
    def progress(stage, done, total):
        if stage == "fine-tune" and done == step:
            raise Interrupt
    return progress


def test_interrupted_run_resumes_exactly(encoder, source, tmp_path):
    straight = finetune(encoder, source, dataclasses.replace(CFG, run_dir=str(tmp_path / "a")), **small(source))
    assert straight.steps == 12 and straight.resumed_from is None and len(straight.history) == 2
    cut = dataclasses.replace(CFG, run_dir=str(tmp_path / "b"), workers=2)  # other worker count: same batches
    with pytest.raises(Interrupt):
        finetune(encoder, source, cut, progress=stop_at(6), **small(source))
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and not list((tmp_path / "b").glob(".*tmp*"))
    resumed = finetune(encoder, source, cut, **small(source))
    assert resumed.resumed_from == 4 and resumed.steps == 12
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.metrics == straight.metrics and resumed.history == straight.history
    again = finetune(encoder, source, cut, **small(source))  # a finished run only evaluates
    assert again.resumed_from == 12 and again.metrics == straight.metrics
    torch.manual_seed(0)
    fresh = mimzoo.load("mae-vit-test", pretrained=False)
    assert all(torch.equal(p, q) for p, q in zip(encoder.parameters(), fresh.parameters()))  # the input is untouched


def test_checkpoint_of_another_run_is_refused(encoder, source, tmp_path):
    cfg = dataclasses.replace(CFG, epochs=1, run_dir=str(tmp_path))
    finetune(encoder, source, cfg, **small(source))
    with pytest.raises(CheckpointError, match="belongs to another fine-tuning run .* --restart"):
        finetune(encoder, source, dataclasses.replace(cfg, base_lr=1e-3), **small(source))
    restarted = finetune(encoder, source, dataclasses.replace(cfg, base_lr=1e-3, resume=False), **small(source))
    assert restarted.resumed_from is None and restarted.steps == 6


def test_bf16_autocast_on_cpu_and_learning(encoder, tmp_path):
    src = open_dataset("digits")
    cfg = FinetuneConfig(epochs=3, batch_size=32, base_lr=2e-2, layer_decay=0.9, drop_path=0.0, amp="bf16",
                         checkpoint_every=0, workers=0, run_dir=str(tmp_path))
    res = finetune(encoder, src, cfg, train=subset(src.train, 320), eval_split=subset(src.eval, 100))
    assert res.amp == "bfloat16" and all(torch.isfinite(torch.tensor(res.history)))
    assert res.history[-1] < res.history[0]
    assert next(res.model.parameters()).dtype == torch.float32  # master weights stay fp32


def test_layer_decay_groups_and_drop_path_rates(encoder):
    import copy

    model = Classifier(copy.deepcopy(encoder), 10)
    groups = param_groups(model, FinetuneConfig(layer_decay=0.5, weight_decay=0.05))
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    enc = model.encoder.model
    # timm's grouping: embeddings (layer 0), block i (layer i + 1); the top block and the head at full lr
    assert scale[id(enc.patch_embed.proj.weight)] == scale[id(enc.cls_token)] == pytest.approx(0.5**2)
    assert scale[id(enc.blocks[0].attn.qkv.weight)] == pytest.approx(0.5)
    assert scale[id(enc.blocks[1].mlp.fc1.weight)] == scale[id(enc.norm.weight)] == 1.0
    assert scale[id(model.head.weight)] == 1.0 and decay[id(model.head.weight)] == 0.05
    assert decay[id(enc.pos_embed)] == 0.0 and decay[id(enc.blocks[0].norm1.weight)] == 0.0
    assert len(scale) == sum(1 for _ in model.parameters())
    assert set_drop_path(enc, 0.3) == 2
    assert isinstance(enc.blocks[0].drop_path1, torch.nn.Identity)  # rate 0 for the first block
    assert enc.blocks[1].drop_path1.drop_prob == enc.blocks[1].drop_path2.drop_prob == pytest.approx(0.3)
