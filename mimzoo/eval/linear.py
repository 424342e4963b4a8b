"""Linear probing, the MAE protocol: a BatchNorm without affine parameters, then one linear layer.

The BatchNorm only standardises the frozen features (MAE shows this makes the probe insensitive
to each method's feature scale). Probes train on cached features, so after extraction a probe
costs seconds and never runs the encoder again. Two ways to fit the linear layer:

- ``optimizer="lbfgs"``: full-batch L-BFGS on the standardised features, i.e. L2-regularised
  multinomial logistic regression solved to convergence (the CLIP / SimCLR protocol). Its L2
  strength is picked on a held-out 20% of the training features unless given. The default
  (``"auto"``) when the features fit comfortably in memory.
- ``optimizer="lars"`` (MAE: base lr 0.1, batch 16384, 90 epochs, 10 warmup, no weight decay),
  ``"sgd"`` or ``"adamw"``: mini-batches with warmup + cosine, for ImageNet-sized feature sets.

First-order optimisers need many steps on the ill-conditioned features of small datasets;
L-BFGS does not, which is why it is the default there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MimzooError
from .training import evaluate_on_features, fit_on_features, make_optimizer


LBFGS_AUTO_MAX = 50_000_000  # "auto" uses L-BFGS up to this many feature values (N * D), LARS above
# Below this many feature values a CPU L-BFGS fit runs on one thread: its thousands of small ops gain
# nothing from a second thread and, on a busy machine, wait on it at every op (seen: 2 s -> 60 s).
ONE_THREAD_MAX = 4_000_000
L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)  # L2 strengths L-BFGS chooses from on held-out features


@dataclass(frozen=True)
class LinearConfig:
    """Linear-probe settings."""

    optimizer: str = "auto"  # "auto", "lbfgs" (full batch), or mini-batch "lars" (MAE), "sgd", "adamw"
    weight_decay: float | None = None  # L2 on the weights; None: L-BFGS picks it on held-out data, others use 0
    max_iter: int = 1000  # L-BFGS iterations per fit
    epochs: int = 90  # mini-batch optimisers: passes over the training features
    batch_size: int = 16384  # mini-batch optimisers: features per step (MAE: 16384)
    base_lr: float = 0.1  # mini-batch optimisers: lr = base_lr * batch_size / 256
    warmup_epochs: float = 10.0  # mini-batch optimisers: linear warmup before the cosine decay
    seed: int = 0  # head initialisation, held-out split and batch order

    def check(self) -> None:
        if self.optimizer not in ("auto", "lbfgs", "lars", "sgd", "adamw"):
            raise MimzooError(f"linear optimizer '{self.optimizer}' is not one of auto, lbfgs, lars, sgd, adamw")
        from .checks import at_least

        at_least("linear", 1, epochs=self.epochs, batch_size=self.batch_size, max_iter=self.max_iter)
        at_least("linear", 0, strict=True, base_lr=self.base_lr)
        at_least("linear", 0, weight_decay=self.weight_decay, warmup_epochs=self.warmup_epochs)

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def solver(self, n: int, dim: int) -> str:
        if self.optimizer != "auto":
            return self.optimizer
        return "lbfgs" if n * dim <= LBFGS_AUTO_MAX else "lars"


def linear_head(dim: int, num_classes: int) -> nn.Sequential:
    """``BatchNorm1d(dim, affine=False)`` + ``Linear(dim, num_classes)`` with MAE's initialisation."""
    head = nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))
    nn.init.trunc_normal_(head[1].weight, std=0.01)
    nn.init.zeros_(head[1].bias)
    return head


def linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, eval_x: torch.Tensor, eval_y: torch.Tensor, num_classes: int,
    config: LinearConfig = LinearConfig(), *, device: Any = "cpu", progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, float], nn.Module, dict[str, Any]]:
    """Train the linear probe on cached features and measure it.

    Args:
        train_x: ``[N, D]`` training features; train_y ``[N]`` labels.
        eval_x: ``[M, D]`` evaluation features; eval_y ``[M]`` labels.
        num_classes: number of classes.
        config: optimizer, L2, epochs, batch size, lr.
        device: where the head trains.
        progress: ``progress(stage, done, total)`` after each fit (L-BFGS) or epoch.

    Returns:
        (metrics {"top1", "top5"} in percent, the trained head, facts about the fit: solver,
        weight_decay, final_loss).

    >>> m, head, fit = linear_probe(tr.pooled, tr.labels, te.pooled, te.labels, 10)  # doctest: +SKIP
    >>> m["top1"], fit["solver"]  # doctest: +SKIP
    (83.8, 'lbfgs')
    """
    config.check()
    device = torch.device(device)
    solver = config.solver(*train_x.shape)
    if solver == "lbfgs":
        small = device.type == "cpu" and train_x.numel() <= ONE_THREAD_MAX
        with _threads(1 if small else None):
            head, fit = _fit_lbfgs(train_x.float().to(device), train_y.to(device), num_classes, config, progress)
    else:
        torch.manual_seed(config.seed)
        head = linear_head(train_x.shape[1], num_classes).to(device)
        wd = config.weight_decay or 0.0
        opt = make_optimizer(solver, head.parameters(), config.lr, wd)
        history = fit_on_features(head, train_x, train_y, opt, epochs=config.epochs, batch_size=config.batch_size,
                                  peak_lr=config.lr, warmup_epochs=config.warmup_epochs, seed=config.seed,
                                  device=device, progress=progress, stage="linear probe")
        fit = {"weight_decay": wd, "final_loss": history[-1]}
    return evaluate_on_features(head, eval_x, eval_y, device=device), head, {"solver": solver, **fit}


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` intra-op threads (None: unchanged), then restore the previous count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _standardised_head(x: torch.Tensor, num_classes: int, seed: int) -> nn.Sequential:
    """The probe head with its BatchNorm statistics set to the training features' mean and variance."""
    torch.manual_seed(seed)
    head = linear_head(x.shape[1], num_classes).to(x.device)
    head[0].running_mean.copy_(x.mean(0))
    head[0].running_var.copy_(x.var(0, unbiased=False))
    return head.eval()


def _lbfgs(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, config: LinearConfig) -> tuple[nn.Module, float]:
    """Minimise mean cross-entropy + l2/2 * ||W||^2 over the linear layer, full batch."""
    head = _standardised_head(x, num_classes, config.seed)
    z = head[0](x).detach()  # standardised once: BatchNorm in eval mode is a fixed affine map
    lin = head[1]
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=config.max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(z), y) + 0.5 * l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        final = closure().item()
    return head, final


def _fit_lbfgs(x: torch.Tensor, y: torch.Tensor, num_classes: int, config: LinearConfig,
               progress: Callable[[str, int, int], None] | None) -> tuple[nn.Module, dict[str, Any]]:
    grid = [config.weight_decay] if config.weight_decay is not None or len(y) < 50 else list(L2_GRID)
    grid = [1e-4 if v is None else v for v in grid]
    total, scores = len(grid) + 1, {}
    if len(grid) > 1:  # pick the L2 strength on a held-out fifth of the training features
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(config.seed)).to(x.device)
        cut = len(y) // 5
        held, fit = perm[:cut], perm[cut:]
        for i, l2 in enumerate(grid):
            head, _ = _lbfgs(x[fit], y[fit], num_classes, l2, config)
            scores[l2] = evaluate_on_features(head, x[held], y[held], device=x.device)["top1"]
            if progress:
                progress("linear probe", i + 1, total)
    best = max(grid, key=lambda v: (scores.get(v, 0.0), v))  # ties: the stronger regularisation
    head, final = _lbfgs(x, y, num_classes, best, config)
    if progress:
        progress("linear probe", total, total)
    return head, {"weight_decay": best, "final_loss": final, "heldout_top1": scores or None}
