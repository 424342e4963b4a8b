"""``--task seg-linear`` end to end: extract (or read cached) grids, train the probe, measure, picture.

Called by :func:`mimzoo.evaluate`, which loads the encoder and opens the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import MimzooError


def run_seg_linear(encoder: Any, name: str, source: Any, train: Any, ev: Any, cfg: Any, extract_cfg: Any, *,
                   device: Any = None, progress: Any = None, output: str | Path | None = None,
                   trained: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, extra config) of the seg-linear probe; fills `trained` with what ``--save-head`` writes."""
    from .features import extract_seg_features
    from .probe import seg_linear_probe

    feats = {}
    for which, split in (("train", train), ("eval", ev)):
        feats[which] = extract_seg_features(encoder, split, head=cfg.seg_head, config=extract_cfg,
                                            label=f"{name}-{source.name}-{split.name}-seg-{cfg.seg_head}",
                                            progress=progress)
    tr, te = feats["train"], feats["eval"]
    res = seg_linear_probe(tr, te, source.classes, cfg, device=device, progress=progress)
    extra: dict[str, Any] = {
        "train_images": len(tr), "eval_images": len(te), "skipped": len(tr.skipped) + len(te.skipped),
        "features_cache": te.cache_status, "extract_seconds": round(tr.seconds + te.seconds, 2),
        "grid": [list(m.shape[1:]) for m in tr.maps], "mask_size": list(tr.masks.shape[1:]),
        "num_classes": len(source.classes), "per_class_iou": res.per_class_iou,
        "loss_history": [round(v, 4) for v in res.history],
    }
    if trained is not None:
        trained["head"] = res.head
        trained["head_args"] = {"seg_head": cfg.seg_head}  # head.json takes JSON scalars; D is its num_features
        trained["seg_head"] = cfg.seg_head
    if cfg.show:
        if output is None:
            raise MimzooError("--show writes its picture beside the results file; pass -o FILE as well")
        extra["picture"] = str(_picture(ev, te, res.predictions, source.classes, encoder, output))
    return res.metrics, extra


def _picture(ev: Any, te: Any, preds: Any, classes: tuple[str, ...], encoder: Any, output: str | Path) -> Path:
    from PIL import Image

    from .picture import picture_path, write_picture

    _, h, w = encoder.preprocess.input_size
    n = len(preds)
    images = [ev.image(int(i)).convert("RGB").resize((w, h), Image.BICUBIC) for i in te.index[:n]]
    return write_picture(picture_path(output), images, [m.numpy() for m in te.masks[:n]],
                         [p.numpy() for p in preds], classes)
