"""Video clips on the evaluation heads: which model meets which data, and how clips are sampled.

A video encoder (``encoder.preprocess.num_frames`` set, input ``[N, C, T, H, W]``) evaluates on a
video source (``moving-digits``, ``video-folder:PATH``): each clip is sampled to the model's
``num_frames`` frames ``frame_stride`` apart from its middle (center sampling, the same clip every
run), and the pooled embedding (mean of the tokens) goes to k-NN and the linear probe, the tokens to
the attentive probe, cached like image features (the cache key carries the sampling). Fine-tuning
augments single images and is refused on clips; an image model on clips (or the reverse) is refused
in one line naming a matching model or dataset.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import MimzooError

VIDEO_TASKS = ("knn", "linear", "attentive")  # the heads that run on clip features


def sampling(encoder: Any) -> tuple[int, int] | None:
    """``(num_frames, frame_stride)`` of a video encoder, None for an image encoder."""
    pp = getattr(encoder, "preprocess", None)
    n = getattr(pp, "num_frames", None)
    if n is None or (int(n) <= 1 and not getattr(encoder, "is_video", False)):
        return None
    return int(n), int(getattr(pp, "frame_stride", 1) or 1)


def match_source(encoder: Any, source: Any, tasks: list[str], name: str) -> Any:
    """`source` with its clips sampled for `encoder`; one-line errors for a model/data or task mismatch.

    >>> src = match_source(mimzoo.load("videomae-vit-test"), open_dataset("moving-digits"), ["knn"], "m")  # doctest: +SKIP
    >>> len(src.train.image(0))  # doctest: +SKIP
    8
    """
    frames = sampling(encoder)
    video = bool(getattr(source, "video", False))
    if frames is None and not video:
        return source
    if frames is None:
        raise MimzooError(f"{source.name} holds video clips but {name} is an image model; evaluate a video model "
                          "(e.g. videomae-vit-test) or pass --data digits")
    if not video:
        raise MimzooError(f"{name} is a video model ({frames[0]} frames) but {source.name} holds images; "
                          "pass --data moving-digits or --data video-folder:PATH")
    refused = [t for t in tasks if t not in VIDEO_TASKS]
    if refused:
        raise MimzooError(f"task {', '.join(refused)} does not run on video clips yet; use --task "
                          f"{','.join(VIDEO_TASKS)}")
    n, stride = frames
    _check_length(source.train, n, stride)
    return dataclasses.replace(source, train=source.train.sampled(n, stride), eval=source.eval.sampled(n, stride))


def _check_length(split: Any, n: int, stride: int) -> None:
    """Refuse up front a source whose clips are all known to be too short (moving-digits, frame folders)."""
    counts = [split.frame_count(i) for i in range(len(split))]
    known = [c for c in counts if c is not None]
    span = (n - 1) * stride + 1
    if known and len(known) == len(counts) and max(known) < span:
        hint = f"pass moving-digits:frames={span}" if split.__class__.__name__.startswith("MovingDigits") \
            else "use longer clips"
        raise MimzooError(f"the clips have at most {max(known)} frames; {n} frames at stride {stride} need {span}: "
                          f"{hint}")


def clip_key(encoder: Any) -> dict[str, Any]:
    """What clip features depend on beyond the image key: the frame sampling (empty for image models)."""
    frames = sampling(encoder)
    return {} if frames is None else {"num_frames": frames[0], "frame_stride": frames[1], "sampling": "center"}


def pool(encoder: Any, tokens: Any) -> Any:
    """Pooled ``[N, D]`` from ``forward_features`` tokens: the model's head when it has one, else their mean."""
    head = getattr(getattr(encoder, "model", None), "forward_head", None)
    if head is not None:
        return head(tokens, pre_logits=True)
    return tokens.mean(1)  # the video encoder contract: pooled = mean of tokens
