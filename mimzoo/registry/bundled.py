"""Figures of a model that ships inside the mimzoo package: ``results.json`` beside its weights.

A plugin that bundles a model (``mae-vit-digits``, ``videomae-vit-digits``) keeps its measured figures
in one file under ``mimzoo/assets/<folder>/results.json`` (written by its benchmark script) and quotes
them in the variant's description, so ``mimzoo info``, ``list`` and the Hub card say what the file says.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)


def read_results(path: str) -> dict[str, Any]:
    """The figures at `path` inside the mimzoo package (``assets/<folder>/results.json``)."""
    return json.loads(resources.files("mimzoo").joinpath(path).read_text(encoding="utf-8"))


def results_or_none(path: str, model: str) -> dict[str, Any] | None:
    """:func:`read_results`, or None (with a warning) when the file is missing or damaged: a damaged install
    lists `model` without its figures rather than taking its plugin's other models down."""
    try:
        return read_results(path)
    except (OSError, ValueError) as e:
        log.warning("cannot read mimzoo/%s (%s); %s is listed without its figures", path, e, model)
        return None


def probe_figures(results: dict[str, Any]) -> str:
    """The k-NN / linear line of `results` against random init.

    >>> probe_figures({"pretrained": {"knn": 62.44, "linear": 94.44}, "random_init": {"knn": 21.33, "linear": 68.0}})
    'k-NN 62.4 / linear 94.4 (random init 21.3 / 68.0)'
    """
    p, r = results["pretrained"], results["random_init"]
    return f"k-NN {p['knn']:.1f} / linear {p['linear']:.1f} (random init {r['knn']:.1f} / {r['linear']:.1f})"
