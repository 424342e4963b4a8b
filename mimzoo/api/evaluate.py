"""`mimzoo.evaluate`: how good is an encoder on a labelled dataset? k-NN, probes, fine-tuning.

Also exports :func:`model_index` (eval records -> the Hub card's ``model-index``). Importing this
module does not import torch; running an evaluation does.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import MimzooError
from ..eval.results import TASKS, EvalRecord, model_index, read_results, write_results
from ..eval.seg import SEG_TASKS

log = logging.getLogger(__name__)
FEATURE_TASKS = ("knn", "linear", "attentive")  # tasks that run on cached frozen features


def evaluate(
    model: Any,
    task: str | Sequence[str] = "knn",
    data: str = "digits",
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    img_size: int | None = None,
    device: Any = None,
    subset: int | None = None,
    eval_subset: int | None = None,
    cache_dir: str | Path | None = None,
    output: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    save_head: str | Path | None = None,
    overwrite: bool = False,
    **opts: Any,
) -> list[EvalRecord]:
    """Measure an encoder on a labelled dataset with one or more downstream tasks.

    Args:
        model: anything :func:`mimzoo.load` accepts (zoo name, ``"hf-hub:org/name"``, a model
            folder), or an encoder already loaded.
        task: "knn", "linear", "attentive", "finetune", a list of them, or "all" (these four); or
            "seg-linear" alone, on segmentation data. The frozen-feature tasks share one feature
            extraction (and its cache).
        data: "digits", "cifar10:PATH", "cifar100:PATH" or an image folder with train/ and val/; for
            seg-linear "digit-scenes", "ade20k:PATH", "voc:PATH" or "seg-folder:PATH".
        pretrained: load the zoo model's pretrained weights (False: random init, seeded by `seed`).
        weights: a checkpoint file or weight-source tag for zoo names.
        img_size: evaluate at another input size (position embeddings are interpolated).
        device: "cpu", "cuda", ... (default: the local GPU if any; under torchrun, this rank's GPU).
        subset: use at most this many training images (a seeded sample; for quick checks).
        eval_subset: use at most this many evaluation images.
        cache_dir: cache root for features and fine-tuning checkpoints (default: ~/.cache/mimzoo).
        output: also write the records to this JSON file (merged with records already there).
        progress: ``progress(stage, done, total)`` callback for extraction and training.
        save_head: write the trained head to this folder (one task: linear, finetune or seg-linear),
            for ``mimzoo export MODEL --head DIR`` (see :mod:`mimzoo.tasks`).
        overwrite: replace the `save_head` folder when mimzoo wrote it.
        **opts: task settings, by field name: ``k``, ``temperature``, ``epochs``, ``base_lr``,
            ``batch_size``, ``layer_decay``, ``drop_path``, ``amp``, ``checkpoint_every``, ``seed``,
            ``workers``, ... A bare name applies to every task that has the field; prefix it with
            the task (``linear_epochs=50``, ``extract_batch_size=128``) to target one.

    Returns:
        One :class:`~mimzoo.eval.results.EvalRecord` per task (``.top1``, ``.metrics``, ``.to_dict()``).

    >>> rec, = mimzoo.evaluate("mae-vit-b", "knn", "digits", k=20)  # doctest: +SKIP
    >>> rec.top1  # doctest: +SKIP
    """
    from ..data import open_dataset
    from ..data import subset as take
    from ..eval.dist import get_dist

    from ..encoders.device import check_device

    tasks = parse_tasks(task)
    from ..tasks.from_eval import check_save_head

    check_save_head(tasks, save_head, overwrite)
    configs, extract_cfg = build_configs(tasks, {**opts, "cache_dir": str(cache_dir) if cache_dir else None})
    _check_counts(subset=subset, eval_subset=eval_subset)
    check_device(device)
    seg = _segmentation_tasks(tasks, data, configs, save_head, output)
    source = _open_segmentation(data) if seg else open_dataset(data)  # before the model: a bad spec fails fast
    dist = get_dist(device)
    if seg and dist.world > 1:
        raise MimzooError("--task seg-linear runs in one process; run it without torchrun")
    encoder, name = _load(model, pretrained=pretrained, weights=weights, img_size=img_size,
                          seed=int(opts.get("seed", 0)), dist=dist)
    if seg:
        from ..data.segmentation import seg_subset as take
    else:
        from ..eval.video import match_source

        source = match_source(encoder, source, tasks, name)  # video: clips sampled as the model expects
    train, ev = take(source.train, subset), take(source.eval, eval_subset)
    common = {"data": data, "weights": _weights_source(encoder), "input_size": list(encoder.preprocess.input_size),
              "world_size": dist.world}
    feats = _features(encoder, name, source, train, ev, tasks, extract_cfg, dist, progress)
    records = []
    for t in tasks:
        start = time.perf_counter()
        trained: dict[str, Any] = {}
        if seg:
            from ..eval.seg.run import run_seg_linear

            metrics, extra = run_seg_linear(encoder, name, source, train, ev, configs[t], extract_cfg, device=dist.device,
                                            progress=progress, output=output, trained=trained)
        else:
            metrics, extra = _run_task(t, configs[t], encoder, source, train, ev, feats, cache_dir, dist, progress,
                                       trained=trained)
        extra["seconds"] = round(time.perf_counter() - start, 2)
        if save_head is not None and dist.is_main:
            from ..tasks.from_eval import save_eval_head

            extra["saved_head"] = str(save_eval_head(save_head, t, encoder, trained, labels=source.classes,
                                                     dataset=data, metrics=metrics, overwrite=overwrite))
        config = {**dataclasses.asdict(configs[t]), **common, **extra}
        records.append(EvalRecord(model=name, task=t, dataset=source.name, split=ev.name,
                                  metrics={k: round(v, 4) for k, v in metrics.items()}, config=config))
    if output and dist.is_main:
        write_results(output, records)
    return records


def parse_tasks(task: str | Sequence[str]) -> list[str]:
    """Task names from "knn", "knn,linear", ["knn", "linear"] or "all", in a fixed order."""
    items = [task] if isinstance(task, str) else list(task)
    names = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    if names == ["all"]:
        return [t for t in TASKS if t not in SEG_TASKS]  # segmentation needs other data: asked for by name
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        classify = ", ".join(t for t in TASKS if t not in SEG_TASKS)
        raise MimzooError(f"unknown task '{(unknown or [''])[0]}'; use {classify} or all, or seg-linear on "
                          "segmentation data")
    return [t for t in TASKS if t in names]


def _config_classes() -> dict[str, type]:
    from ..eval.attentive import AttentiveConfig
    from ..eval.features import ExtractConfig
    from ..eval.finetune import FinetuneConfig
    from ..eval.knn import KnnConfig
    from ..eval.linear import LinearConfig

    from ..eval.seg.probe import SegLinearConfig

    return {"knn": KnnConfig, "linear": LinearConfig, "attentive": AttentiveConfig, "finetune": FinetuneConfig,
            "seg-linear": SegLinearConfig, "extract": ExtractConfig}


def option_names() -> dict[str, list[str]]:
    """The settings each task (and feature extraction) accepts."""
    return {t: [f.name for f in dataclasses.fields(c)] for t, c in _config_classes().items()}


def build_configs(tasks: list[str], opts: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Route ``opts`` to the config dataclass of each task (and of extraction); strings are converted.

    A bare name goes to every config that has the field; ``<task>_<field>`` to that task only and wins.
    """
    classes = _config_classes()
    fields = {t: {f.name: f for f in dataclasses.fields(c)} for t, c in classes.items()}
    chosen: dict[str, dict[str, Any]] = {t: {} for t in classes}
    used = set(tasks) | {"extract"}
    routed = [(key, *_route(key, fields)) for key, v in opts.items() if v is not None]
    for key, targets, name in sorted(routed, key=lambda r: r[2] != r[0]):  # prefixed names last, so they win
        for t in targets:
            chosen[t][name] = _coerce(opts[key], fields[t][name], key)
        if key != "seed" and not used & set(targets):
            log.warning("option '%s' does not apply to %s; ignored", key, ", ".join(tasks))
    try:
        built = {t: classes[t](**chosen[t]) for t in classes}
    except TypeError as e:
        raise MimzooError(f"invalid option ({e})") from e
    for t in [*tasks, "extract"]:  # every setting in range before any work
        built[t].check(1) if t == "finetune" else built[t].check()
    return {t: built[t] for t in tasks}, built["extract"]


def _segmentation_tasks(tasks: list[str], data: str, configs: dict[str, Any], save_head: Any, output: Any) -> bool:
    """Whether this run is a segmentation probe; refuses mixing it with classification tasks or data."""
    from ..data.segmentation import SEG_SPEC_HELP, is_segmentation_spec

    seg = [t for t in tasks if t in SEG_TASKS]
    if not seg:
        if is_segmentation_spec(data):
            raise MimzooError(f"{data} is a segmentation dataset; run it with --task seg-linear")
        return False
    if len(seg) != len(tasks):
        raise MimzooError(f"--task {seg[0]} needs segmentation data ({SEG_SPEC_HELP}); run it apart from "
                          f"{', '.join(t for t in tasks if t not in SEG_TASKS)}")
    if not is_segmentation_spec(data):
        raise MimzooError(f"--task {seg[0]} needs a segmentation dataset, not '{data}'; pass --data {SEG_SPEC_HELP}")
    if save_head is not None and configs[seg[0]].seg_head != "linear":
        raise MimzooError("--save-head saves the linear seg head; the multiscale head reads intermediate stages, "
                          "which exported task models do not; drop --save-head or --set seg_head=multiscale")
    if configs[seg[0]].show and output is None:
        raise MimzooError("--show writes its picture beside the results file; pass -o FILE (output=) as well")
    return True


def _open_segmentation(data: str) -> Any:
    from ..data.segmentation import open_segmentation

    return open_segmentation(data)


def _check_counts(**counts: int | None) -> None:
    for name, n in counts.items():
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise MimzooError(f"{name} must be a positive number of images, got {n!r}; "
                              f"pass --{name.replace('_', '-')} N with N >= 1 (or leave it out to use them all)")


def _route(key: str, fields: dict[str, dict[str, Any]]) -> tuple[list[str], str]:
    """The configs an option goes to, and its field name there."""
    for t in fields:
        if key.startswith(f"{t.replace('-', '_')}_") and key[len(t) + 1:] in fields[t]:  # seg-linear: seg_linear_
            return [t], key[len(t) + 1:]
    # a bare batch_size means the heads' batch; extraction's is extract_batch_size
    targets = [t for t in fields if key in fields[t] and (t, key) != ("extract", "batch_size")]
    if not targets:
        known = sorted({n for f in fields.values() for n in f})
        raise MimzooError(f"unknown option '{key}'; known options: {', '.join(known)} (prefix one with a task "
                          "name, e.g. linear_epochs, to set it for that task only)")
    return targets, key


def _coerce(value: Any, field: dataclasses.Field, key: str) -> Any:
    """Convert CLI strings to the field's type ("int", "float | None", "bool", ...)."""
    kind = str(field.type)
    if not isinstance(value, str) or kind.startswith("str"):
        return value
    if value.lower() in ("none", "null", "") and "None" in kind:
        return None
    try:
        if kind.startswith("bool"):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes", "on")
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
    except ValueError as e:
        raise MimzooError(f"option '{key}' needs a {kind.split(' ')[0]}, got '{value}'") from e
    return value


def _load(model: Any, *, pretrained: bool, weights: Any, img_size: int | None, seed: int, dist: Any) -> tuple[Any, str]:
    import torch

    from .load import load

    if isinstance(model, str):
        torch.manual_seed(seed)  # random init: reproducible, and the same on every process
        encoder, name = load(model, pretrained=pretrained, weights=weights, img_size=img_size), model
    elif all(hasattr(model, a) for a in ("forward_features", "preprocess", "transform", "info")):
        if img_size is not None or weights is not None:
            raise MimzooError("img_size and weights apply when evaluate loads the model; pass its name instead")
        encoder, name = model, model.info.name
    else:
        raise MimzooError(f"cannot evaluate a {type(model).__name__}; pass a model name or a mimzoo encoder")
    encoder = encoder.to(dist.device).eval()
    dist.broadcast_module(encoder)
    return encoder, name


def _weights_source(encoder: Any) -> str | None:
    report = encoder.info.weights
    return report.source if report is not None else None


def _features(encoder: Any, name: str, source: Any, train: Any, ev: Any, tasks: list[str], cfg: Any, dist: Any,
              progress: Any) -> dict[str, Any]:
    if not any(t in FEATURE_TASKS for t in tasks):
        return {}
    from ..eval.features import extract_features

    tokens = "attentive" in tasks
    feats = {}
    for which, split in (("train", train), ("eval", ev)):
        feats[which] = extract_features(encoder, split, tokens=tokens, config=cfg,
                                        label=f"{name}-{source.name}-{split.name}", dist=dist, progress=progress)
        _check_decoded(split, len(feats[which]), feats[which].skipped)
    return feats


def _check_decoded(split: Any, decoded: int, skipped: Any) -> None:
    """Refuse a split of which no image could be decoded (a result on 0 images means nothing)."""
    if decoded > 0 or len(split) == 0:
        return
    from ..data.base import DataError

    where = getattr(split, "root", None) or split.name
    first = f"; first: {skipped[0][1]}" if skipped and skipped[0][1] else ""
    raise DataError(f"none of the {len(split)} images in {where} could be decoded{first}; check that those files are "
                    "images (not empty or truncated), or point --data at another folder")


def _run_task(task: str, cfg: Any, encoder: Any, source: Any, train: Any, ev: Any, feats: dict[str, Any],
              cache_dir: Any, dist: Any, progress: Any,
              trained: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    trained = {} if trained is None else trained  # filled with what the task trained, for --save-head
    prog = progress if dist.is_main else None
    if task == "finetune":
        from ..eval.finetune import finetune

        res = finetune(encoder, source, cfg, train=train, eval_split=ev, cache_dir=cache_dir, dist=dist, progress=prog)
        trained.update(head=res.model.head, backbone=res.model.encoder)
        _check_decoded(train, len(train) - len(res.skipped), [(i, "") for i in res.skipped])
        return res.metrics, {"train_images": len(train) - len(res.skipped), "eval_images": len(ev), "steps": res.steps,
                             "resumed_from": res.resumed_from, "amp": res.amp, "skipped": len(res.skipped),
                             "loss_history": [round(v, 4) for v in res.history], "run_dir": str(res.run_dir)}
    tr, te = feats["train"], feats["eval"]
    extra = {"train_images": len(tr), "eval_images": len(te), "skipped": len(tr.skipped) + len(te.skipped),
             "features_cache": te.cache_status, "extract_seconds": round(tr.seconds + te.seconds, 2)}
    if task == "knn":
        from ..eval.knn import knn_eval

        dev = dist.device
        return knn_eval(tr.pooled.to(dev), tr.labels.to(dev), te.pooled.to(dev), te.labels.to(dev),
                        source.num_classes, cfg), extra
    if task == "linear":
        from ..eval.linear import linear_probe

        m, trained["head"], fit = linear_probe(tr.pooled, tr.labels, te.pooled, te.labels, source.num_classes, cfg,
                                               device=dist.device, progress=prog)
        return m, {**extra, **fit}
    from ..eval.attentive import attentive_probe

    m, _, hist = attentive_probe(tr.tokens, tr.labels, te.tokens, te.labels, source.num_classes, cfg,
                                 prefix=tr.prefix_tokens, device=dist.device, progress=prog)
    return m, {**extra, "final_loss": round(hist[-1], 4), "epochs_run": len(hist)}


__all__ = ["EvalRecord", "evaluate", "model_index", "option_names", "parse_tasks", "read_results", "write_results"]
