"""The on-disk feature cache: one safetensors file per (model weights, data, preprocessing).

A file is named by a hash of its key and carries the full key and a checksum of every tensor in
its metadata. Reading checks all three: a file whose key differs (stale: written by another
mimzoo or for other inputs) or whose bytes do not match (corrupt: truncated, edited) is
reported and rebuilt, never used. Files are written to a temp name and renamed, so a run killed
mid-write leaves no entry, only a temp file that the next write in that folder removes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_file
from .._outputs import sweep_temps

log = logging.getLogger(__name__)
FORMAT = "1"  # bump when what goes into a cache file changes


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where evaluation caches live: `cache_dir`, else ``$MIMZOO_CACHE``, else ``~/.cache/mimzoo``.

    Features go into ``<root>/features``, fine-tuning runs (checkpoints) into ``<root>/runs``.
    """
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("MIMZOO_CACHE"):
        return Path(os.environ["MIMZOO_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mimzoo"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of every parameter and buffer (names, dtypes, shapes, bytes): two models share it iff equal."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: Path, label: str, key: dict[str, Any]) -> Path:
    """Where features for `key` live; `label` (model, data, split) makes the name readable."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:80] or "features"
    return cache_dir / f"{slug}-{key_hash(key)[:16]}.safetensors"


def _checksum(t: torch.Tensor) -> str:
    t = t.contiguous()
    return hashlib.blake2b(t.reshape(-1).view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()


def save(path: Path, key: dict[str, Any], tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Write the tensors with their key, checksums and `info` (JSON) atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"mimzoo_features": FORMAT, "key": json.dumps(key, sort_keys=True), "info": json.dumps(info)}
    meta.update({f"checksum.{k}": _checksum(v) for k, v in tensors.items()})
    sweep_temps(path.parent)  # half-written files of killed runs (their process is gone)
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    log.info("cached features in %s", path)


def load(path: Path, key: dict[str, Any], names: list[str]) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any], str]:
    """The tensors `names` of a valid cache file for `key`.

    Returns:
        (tensors or None, info, status): status is "hit", "miss" (no file), "stale" (other key or
        format, or lacking a needed tensor) or "corrupt" (unreadable, or a checksum mismatch).
    """
    if not path.is_file():
        return None, {}, "miss"
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("mimzoo_features") != FORMAT or meta.get("key") != json.dumps(key, sort_keys=True):
                log.warning("feature cache %s was written for other inputs; rebuilding it", path)
                return None, {}, "stale"
            if not set(names) <= set(f.keys()):
                return None, {}, "stale"
            tensors = {n: f.get_tensor(n) for n in names}
        info = json.loads(meta["info"])
    except Exception as e:  # safetensors raises several types on a truncated or garbled file
        log.warning("feature cache %s is unreadable (%s); rebuilding it", path, e)
        return None, {}, "corrupt"
    bad = [n for n, t in tensors.items() if _checksum(t) != meta.get(f"checksum.{n}")]
    if bad:
        log.warning("feature cache %s fails its checksum (%s); rebuilding it", path, ", ".join(bad))
        return None, {}, "corrupt"
    return tensors, info, "hit"
