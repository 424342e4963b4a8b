"""Listing the zoo from plugin metadata alone (no torch, no model builds)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..registry import ModelEntry, get_registry


def list_models(pattern: str = "*", include_test: bool = False) -> list[str]:
    """Names of the zoo models matching a glob pattern.

    Args:
        pattern: glob over model names, e.g. ``"mae-*"``.
        include_test: also list the tiny variants that exist for tests.

    >>> list_models("mae-vit-*")  # doctest: +SKIP
    ['mae-vit-b', 'mae-vit-h', 'mae-vit-l']
    """
    return [e.name for e in get_registry().models(pattern, include_test=include_test)]


def model_row(entry: ModelEntry) -> dict[str, Any]:
    """One row of the model table."""
    v, m = entry.variant, entry.method
    ref = v.reference
    return {
        "name": v.name,
        "method": m.title,
        "family": m.family,
        "arch": v.arch_label(),  # as built: "vit (patch 4, 96-d, depth 6)" when kwargs resize the timm model
        "params_m": v.params_m,
        "input": v.preprocess.input_size[1],
        "license": v.license_for(m),
        "ft_top1": ref.finetune_top1 if ref else None,
        "lin_top1": ref.linear_top1 if ref else None,
        "knn_top1": ref.knn_top1 if ref else None,
        "epochs": ref.epochs if ref else None,
    }


def model_table(pattern: str = "*", include_test: bool = False) -> list[dict[str, Any]]:
    """Rows describing every matching model (what `mimzoo list` prints), by method then size."""
    entries = get_registry().models(pattern, include_test=include_test)
    entries.sort(key=lambda e: (e.method.name, e.variant.test_only, e.variant.params_m, e.name))
    return [model_row(e) for e in entries]


def taxonomy_table() -> list[dict[str, Any]]:
    """One row per method on the survey's axes, sorted by family then method."""
    rows = []
    for m in get_registry().methods():
        t = m.taxonomy
        rows.append(
            {
                "family": m.family,
                "method": m.title,
                "masking": t.masking + (f" {t.mask_ratio:.0%}" if t.mask_ratio else ""),
                "target": t.target,
                "objective": t.objective,
                "architecture": t.architecture,
                "encoder_input": t.encoder_input,
                "survey_nodes": ", ".join(t.survey_nodes) or "-",
                "paper": f"{m.paper.arxiv} ({m.paper.year})",
            }
        )
    return sorted(rows, key=lambda r: (r["family"], r["method"].lower()))


def info(name: str) -> dict[str, Any]:
    """Everything the registry knows about one model, as plain data.

    >>> info("mae-vit-b")["method"]["paper"]["arxiv"]  # doctest: +SKIP
    '2111.06377'
    """
    entry = get_registry().model(name)
    v, m = entry.variant, entry.method
    return {
        "name": v.name,
        "description": v.description,
        "distribution": entry.distribution,
        "method": {
            "name": m.name,
            "title": m.title,
            "family": m.family,
            "license": v.license_for(m),
            "paper": {**asdict(m.paper), "url": m.paper.url},
            "taxonomy": asdict(v.taxonomy_for(m)),  # how these weights were trained
        },
        "encoder": {"arch": v.arch, "label": v.arch_label(), "model_kwargs": dict(v.model_kwargs), "pooling": v.pooling, "params_m": v.params_m},
        "preprocess": asdict(v.preprocess),
        "weights": [asdict(w) for w in v.weights],
        "layouts": [{"name": lay.name, "description": lay.description} for lay in v.layouts],
        "reference": asdict(v.reference) if v.reference else None,
    }
