"""PyTorch vs an exported model on the same inputs: random batches and real images.

Figures, each taken over every output (``embedding``, and ``tokens`` when exported):

- ``max_abs``: the largest absolute difference of any value;
- ``max_rel``: the largest absolute difference of an image divided by the largest magnitude of
  that image's PyTorch output (relative to its scale, so near-zero values do not blow it up);
- ``cosine_min``: the lowest per-image cosine similarity;
- with labelled real images, leave-one-out k-NN (cosine, k = KNN_K) top-1 of both models, the share
  of images where their predictions agree (``knn_top1_agreement``) and the points the export loses
  (``knn_top1_drop``).

The PyTorch outputs are computed once (:class:`Reference`) and reused for every candidate, so an
INT8 search compares each try against the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._deps import require
from .images import ImageSet
from .spec import Tolerances

log = logging.getLogger(__name__)

KNN_K = 10  # neighbours voting in the k-NN check (leave-one-out over the real images)
Runner = Callable[[np.ndarray], dict[str, np.ndarray]]  # [N, C, H, W] float32 -> named outputs


@dataclass(frozen=True)
class VerifyInputs:
    """The batches both models see."""

    random: tuple[np.ndarray, ...]  # standard-normal batches (what normalised images look like in scale)
    real: np.ndarray | None  # real images after the encoder's own transform, [N, C, H, W]
    labels: np.ndarray | None  # their classes, when known
    data: str  # where the real images come from ("digits", a folder, "none")
    batch_size: int  # real images are fed in batches of this size

    @property
    def batches(self) -> int:
        n_real = 0 if self.real is None else -(-len(self.real) // self.batch_size)
        return len(self.random) + n_real


def make_inputs(encoder: Any, images: ImageSet, *, random_sizes: tuple[int, ...], batch_size: int,
                seed: int = 0) -> VerifyInputs:
    """Random batches of the given sizes and `images` preprocessed with the encoder's transform."""
    torch = require("torch")
    rng = np.random.default_rng(seed)
    shape = encoder.preprocess.batch_shape  # [N, C, H, W], or [N, C, T, H, W] clips for a video encoder
    random = tuple(rng.standard_normal(shape(n)).astype(np.float32) for n in random_sizes)
    real = labels = None
    if len(images):
        transform = encoder.transform
        real = torch.stack([transform(im) for im in images.images]).numpy().astype(np.float32)
        labels = np.asarray(images.labels) if images.labels is not None else None
    return VerifyInputs(random, real, labels, images.name, batch_size)


def torch_runner(encoder: Any, tokens: bool) -> Runner:
    """Run the PyTorch encoder (in float32 on its own device) as a runner."""
    torch = require("torch")
    p = next(encoder.parameters())
    names = getattr(encoder, "output_names", None)  # a task model (mimzoo.tasks): logits, mask / probs
    if names is not None:
        def run_task(x: np.ndarray) -> dict[str, np.ndarray]:
            with torch.inference_mode():
                outs = encoder(torch.from_numpy(x).to(device=p.device, dtype=p.dtype))
                return {n: o.cpu().numpy() for n, o in zip(names, outs)}

        return run_task

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            xt = torch.from_numpy(x).to(device=p.device, dtype=p.dtype)
            if not tokens:
                return {"embedding": encoder(xt).float().cpu().numpy()}
            feats = encoder.model.forward_features(xt)
            emb = encoder.model.forward_head(feats, pre_logits=True)
            return {"embedding": emb.float().cpu().numpy(), "tokens": encoder._as_tokens(feats).float().cpu().numpy()}

    return run


@dataclass
class Outputs:
    """A model's outputs on a VerifyInputs: one dict per random batch, and the real images' outputs."""

    random: list[dict[str, np.ndarray]]
    real: dict[str, np.ndarray] | None


def collect(run: Runner, inputs: VerifyInputs) -> Outputs:
    random = [run(x) for x in inputs.random]
    real = None
    if inputs.real is not None:
        parts = [run(inputs.real[i:i + inputs.batch_size]) for i in range(0, len(inputs.real), inputs.batch_size)]
        real = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Outputs(random, real)


def _pairs(ref: Outputs, got: Outputs) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for r, g in zip(ref.random + [ref.real or {}], got.random + [got.real or {}]):
        for name, value in r.items():
            if name not in g:
                raise ValueError(f"the exported model gives no '{name}' output")
            if g[name].shape != value.shape:
                raise ValueError(f"'{name}' has shape {tuple(g[name].shape)} in the export, {tuple(value.shape)} in PyTorch")
            if not np.issubdtype(value.dtype, np.floating):  # a task model's mask: compared by agreement
                continue
            pairs.append((value.reshape(len(value), -1).astype(np.float64), g[name].reshape(len(value), -1).astype(np.float64)))
    return pairs


def compare(ref: Outputs, got: Outputs) -> dict[str, float]:
    """max_abs, max_rel and cosine_min over every output of every batch."""
    max_abs = max_rel = 0.0
    cos_min = 1.0
    for r, g in _pairs(ref, got):
        diff = np.abs(r - g)
        max_abs = max(max_abs, float(diff.max()))
        scale = np.maximum(np.abs(r).max(axis=1), 1e-12)
        max_rel = max(max_rel, float((diff.max(axis=1) / scale).max()))
        cos = (r * g).sum(1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1), 1e-30)
        cos_min = min(cos_min, float(cos.min()))
        if not np.isfinite(g).all():
            max_abs, max_rel, cos_min = float("inf"), float("inf"), float("-inf")
    return {"max_abs": max_abs, "max_rel": max_rel, "cosine_min": cos_min}


def knn_predict(feats: np.ndarray, labels: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Leave-one-out k-NN class of each row: cosine neighbours, similarity-weighted vote.

    k shrinks to one less than the smallest class, so small sets are not outvoted by other classes.
    """
    smallest = int(np.unique(labels, return_counts=True)[1].min())
    k = min(k, max(1, smallest - 1))
    f = feats.astype(np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)  # never its own neighbour
    k = min(k, len(f) - 1)
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    votes = np.zeros((len(f), int(labels.max()) + 1))
    rows = np.arange(len(f))[:, None]
    np.add.at(votes, (np.broadcast_to(rows, nn.shape), labels[nn]), np.maximum(sim[rows, nn], 0) + 1e-6)
    return votes.argmax(1)


def knn_figures(ref: np.ndarray, got: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """k-NN top-1 (percent) of both models' embeddings, their agreement (0..1) and the export's drop (points)."""
    if len(labels) < 3 or len(set(labels.tolist())) < 2:
        return {}
    p_ref, p_got = knn_predict(ref, labels), knn_predict(got, labels)
    top_ref = float((p_ref == labels).mean() * 100)
    top_got = float((p_got == labels).mean() * 100)
    return {"knn_top1_torch": top_ref, "knn_top1_export": top_got,
            "knn_top1_agreement": float((p_ref == p_got).mean()), "knn_top1_drop": top_ref - top_got}


def report(ref: Outputs, got: Outputs, inputs: VerifyInputs, tolerances: Tolerances) -> dict[str, Any]:
    """The verification block of export.json: figures, tolerances and whether they pass."""
    figures: dict[str, Any] = compare(ref, got)
    knn: dict[str, float] = {}
    task: dict[str, float] = {}
    if "logits" in (ref.real or ref.random[0]):  # a task export: predictions instead of k-NN
        from .task import figures as task_figures

        task = task_figures(ref, got, inputs.labels)
    elif inputs.labels is not None and ref.real is not None and got.real is not None:
        knn = knn_figures(ref.real["embedding"], got.real["embedding"], inputs.labels)
    figures.update(knn)
    figures.update(task)
    failures = tolerances.failures(figures)
    return {
        "passed": not failures,
        "max_abs": figures["max_abs"],
        "max_rel": figures["max_rel"],
        "cosine_min": figures["cosine_min"],
        "knn_top1_agreement": knn.get("knn_top1_agreement"),
        "tolerances": tolerances.to_dict(),
        "batches": inputs.batches,
        "data": inputs.data,
        "images": 0 if inputs.real is None else len(inputs.real),
        "random_batch_sizes": [len(x) for x in inputs.random],
        "knn_top1_torch": knn.get("knn_top1_torch"),
        "knn_top1_export": knn.get("knn_top1_export"),
        "knn_top1_drop": knn.get("knn_top1_drop"),
        **task,
        "failures": failures,
    }


def summary(rep: dict[str, Any]) -> str:
    """One line of the figures, for logs and error messages."""
    parts = [f"max_abs={rep['max_abs']:.3g}", f"max_rel={rep['max_rel']:.3g}", f"cosine_min={rep['cosine_min']:.6f}"]
    for key, label in (("top1_agreement", "top-1 agreement"), ("pixel_agreement", "pixel agreement")):
        if rep.get(key) is not None:
            parts.append(f"{label} {rep[key]:.4f}")
    for key, label in (("top1", "top-1"), ("miou", "mIoU")):
        if rep.get(f"{key}_drop") is not None:
            parts.append(f"{label} {rep[f'{key}_torch']:.2f}% -> {rep[f'{key}_export']:.2f}%")
    if rep.get("knn_top1_drop") is not None:
        parts.append(f"knn top-1 {rep['knn_top1_torch']:.2f}% -> {rep['knn_top1_export']:.2f}% "
                     f"(agreement {rep['knn_top1_agreement']:.3f})")
    return ", ".join(parts)
