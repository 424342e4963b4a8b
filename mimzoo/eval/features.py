"""Frozen-encoder features of a dataset split, extracted in parallel and cached on disk.

One forward per image gives both the pooled embedding ``[D]`` (k-NN, linear probe) and, when
asked, the tokens ``[L, D]`` (attentive probe). Under torchrun the batches are dealt round-robin
to the processes and gathered back in index order, so every process ends with the same tensors
as a single process would compute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..data.base import ImageSplit
from ..errors import MimzooError
from ..data.loader import ImageDataset, eval_batches, make_loader
from . import cache
from .dist import Dist, get_dist
from .video import clip_key, pool

log = logging.getLogger(__name__)

# progress(stage, done, total): called on the main process after each batch; may raise to stop
Progress = Callable[[str, int, int], None]
_TOKEN_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class ExtractConfig:
    """How features are extracted and cached."""

    batch_size: int = 64  # images per forward pass
    workers: int | None = None  # image-decoding processes per process (None: up to 4)
    cache: bool = True  # read and write the on-disk feature cache
    cache_dir: str | None = None  # cache root, features go to <root>/features (None: $MIMZOO_CACHE or ~/.cache/mimzoo)
    token_dtype: str = "float16"  # how tokens are stored (they are L times larger than pooled features)

    def check(self) -> None:
        from .checks import at_least

        at_least("extract", 1, batch_size=self.batch_size, flags={"batch_size": "--extract-batch-size"})
        at_least("extract", 0, workers=self.workers)
        if self.token_dtype not in _TOKEN_DTYPES:
            raise MimzooError(f"extract: token_dtype '{self.token_dtype}' is not one of {', '.join(_TOKEN_DTYPES)}; "
                              "pass --set extract_token_dtype=float16")


@dataclass
class Features:
    """Features of the decoded images of one split, in index order."""

    pooled: torch.Tensor  # [N, D] float32 pooled embeddings
    labels: torch.Tensor  # [N] int64 class labels
    index: torch.Tensor  # [N] int64 positions in the split (images that failed to decode are absent)
    tokens: torch.Tensor | None = None  # [N, L, D] tokens (token_dtype), prefix tokens first
    prefix_tokens: int = 0  # how many leading tokens are class/register tokens
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (index, reason) of undecodable images
    cache_status: str = "off"  # "hit", "miss", "stale", "corrupt" (the last three: extracted now) or "off"
    cache_file: Path | None = None  # the cache file read or written
    seconds: float = 0.0  # time spent extracting (0 on a cache hit)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def feature_key(encoder: Any, split: ImageSplit) -> dict[str, Any]:
    """What the features of `split` depend on: the model and its exact weights, the data, the preprocessing."""
    p = next(encoder.parameters())
    return {
        "model": {"name": encoder.info.name, "arch": encoder.info.arch, "pooling": encoder.info.pooling,
                  "model_args": {k: repr(v) for k, v in sorted(encoder.info.model_args.items())}},
        "weights": cache.weights_fingerprint(encoder),
        "dtype": str(p.dtype),
        "data": split.fingerprint(),
        "split": split.name,
        "preprocess": encoder.preprocess.to_timm(),
        **({"clip": clip} if (clip := clip_key(encoder)) else {}),  # video models: frames, stride, sampling
    }


def extract_features(
    encoder: Any,
    split: ImageSplit,
    *,
    tokens: bool = False,
    config: ExtractConfig = ExtractConfig(),
    label: str = "",
    dist: Dist | None = None,
    progress: Progress | None = None,
) -> Features:
    """Pooled embeddings (and tokens) of every image of `split`, from the cache when valid.

    Args:
        encoder: a mimzoo encoder (``mimzoo.load(...)``), on the device it should run on.
        split: a dataset split (``mimzoo.data.open_dataset("digits").train``).
        tokens: also return ``forward_features`` tokens ``[N, L, D]``.
        config: batch size, loader workers, cache settings.
        label: readable prefix of the cache file name, e.g. ``"mae-vit-b-digits-train"``.
        dist: the process group view (default: from the environment, torchrun or single process).
        progress: ``progress(stage, done, total)`` after each batch, on the main process only.

    >>> enc = mimzoo.load("mae-vit-test", pretrained=False)  # doctest: +SKIP
    >>> extract_features(enc, open_dataset("digits").eval).pooled.shape  # doctest: +SKIP
    torch.Size([450, 32])
    """
    dist = dist or get_dist()
    if not config.cache:
        return _extract(encoder, split, tokens, config, dist, progress)
    key = feature_key(encoder, split)
    path = cache.cache_path(cache.cache_root(config.cache_dir) / "features",
                            label or f"{encoder.info.name}-{split.name}", key)
    found, status = _from_cache(path, key, tokens, dist)
    if found is not None:
        if found.tokens is not None:
            found.tokens = found.tokens.to(_TOKEN_DTYPES[config.token_dtype])
        return found
    feats = _extract(encoder, split, tokens, config, dist, progress)
    feats.cache_status, feats.cache_file = status, path
    if dist.is_main:
        tensors = {"pooled": feats.pooled, "labels": feats.labels, "index": feats.index}
        if feats.tokens is not None:
            tensors["tokens"] = feats.tokens
        info = {"prefix_tokens": feats.prefix_tokens, "skipped": feats.skipped[:1000], "n_skipped": len(feats.skipped),
                "mimzoo_version": __version__}
        cache.save(path, key, tensors, info)
    dist.barrier()
    return feats


def _from_cache(path: Path, key: dict[str, Any], tokens: bool, dist: Dist) -> tuple[Features | None, str]:
    """The cached features, or None and why not ("miss", "stale", "corrupt"); rank 0 decides for all."""
    names = ["pooled", "labels", "index"] + (["tokens"] if tokens else [])
    found, info, status = cache.load(path, key, names) if dist.is_main else (None, {}, "")
    status = dist.broadcast_object(status)  # so that all processes load, or all extract together
    if status == "hit" and found is None:
        found, info, _ = cache.load(path, key, names)
        if found is None:  # changed under our feet: extracting alone would hang the others
            raise MimzooError(f"feature cache {path} changed while the processes read it; run again")
    if found is None:
        return None, status
    skipped = [tuple(s) for s in info.get("skipped", [])]
    return Features(found["pooled"], found["labels"], found["index"], found.get("tokens"),
                    info.get("prefix_tokens", 0), skipped, "hit", path), status


def _extract(encoder: Any, split: ImageSplit, tokens: bool, config: ExtractConfig, dist: Dist,
             progress: Progress | None) -> Features:
    p = next(encoder.parameters())
    batches = eval_batches(len(split), config.batch_size, dist.rank, dist.world)
    loader = make_loader(ImageDataset(split, encoder.transform), batches, workers=config.workers,
                         pin_memory=p.device.type == "cuda")
    pooled, toks, labels, index, skipped = [], [], [], [], []
    stage, total, done = f"extract {split.name}", len(split), 0
    start = time.perf_counter()
    was_training = encoder.training
    encoder.eval()
    with torch.inference_mode():
        for batch in loader:
            skipped += batch.skipped
            if batch.images is not None:
                t = encoder.forward_features(batch.images.to(p.device, p.dtype, non_blocking=True))
                pooled.append(pool(encoder, t).float().cpu())
                if tokens:
                    toks.append(_as_tokens(t).to("cpu", _TOKEN_DTYPES[config.token_dtype]))
                labels.append(batch.labels)
                index.append(batch.index)
            done = min(total, done + (len(batch.index) + len(batch.skipped)) * dist.world)
            if progress and dist.is_main:
                progress(stage, done, total)
    encoder.train(was_training)
    feats = _gather(dist, pooled, toks if tokens else None, labels, index, encoder.num_features)
    feats.skipped = sorted(s for part in dist.gather_objects(skipped) for s in part)
    feats.prefix_tokens = int(getattr(encoder.model, "num_prefix_tokens", 0)) if tokens else 0
    feats.seconds = time.perf_counter() - start
    if feats.skipped:
        log.warning("%d images of %s could not be decoded and were skipped (first: %s)",
                    len(feats.skipped), split.name, feats.skipped[0][1])
    return feats


def _as_tokens(t: torch.Tensor) -> torch.Tensor:
    """``[N, L, D]`` tokens; a convnet's ``[N, C, H, W]`` map becomes ``[N, H*W, C]``."""
    return t.flatten(2).transpose(1, 2) if t.ndim == 4 else t


def _cat(parts: list[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else empty


def _gather(dist: Dist, pooled: list, toks: list | None, labels: list, index: list, dim: int) -> Features:
    """Concatenate this process's batches, gather every process's, and sort by index."""
    idx = dist.gather_rows(_cat(index, torch.empty(0, dtype=torch.long)))
    order = torch.argsort(idx)
    out = Features(
        pooled=dist.gather_rows(_cat(pooled, torch.empty(0, dim)))[order],
        labels=dist.gather_rows(_cat(labels, torch.empty(0, dtype=torch.long)))[order],
        index=idx[order],
    )
    if toks is not None:
        local = _cat(toks, torch.empty(0, 0, dim, dtype=torch.float16))
        if dist.world > 1:  # processes with no images still need the token count for the gather
            shape = next((s for s in dist.gather_objects(tuple(local.shape[1:])) if s[0] > 0), local.shape[1:])
            local = local if local.shape[0] else local.new_zeros((0, *shape))
        out.tokens = dist.gather_rows(local.float()).to(local.dtype)[order]
    return out
