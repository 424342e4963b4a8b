"""End-to-end fine-tuning, the MAE recipe: AdamW with layer-wise lr decay, drop path, warmup + cosine.

The encoder gets a linear head on its pooled embedding and trains entirely. Lower layers learn
slower (lr scale ``layer_decay ** (depth - layer)``), stochastic depth grows linearly with the
block index, and the forward runs under autocast (bf16 where the hardware supports it). Under
torchrun the model is wrapped in DistributedDataParallel and `batch_size` is the global batch,
so 1 and N processes take the same optimisation steps. Checkpoints are written atomically
every `checkpoint_every` steps; a rerun of the same run continues from the last one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.base import DataSource, ImageSplit
from ..data.loader import ImageDataset, eval_batches, make_loader, steps_per_epoch, train_batches, train_transform
from ..errors import MimzooError
from . import cache
from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .dist import Dist, get_dist
from .training import autocast, lr_at, resolve_amp, set_lr

log = logging.getLogger(__name__)
# settings that do not change what the run computes, so they stay out of its key
_NOT_IN_KEY = ("checkpoint_every", "run_dir", "resume", "workers", "eval_batch_size")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings (MAE ViT-B on ImageNet: 100 epochs, batch 1024, base lr 5e-4, decay 0.65)."""

    epochs: int = 10  # passes over the training split
    batch_size: int = 64  # global batch, split evenly over torchrun processes
    base_lr: float = 5e-4  # lr = base_lr * batch_size / 256 (AdamW)
    layer_decay: float = 0.65  # lr scale per layer below the top block (timm's grouping); 1.0 turns it off
    weight_decay: float = 0.05  # AdamW weight decay (not on biases, norms, tokens)
    drop_path: float = 0.1  # stochastic depth of the last block (0 for the first)
    warmup_epochs: float = 1.0  # linear lr warmup
    min_lr: float = 1e-6  # lr at the end of the cosine decay
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    amp: str = "auto"  # "auto" (bf16 where supported), "bf16", "fp16" (CUDA) or "off"
    augment: bool = True  # random-resized crop + flip while training, where the dataset allows them
    checkpoint_every: int = 100  # steps between checkpoints (a final one is always written; 0: only that one)
    run_dir: str | None = None  # checkpoint folder (None: <cache root>/runs/<model>-<data>-<run hash>)
    resume: bool = True  # continue from run_dir's checkpoint when there is one
    seed: int = 0  # head initialisation, data order, augmentation, drop path
    workers: int | None = None  # image-decoding processes per process (None: up to 4)
    eval_batch_size: int = 128  # images per forward when measuring

    def check(self, world: int) -> None:
        from .checks import at_least

        at_least("finetune", 1, epochs=self.epochs, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size)
        at_least("finetune", 0, strict=True, base_lr=self.base_lr)
        at_least("finetune", 0, layer_decay=self.layer_decay, weight_decay=self.weight_decay, drop_path=self.drop_path,
                 warmup_epochs=self.warmup_epochs, min_lr=self.min_lr, label_smoothing=self.label_smoothing,
                 workers=self.workers, checkpoint_every=self.checkpoint_every)  # 0: only the final checkpoint
        if self.batch_size % world:
            raise MimzooError(f"batch_size {self.batch_size} does not split over {world} processes; "
                              f"use a multiple of {world}")

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256


@dataclass
class FinetuneResult:
    """What a fine-tuning run gives back."""

    metrics: dict[str, float]  # top1 / top5 on the eval split, percent
    model: nn.Module  # the fine-tuned classifier (encoder + head)
    history: list[float]  # mean training loss per epoch
    steps: int  # optimizer steps taken in total
    resumed_from: int | None  # the step the run resumed from, None for a fresh start
    run_dir: Path  # where its checkpoint is
    skipped: list[int] = field(default_factory=list)  # indices of images that could not be decoded
    amp: str = "off"  # the autocast dtype used


class Classifier(nn.Module):
    """An encoder and a linear head on its pooled embedding."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # MAE: a nearly-zero start
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # [N, C]


def set_drop_path(model: nn.Module, rate: float) -> int:
    """Give each block's ``drop_path*`` slots a DropPath of ``rate * i / (blocks - 1)``; returns the block count."""
    from timm.layers import DropPath

    slots = [(m, name) for m in model.modules() for name, child in m.named_children()
             if name.startswith("drop_path") and isinstance(child, (nn.Identity, DropPath))]
    owners = list(dict.fromkeys(id(m) for m, _ in slots))
    for m, name in slots:
        r = rate * owners.index(id(m)) / max(1, len(owners) - 1)
        setattr(m, name, DropPath(r) if r > 0 else nn.Identity())
    if rate > 0 and not owners:
        log.warning("this encoder has no drop-path slots; training without stochastic depth")
    return len(owners)


def param_groups(model: Classifier, config: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups with layer-wise lr scales (timm's group matcher) and no decay on 1-d params and tokens."""
    from timm.optim import param_groups_layer_decay

    enc = model.encoder.model
    skip = set(enc.no_weight_decay()) if hasattr(enc, "no_weight_decay") else set()
    if hasattr(enc, "group_matcher") and config.layer_decay < 1.0:
        groups = param_groups_layer_decay(enc, weight_decay=config.weight_decay, no_weight_decay_list=skip,
                                          layer_decay=config.layer_decay)
    else:
        if config.layer_decay < 1.0:
            log.warning("%s has no layer groups; fine-tuning without layer-wise lr decay", type(enc).__name__)
        params = list(enc.named_parameters())
        groups = [{"params": [p for n, p in params if p.ndim > 1 and n not in skip], "weight_decay": config.weight_decay},
                  {"params": [p for n, p in params if p.ndim <= 1 or n in skip], "weight_decay": 0.0}]
    groups.append({"params": [model.head.weight], "weight_decay": config.weight_decay, "lr_scale": 1.0})
    groups.append({"params": [model.head.bias], "weight_decay": 0.0, "lr_scale": 1.0})
    return [g for g in groups if g["params"]]


def run_key(encoder: nn.Module, source: DataSource, config: FinetuneConfig, train: ImageSplit, eval_: ImageSplit) -> str:
    """A hash of what a run computes: starting weights, data, settings (not where or how often it saves)."""
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_IN_KEY}
    blob = {"weights": cache.weights_fingerprint(encoder), "arch": encoder.info.arch, "settings": settings,
            "train": train.fingerprint(), "eval": eval_.fingerprint(), "classes": len(source.classes),
            "preprocess": encoder.preprocess.to_timm()}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def finetune(
    encoder: nn.Module, source: DataSource, config: FinetuneConfig = FinetuneConfig(), *,
    train: ImageSplit | None = None, eval_split: ImageSplit | None = None, cache_dir: str | None = None,
    dist: Dist | None = None, progress: Callable[[str, int, int], None] | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of `encoder` with a new linear head on `source`, then measure it.

    Args:
        encoder: a mimzoo encoder; it is copied, never changed.
        source: an opened dataset (``mimzoo.data.open_dataset``).
        config: epochs, batch size, lr, layer decay, drop path, amp, checkpointing.
        train: the training split to use (default ``source.train``; pass a subset for quick runs).
        eval_split: the split to measure on (default ``source.eval``).
        cache_dir: cache root whose ``runs/`` holds the checkpoint when ``config.run_dir`` is None.
        dist: process group view (default: from the environment).
        progress: ``progress(stage, step, total)`` after each step on the main process; raising
            from it interrupts the run (its last checkpoint stays).

    >>> res = finetune(mimzoo.load("mae-vit-test", pretrained=False), open_dataset("digits"))  # doctest: +SKIP
    >>> res.metrics["top1"]  # doctest: +SKIP
    """
    dist = dist or get_dist()
    config.check(dist.world)
    train, eval_split = train or source.train, eval_split or source.eval
    key = run_key(encoder, source, config, train, eval_split)
    run_dir = Path(config.run_dir) if config.run_dir else (
        cache.cache_root(cache_dir) / "runs" / f"{encoder.info.name.replace('/', '_')}-{source.name}-{key[:16]}")
    torch.manual_seed(config.seed)
    model = Classifier(copy.deepcopy(encoder).float(), source.num_classes).to(dist.device)
    set_drop_path(model.encoder.model, config.drop_path)
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.lr, betas=(0.9, 0.999))
    amp = resolve_amp(config.amp, dist.device)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=amp == torch.float16)
    state = load_checkpoint(run_dir, key, model, optimizer, scaler, dist) if config.resume else None
    resumed = state.step if state else None
    state = state or TrainState()
    skipped = _train(model, train, source, config, state, amp, scaler, optimizer, run_dir, key, dist, progress)
    metrics = evaluate_classifier(model, eval_split, config.eval_batch_size, amp, dist, config.workers, progress)
    return FinetuneResult(metrics=metrics, model=model, history=state.history, steps=state.step, resumed_from=resumed,
                          run_dir=run_dir, skipped=skipped, amp=str(amp).replace("torch.", "") if amp else "off")


def _train(model: Classifier, split: ImageSplit, source: DataSource, config: FinetuneConfig, state: TrainState,
           amp: torch.dtype | None, scaler: Any, optimizer: torch.optim.Optimizer, run_dir: Path, key: str,
           dist: Dist, progress: Callable[[str, int, int], None] | None) -> list[int]:
    spe = steps_per_epoch(len(split), config.batch_size)
    if spe == 0:
        raise MimzooError(f"{len(split)} training images are fewer than batch_size {config.batch_size}; lower it")
    total, warmup = config.epochs * spe, int(config.warmup_epochs * spe)
    pp = model.encoder.preprocess
    augment = config.augment and source.crop_ok
    tf = train_transform(pp, flip=source.flip_ok) if augment else model.encoder.transform
    data = ImageDataset(split, tf)
    ddp = _wrap(model, dist)
    loss_fn, skipped = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), set()
    model.train()
    while state.step < total and not state.done:
        epoch, start = divmod(state.step, spe)
        batches = train_batches(len(split), config.batch_size, epoch, seed=config.seed, rank=dist.rank,
                                world=dist.world, start=start)
        for batch in make_loader(data, batches, workers=config.workers, pin_memory=dist.device.type == "cuda"):
            skipped.update(i for i, _ in batch.skipped)
            set_lr(optimizer, lr_at(state.step, total, warmup, config.lr, config.min_lr))
            loss = _step(ddp, batch, loss_fn, amp, scaler, optimizer, dist, pp.input_size)
            state.step, state.epoch_steps, state.epoch_loss = state.step + 1, state.epoch_steps + 1, state.epoch_loss + loss
            if state.epoch_steps == spe:
                state.history.append(state.epoch_loss / spe)
                state.epoch_loss, state.epoch_steps = 0.0, 0
            state.done = state.step >= total
            if state.done or (config.checkpoint_every and state.step % config.checkpoint_every == 0):
                save_checkpoint(run_dir, key, model, optimizer, scaler, state, dist)
            if progress and dist.is_main:
                progress("fine-tune", state.step, total)
    model.eval()
    return sorted(i for part in dist.gather_objects(sorted(skipped)) for i in part)


def _wrap(model: nn.Module, dist: Dist) -> nn.Module:
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _step(ddp: nn.Module, batch: Any, loss_fn: nn.Module, amp: torch.dtype | None, scaler: Any,
          optimizer: torch.optim.Optimizer, dist: Dist, input_size: tuple[int, ...]) -> float:
    """One optimizer step; returns the loss averaged over processes."""
    dev = dist.device
    with autocast(dev, amp):
        if batch.images is None:  # every image failed to decode: take part in the step with a zero loss
            loss = ddp(torch.zeros(1, *input_size, device=dev)).sum() * 0.0
        else:
            loss = loss_fn(ddp(batch.images.to(dev, non_blocking=True)).float(), batch.labels.to(dev))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return dist.all_reduce_sum(loss.detach().float()).item() / dist.world


@torch.no_grad()
def evaluate_classifier(model: nn.Module, split: ImageSplit, batch_size: int, amp: torch.dtype | None, dist: Dist,
                        workers: int | None = None, progress: Callable[[str, int, int], None] | None = None
                        ) -> dict[str, float]:
    """Top-1 / top-5 (percent) of a classifier on `split` (center-crop preprocessing), summed over processes."""
    model.eval()
    loader = make_loader(ImageDataset(split, model.encoder.transform), eval_batches(len(split), batch_size, dist.rank,
                         dist.world), workers=workers, pin_memory=dist.device.type == "cuda")
    counts = torch.zeros(3, dtype=torch.float64)  # top-1 hits, top-5 hits, images
    done, total = 0, len(split)
    for batch in loader:
        done = min(total, done + (len(batch.index) + len(batch.skipped)) * dist.world)
        if batch.images is not None:
            with autocast(dist.device, amp):
                logits = model(batch.images.to(dist.device)).float().cpu()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hit = top == batch.labels[:, None]
            counts += torch.tensor([hit[:, 0].sum().item(), hit.any(1).sum().item(), len(batch.labels)], dtype=torch.float64)
        if progress and dist.is_main:
            progress(f"evaluate {split.name}", done, total)
    top1, top5, n = dist.all_reduce_sum(counts).tolist()
    out = {"top1": 100.0 * top1 / max(n, 1)}
    if model.head.out_features >= 5:
        out["top5"] = 100.0 * top5 / max(n, 1)
    return out
