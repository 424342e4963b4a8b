"""k-nearest-neighbour classification on frozen features, as DINO evaluates.

Features are L2-normalised, so the dot product is the cosine similarity; each test image takes
its `k` most similar training images, and each neighbour votes for its class with weight
``exp(similarity / T)`` (``voting="distance"``, DINO's T = 0.07) or with weight 1
(``voting="uniform"``, the plain majority vote scikit-learn's ``KNeighborsClassifier`` uses;
ties go to the smaller class index as there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import MimzooError

log = logging.getLogger(__name__)
VOTING = ("distance", "uniform")


@dataclass(frozen=True)
class KnnConfig:
    """k-NN settings."""

    k: int = 20  # neighbours that vote (DINO reports 10, 20, 100, 200; 20 is its headline)
    temperature: float = 0.07  # T in exp(cosine / T) for distance-weighted votes
    voting: str = "distance"  # "distance" (DINO: exp(cos / T) weights) or "uniform" (majority vote)
    chunk: int = 1024  # test images scored at once (bounds memory to chunk x train size)

    def check(self) -> None:
        from .checks import at_least

        at_least("knn", 1, k=self.k, chunk=self.chunk)
        at_least("knn", 0, strict=True, temperature=self.temperature)
        if self.voting not in VOTING:
            raise MimzooError(f"knn voting '{self.voting}' is not one of {', '.join(VOTING)}")


def knn_scores(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, num_classes: int,
               config: KnnConfig = KnnConfig()) -> torch.Tensor:
    """Class votes ``[N_test, C]`` of each test feature's k nearest training features (cosine).

    Computed in the features' dtype (pass float64 features for bit-for-bit comparisons).

    >>> knn_scores(torch.eye(3), torch.tensor([0, 1, 2]), torch.eye(3), 3, KnnConfig(k=1)).argmax(1)
    tensor([0, 1, 2])
    """
    config.check()
    k = min(config.k, train.shape[0])
    if k < config.k:
        log.warning("k=%d is more than the %d training images; using k=%d", config.k, train.shape[0], k)
    bank = F.normalize(train, dim=1).t()  # [D, N_train]
    scores = []
    for start in range(0, test.shape[0], config.chunk):
        sim = F.normalize(test[start : start + config.chunk], dim=1) @ bank  # [n, N_train]
        top_sim, top_idx = sim.topk(k, dim=1)  # [n, k]
        votes = torch.ones_like(top_sim) if config.voting == "uniform" else (top_sim / config.temperature).exp()
        s = torch.zeros(sim.shape[0], num_classes, dtype=sim.dtype, device=sim.device)
        scores.append(s.scatter_add_(1, train_labels.to(sim.device)[top_idx], votes))
    return torch.cat(scores) if scores else torch.zeros(0, num_classes, dtype=test.dtype)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 accuracy in percent (top-5 only with at least 5 classes).

    Top-1 takes the first highest score, so ties go to the smaller class index.
    """
    n = max(1, labels.shape[0])
    labels = labels.to(scores.device)
    out = {"top1": 100.0 * (scores.argmax(1) == labels).sum().item() / n}
    if scores.shape[1] >= 5:
        top5 = scores.topk(5, dim=1).indices
        out["top5"] = 100.0 * (top5 == labels[:, None]).any(1).sum().item() / n
    return out


def knn_eval(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
             test_labels: torch.Tensor, num_classes: int, config: KnnConfig = KnnConfig()) -> dict[str, float]:
    """k-NN top-1 / top-5 (percent) of `test_feats` against the training bank.

    Args:
        train_feats: ``[N, D]`` memory bank; train_labels ``[N]``.
        test_feats: ``[M, D]`` queries; test_labels ``[M]``.
        num_classes: number of classes.
        config: k, temperature, vote weighting.

    >>> knn_eval(tr.pooled, tr.labels, te.pooled, te.labels, 10, KnnConfig(k=20))  # doctest: +SKIP
    {'top1': 91.3, 'top5': 99.1}
    """
    return accuracy(knn_scores(train_feats, train_labels, test_feats, num_classes, config), test_labels)
