"""The pretraining loop: AdamW, warmup + cosine, mixed precision, accumulation, EMA, checkpoints, DDP/FSDP.

A run is reproducible from its configuration alone: the sample order, each sample's
augmentation and each step's masks derive from ``(seed, step)``, and masks are drawn for the
whole global batch on every process, so one process and N processes (or any accumulation
split) compute the same loss and gradient. The loss of a micro-batch is its sum over predicted
positions divided by the global batch's count (times the process count, which DDP's gradient
averaging divides out again). A checkpoint holds everything else that changes (weights, EMA
teacher, optimiser, scheduler, scaler, RNG states, step), so a resumed run ends where an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .._lock import output_lock
from ..errors import MimzooError
from . import checkpoint as ckpt
from . import distributed as D
from .data import PretrainDataset, StepPlan, make_loader, open_source, Augmenter
from .output import LOG_NAME, check_output_folder, open_output_folder
from .progress import Interrupted, Progress, interrupted_message
from .recipe import Recipe, find_recipe, with_overrides

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "fp16")
# Devices fp16 training is offered on. CPUs have bf16 (same range as fp32, no scaler needed); the
# tests add "cpu" here to run the fp16 + GradScaler path, which is device-generic, on a CPU.
FP16_DEVICES = ("cuda",)
NO_DECAY = ("pos_embed", "cls_token", "mask_token", "reg_token", "dist_token", "relative_position_bias_table")
UNUSED_IN_PRETRAINING = ("fc_norm", "head", "attn_pool", "head_drop")  # pooling / classifier parts of timm models


DEFAULT_MICRO_BATCH = 128  # per process and accumulation step, when --batch-size is not given


@dataclass(frozen=True)
class TrainConfig:
    """One pretraining run (the CLI's options)."""

    method: str  # method whose recipe is trained ("mae"; see mimzoo.pretrain.find_recipe)
    output: str  # output folder; becomes a mimzoo model folder
    arch: str | None = None  # zoo name, module:VARIANT or timm architecture; None = the recipe's default
    data: str = "digits"  # "digits", or a folder of images
    epochs: int | None = None  # passes over the data; None = the recipe's
    batch_size: int | None = None  # global batch (all processes and accumulation steps); None = recipe's, capped
    accum_steps: int = 1  # micro-batches per optimiser step on each process
    lr: float | None = None  # peak learning rate; None = recipe blr * batch / 256
    warmup_epochs: float | None = None  # None = the recipe's (capped at the run length)
    precision: str = "fp32"  # "fp32", "bf16" (autocast, CPU or GPU) or "fp16" (autocast + GradScaler, GPU)
    device: str | None = None  # "cpu", "cuda"; None = a GPU when there is one
    img_size: int | None = None  # input size other than the architecture's
    seed: int = 0  # model init, data order, augmentation and masks
    save_every: int = 0  # checkpoint every N steps; 0 = at the end of every epoch
    log_every: int = 10  # log (and report progress) every N steps
    resume: bool = False  # continue from <output>/checkpoints/last.pt
    max_steps: int | None = None  # stop after this many steps (the schedule still spans all epochs)
    fsdp: bool = False  # shard parameters with FSDP instead of DDP (the largest encoders)
    workers: int = 0  # DataLoader worker processes
    compile: bool = False  # torch.compile the objective (faster steps after a one-off compilation)
    threads: int | None = None  # torch CPU threads per process; None = torch's default
    overrides: tuple[tuple[str, str], ...] = ()  # recipe overrides ("masking.ratio", "0.6")
    step_delay: float = 0.0  # seconds to sleep after each step (lets tests kill a run mid-way)

    def __post_init__(self) -> None:  # 0 or a negative count must not run (0 would mean "the default")
        for name, low in (("batch_size", 1), ("epochs", 1), ("accum_steps", 1), ("max_steps", 1), ("log_every", 1),
                          ("img_size", 1), ("threads", 1), ("save_every", 0), ("workers", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise MimzooError(f"TrainConfig {name}={value!r} must be a whole number >= {low}; pass {name}={max(low, 1)} "
                                  "or more, or leave it out for the default")


@dataclass(frozen=True)
class PretrainResult:
    """What a finished run produced."""

    folder: Path  # the model folder (load it with mimzoo.load)
    steps: int  # optimiser steps done in total
    loss: float  # mean loss of the last logged steps
    recipe: Recipe  # the recipe trained with
    history: list[dict[str, Any]] = field(default_factory=list)  # logged records of this process's run


def pretrain(config: TrainConfig | None = None, on_log: Callable[[dict[str, Any]], None] | None = None,
             on_progress: Callable[[dict[str, Any]], None] | None = None, **kwargs: Any) -> PretrainResult:
    """Pretrain an encoder with a method's recipe and write a mimzoo model folder.

    Args:
        config: the run; or pass its fields as keyword arguments.
        on_log: called on the main process with every logged record (step, epoch, loss, lr, images/s, eta).
        on_progress: called on the main process with the run's plan before the first step, a time
            estimate after steps 1 and 2, and a report at least every ~10 s (see
            :mod:`mimzoo.pretrain.progress`; ``describe(rec)`` words one).

    Raises:
        Interrupted: on Ctrl-C, a ``KeyboardInterrupt`` naming the checkpoint and log that were kept.

    Returns:
        A :class:`PretrainResult`; ``mimzoo.load(result.folder)`` loads the encoder.

    >>> r = pretrain(method="mae", arch="mae-vit-test", data="digits", epochs=1, output="runs/mae")  # doctest: +SKIP
    >>> mimzoo.load(str(r.folder)).num_features  # doctest: +SKIP
    32
    """
    cfg = config or TrainConfig(**kwargs)
    if cfg.precision not in PRECISIONS:
        raise MimzooError(f"--precision {cfg.precision} is not one of {', '.join(PRECISIONS)}")
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _pretrain(cfg, on_log, on_progress)
    finally:
        torch.set_num_threads(threads_before)  # a library call leaves the process's thread count as it was


def _pretrain(cfg: TrainConfig, on_log: Any, on_progress: Any) -> PretrainResult:
    info = D.init(cfg.device)
    try:
        # one run per folder: a second one fails here at once; the main process writes, so it holds the lock
        with output_lock(cfg.output) if info.main else contextlib.nullcontext():
            if info.main:
                check_output_folder(Path(cfg.output))
            return _Run(cfg, info, on_log, on_progress).run()
    finally:
        D.shutdown()


class _Run:
    """State of one run; each method is one stage of the loop."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo, on_log: Callable[[dict[str, Any]], None] | None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None):
        from ..encoders.build import patch_size_of
        from .arch import build_encoder
        from .models import build_objective
        from .models.attention import choose_attention

        self.cfg, self.info, self.on_log = cfg, info, on_log
        self.progress = Progress(on_progress if info.main else None)
        self.saved_step: int | None = None  # step of the checkpoint on disk (for the Ctrl-C message)
        if cfg.precision == "fp16" and info.device.type not in FP16_DEVICES:
            raise MimzooError("--precision fp16 needs a GPU (it trains with a gradient scaler); use bf16 on the CPU")
        self.recipe = _with_noted_overrides(find_recipe(cfg.method), cfg.overrides)
        self.arch = cfg.arch or self.recipe.arch
        if not self.arch:
            raise MimzooError(f"the {cfg.method} recipe names no default architecture; pass --arch")
        torch.manual_seed(cfg.seed)  # identical initial weights on every process
        encoder = build_encoder(self.arch, self.recipe.method, cfg.img_size)
        source = open_source(cfg.data)
        patch = patch_size_of(encoder.info.arch, encoder.info.model_args) or 1  # local views: whole patches
        self.dataset = PretrainDataset(source, Augmenter(encoder.preprocess, self.recipe.augment, source, patch))
        self.objective = build_objective(self.recipe, encoder).to(info.device).train()
        _freeze_unused(self.objective.encoder)
        switched = choose_attention(self.objective, info.device, cfg.precision)
        if switched:
            log.info("%s on the CPU: %d attention modules compute with matmuls instead of SDPA (faster there)",
                     cfg.precision, switched)
        self._plan_sizes(len(source))
        self.objective.set_schedule(self.steps_per_epoch, self.total)  # per-epoch schedules (iBOT temperatures)
        self.model = D.wrap(self.objective, info, cfg.fsdp)  # before the optimiser: FSDP replaces parameters
        self.optimizer = _adamw(self.objective, self.recipe, self.lr, info.device, fused=not cfg.fsdp)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(info.device.type) if cfg.precision == "fp16" else None
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.folder = Path(cfg.output)
        self.history: list[dict[str, Any]] = []

    # -- setup -----------------------------------------------------------------------------------

    def _plan_sizes(self, n: int) -> None:
        cfg, opt, unit = self.cfg, self.recipe.optim, self.info.world * self.cfg.accum_steps
        # without --batch-size: the recipe's global batch, capped by the data and by a micro-batch of
        # DEFAULT_MICRO_BATCH per process (a 4096-image recipe batch on one CPU would exhaust memory;
        # the lr follows the batch, and --accum-steps reaches larger batches)
        cap = min(opt.batch_size, n, DEFAULT_MICRO_BATCH * unit)
        batch = cfg.batch_size or max(unit, cap // unit * unit)
        self.batch, self.epochs = batch, cfg.epochs or opt.epochs
        self.steps_per_epoch = max(1, n // batch)
        self.total = self.epochs * self.steps_per_epoch
        self.stop = min(self.total, cfg.max_steps) if cfg.max_steps else self.total
        self.warmup = min(int(round((cfg.warmup_epochs if cfg.warmup_epochs is not None else opt.warmup_epochs)
                                    * self.steps_per_epoch)), max(self.total - 1, 0))
        self.lr = cfg.lr if cfg.lr is not None else opt.blr * batch / 256
        self.micro = batch // unit

    def _lr_factor(self, step: int) -> float:
        """Linear warmup to 1, then cosine decay to ``min_lr / lr``."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        floor = self.recipe.optim.min_lr / self.lr if self.lr else 0.0
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return floor + (1 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    def _autocast(self) -> Any:
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.info.device.type, dtype=dtype)

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> PretrainResult:
        if not self.cfg.resume and (self.folder / "checkpoints" / ckpt.LAST).exists():
            raise MimzooError(f"{self.folder} already holds a pretraining run; pass --resume to continue it, "
                              "or another -o folder")
        start = self._restore() if self.cfg.resume else 0
        self.saved_step = start or None
        if start >= self.stop and (self.folder / "config.json").is_file():
            return self._already_finished(start)
        if self.info.main:
            open_output_folder(self.folder, fresh=not self.cfg.resume)
        D.barrier(self.info)
        self.progress.plan(self._plan(start))
        self.current = start + 1
        try:
            self._loop(start)
            return self._finish(self.stop)
        except KeyboardInterrupt:  # Ctrl-C: stop now (no checkpoint: that could take long), say what is kept
            msg = interrupted_message(self.folder, min(self.current, self.stop), self.stop, self.saved_step, LOG_NAME)
            raise Interrupted(msg) from None
        finally:
            self.progress.close()

    def _loop(self, start: int) -> None:
        plan = StepPlan(len(self.dataset), self.batch, self.info.world, self.info.rank, self.cfg.accum_steps,
                        self.cfg.seed, start, self.stop)
        batches = iter(make_loader(self.dataset, plan, self.cfg.workers))
        window, t0 = [], time.perf_counter()
        for step in range(start, self.stop):
            self.current = step + 1
            loss = self._step(step, [next(batches) for _ in range(self.cfg.accum_steps)])
            window.append(loss)
            if self.cfg.step_delay:
                time.sleep(self.cfg.step_delay)
            done = step + 1
            logged = done % self.cfg.log_every == 0 or done == self.stop
            if logged:
                self._log(done, window, (done - start) * self.batch / (time.perf_counter() - t0))
                window = []
            self.progress.step_done(done, loss, logged)
            if self._checkpoint_due(done):
                self._save_checkpoint(done)
        self.seconds = time.perf_counter() - t0

    def _plan(self, start: int) -> dict[str, Any]:
        """What the run will do, reported before its first step."""
        params = sum(p.numel() for p in self.objective.encoder.parameters()) / 1e6
        return {"method": self.recipe.method, "model": self.arch, "params_m": params, "start": start,
                "total": self.stop, "epochs": self.epochs, "steps_per_epoch": self.steps_per_epoch,
                "batch": self.batch, "micro_batch": self.micro, "accum_steps": self.cfg.accum_steps,
                "processes": self.info.world, "device": str(self.info.device), "precision": self.cfg.precision,
                "threads": torch.get_num_threads(), "data": self.cfg.data, "images": len(self.dataset),
                "output": str(self.folder), "checkpoint_every": self.cfg.save_every or self.steps_per_epoch}

    def _step(self, step: int, images: list[torch.Tensor]) -> float:
        masks = self.objective.masking(self.batch, torch.Generator().manual_seed(_mask_seed(self.cfg.seed, step)))
        denom = float(masks.count)  # predicted positions in the global batch
        share = self.micro * self.cfg.accum_steps
        mine = masks.slice(self.info.rank * share, (self.info.rank + 1) * share).to(self.info.device)
        total = 0.0
        for j, x in enumerate(images):
            last = j == len(images) - 1
            part = mine.slice(j * self.micro, (j + 1) * self.micro)
            with self._sync(last), self._autocast():
                loss = self.model(_to_device(x, self.info.device), part, denom)
            self._backward(loss * self.info.world)
            total += float(loss.detach())
        self._optimizer_step()
        self.objective.after_step((step + 1) / self.total)
        loss = D.all_sum(total, self.info)
        if not math.isfinite(loss):
            raise MimzooError(f"the loss is {loss} at step {step + 1}; lower --lr, or train in --precision fp32")
        return loss

    def _sync(self, last: bool) -> Any:
        if self.cfg.fsdp and self.info.world > 1:
            self.model.set_requires_gradient_sync(last)
            return contextlib.nullcontext()
        return self.model.no_sync() if (self.info.world > 1 and not last) else contextlib.nullcontext()

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def _optimizer_step(self) -> None:
        clip = self.recipe.optim.clip_grad
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        self.objective.before_optimizer_step()  # e.g. iBOT drops its prototypes' gradients in the first epoch
        if clip:
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    # -- logging, checkpoints, the result -----------------------------------------------------------

    def _log(self, step: int, losses: list[float], speed: float) -> None:
        rec = {"step": step, "total": self.stop, "epoch": (step - 1) // self.steps_per_epoch + 1,
               "loss": sum(losses) / len(losses), "lr": self.optimizer.param_groups[0]["lr"],
               "images_per_s": speed, "eta_s": (self.stop - step) * self.batch / max(speed, 1e-9)}
        self.history.append(rec)
        if self.info.main:
            log.info("step %d/%d loss %.4f lr %.3g %.1f img/s", step, self.stop, rec["loss"], rec["lr"], speed)
            with open(self.folder / LOG_NAME, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, allow_nan=False) + "\n")  # one line: a kill tears at most this one
            if self.on_log:
                self.on_log(rec)

    def _checkpoint_due(self, done: int) -> bool:
        every = self.cfg.save_every or self.steps_per_epoch
        return done % every == 0 and done < self.stop

    def _run_config(self) -> dict[str, Any]:
        return {"method": self.recipe.method, "arch": self.arch, "data": self.cfg.data, "batch_size": self.batch,
                "epochs": self.epochs, "seed": self.cfg.seed, "img_size": self.cfg.img_size,
                "recipe": self.recipe.to_dict()}

    def _save_checkpoint(self, step: int) -> dict[str, Any]:
        model_sd, optim_sd = ckpt.full_state(self.model, self.optimizer)
        rngs = D.gather_objects(ckpt.rng_state(), self.info)
        if self.info.main:
            ckpt.save(self.folder / "checkpoints" / ckpt.LAST, {
                "step": step, "model": model_sd, "optimizer": optim_sd, "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {}, "rng": rngs,
                "config": json.dumps(self._run_config())})
        self.saved_step = step
        D.barrier(self.info)
        return model_sd

    def _restore(self) -> int:
        data = ckpt.load(self.folder / "checkpoints" / ckpt.LAST)
        saved, now = json.loads(data["config"]), self._run_config()
        changed = [k for k in ("method", "arch", "data", "batch_size", "epochs", "seed", "img_size", "recipe")
                   if saved.get(k) != now.get(k)]
        if changed:
            raise ckpt.CheckpointError(f"--resume with different {', '.join(changed)} than the checkpoint in "
                                       f"{self.folder}; use the same options, or another -o folder")
        ckpt.load_full_state(self.model, self.optimizer, data["model"], data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if self.scaler and data["scaler"]:
            self.scaler.load_state_dict(data["scaler"])
        if len(data["rng"]) == self.info.world:
            ckpt.set_rng_state(data["rng"][self.info.rank])
        if self.info.main:
            _trim_log(self.folder / "log.jsonl", data["step"])
        log.info("resumed %s at step %d", self.folder, data["step"])
        return int(data["step"])

    def _finish(self, step: int) -> PretrainResult:
        from .arch import build_encoder
        from .output import write_model_folder

        model_sd = self._save_checkpoint(step) if step > 0 else {}
        # a run resumed at its last step (killed while writing the model folder) logged nothing new
        last = self.history[-1]["loss"] if self.history else _last_logged_loss(self.folder / LOG_NAME)
        if self.info.main:
            run = {"arch": self.arch, "data": self.cfg.data, "epochs": self.epochs, "steps": step,
                   "batch_size": self.batch, "seed": self.cfg.seed, "processes": self.info.world,
                   "final_loss": last if last is not None and math.isfinite(last) else None,  # valid JSON
                   "train_seconds": round(getattr(self, "seconds", 0.0), 1)}
            encoder = build_encoder(self.arch, self.recipe.method, self.cfg.img_size)
            write_model_folder(self.folder, encoder, model_sd, self.recipe, run)
        D.barrier(self.info)
        return PretrainResult(folder=self.folder, steps=step, loss=float("nan") if last is None else last,
                              recipe=self.recipe, history=self.history)

    def _already_finished(self, step: int) -> PretrainResult:
        """--resume on a finished run: nothing to train, nothing rewritten."""
        try:
            run = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))["mimzoo"]["pretrain"]
            loss = float(run["final_loss"]) if run.get("final_loss") is not None else float("nan")
        except (ValueError, KeyError, TypeError):
            loss = float("nan")
        log.warning("%s finished all %d steps already; nothing to do (its files are unchanged)", self.folder, step)
        return PretrainResult(folder=self.folder, steps=step, loss=loss, recipe=self.recipe)


def _with_noted_overrides(recipe: Recipe, overrides: tuple[tuple[str, str], ...]) -> Recipe:
    """The recipe with --set overrides applied, its notes saying which (the notes describe the paper's
    defaults, e.g. "norm-pix MSE", which a run with target.kind=pixels no longer follows)."""
    if not overrides:
        return recipe
    changed = with_overrides(recipe, dict(overrides))
    sets = ", ".join(f"{k}={v}" for k, v in overrides)
    return replace(changed, notes=f"{recipe.notes}; this run overrides {sets}" if recipe.notes else f"overrides {sets}")


def _to_device(x: Any, device: torch.device) -> Any:
    """A batch on `device`: a tensor, or the list of tensors of a multi-crop batch (global, local views)."""
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, device) for v in x)
    return x.to(device, non_blocking=True)


def _mask_seed(seed: int, step: int) -> int:
    return (seed * 104_729 + step * 2_147_483_647 + 12_345) % (2**63 - 1)


def _freeze_unused(encoder: torch.nn.Module) -> None:
    """Pooling/classifier parts of timm models get no gradient in pretraining: keep them out of DDP and AdamW."""
    for name, child in encoder.named_children():
        if name in UNUSED_IN_PRETRAINING:
            child.requires_grad_(False)


def _adamw(objective: torch.nn.Module, recipe: Recipe, lr: float, device: torch.device,
           fused: bool = True) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms, tokens and position embeddings."""
    decay, no_decay = [], []
    for name, p in objective.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.split(".")[-1] in NO_DECAY else decay).append(p)
    groups = [{"params": decay, "weight_decay": recipe.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = fused and device.type in ("cpu", "cuda")  # one kernel for all parameters instead of a loop over them
    return torch.optim.AdamW(groups, lr=lr, betas=recipe.optim.betas, fused=fused)


def _log_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of a log.jsonl, and how many lines were torn (a run killed mid-write) or not records."""
    records, torn = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
        elif line.strip():
            torn += 1
    return records, torn


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the resumed step (they belong to the run that was cut off), and torn lines."""
    from .._atomic import atomic_file

    if not path.is_file():
        return
    records, torn = _log_records(path)
    if torn:
        log.warning("dropped %d unreadable line(s) of %s (a run killed while writing it)", torn, path)
    with atomic_file(path) as tmp:
        tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in records if r["step"] <= step),
                       encoding="utf-8")


def _last_logged_loss(path: Path) -> float | None:
    records = _log_records(path)[0] if path.is_file() else []
    return float(records[-1]["loss"]) if records else None
