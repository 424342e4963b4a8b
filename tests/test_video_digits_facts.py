"""The bundled videomae-vit-digits: its figures come from one file, every surface quotes them, a rerun reproduces them.

``mimzoo/assets/videomae-digits/results.json`` is written by benchmarks/pretrain_videomae_digits.py
(``--bundle``), which refuses a run that does not beat every random-init seed; the plugin's
description (so `mimzoo info` and the Hub card), docs/video.md, the README and benchmarks/eval_digits.md
quote it, and `mimzoo eval` on the bundled weights gives it again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import mimzoo
from mimzoo.api.listing import info

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(mimzoo.__file__).parent / "assets" / "videomae-digits"
NAME = "videomae-vit-digits"

pytestmark = pytest.mark.skipif(NAME not in mimzoo.list_models(), reason="the videomae plugin is not installed")
RESULTS = json.loads((ASSETS / "results.json").read_text())
P, R = RESULTS["pretrained"], RESULTS["random_init"]
FIGURES = f"k-NN {P['knn']:.1f} / linear {P['linear']:.1f} (random init {R['knn']:.1f} / {R['linear']:.1f})"


def test_the_stored_figures_beat_every_random_init_seed():
    seeds = RESULTS["random_init_seeds"]
    assert len(seeds) == 3 and seeds[0] == R
    for task in ("knn", "linear"):
        assert P[task] > max(s[task] for s in seeds), (task, P, seeds)
    assert RESULTS["command"] == "mimzoo eval videomae-vit-digits --task knn,linear --data moving-digits:test=1000"


def test_info_and_card_quote_the_stored_figures():
    from mimzoo.hub.card import CardInfo, build_card
    from mimzoo.registry import get_registry

    assert FIGURES in info(NAME)["description"]
    entry = get_registry().model(NAME)
    v = entry.variant
    card = build_card(CardInfo(f"mimzoo/{NAME}", v.license_for(entry.method), v.arch, 96, v.params_m, v.pooling,
                               v.preprocess, method=entry.method, variant=v,
                               weights_source="bundled:assets/videomae-digits/model.safetensors"))
    assert FIGURES in card and "clips of 8 frames" in card
    assert not re.search(r"\]\((?!https?://)[^)]+\)", card)  # no repo-relative links on the Hub


def test_the_zoo_name_loads_the_bundled_weights_offline():
    enc = mimzoo.load(NAME)
    assert enc.info.weights.source == "bundled:assets/videomae-digits/model.safetensors"
    assert enc.preprocess.num_frames == 8 and enc.num_features == 96
    config = json.loads((ASSETS / "config.json").read_text())
    assert config["model_args"]["patch_size"] == 16 and config["mimzoo"]["recipe"]["target"]["kind"] == RESULTS["target"]


def test_rerunning_the_probes_on_the_bundled_weights_gives_the_stored_figures():
    records = mimzoo.evaluate(NAME, ["knn", "linear"], "moving-digits:test=1000", device="cpu")
    measured = {r.task: r.top1 for r in records}
    # 1,000 test clips: one clip is 0.1 point; float sums in another thread count may move one clip
    assert measured == pytest.approx(P, abs=0.15), (measured, P)


def test_docs_readme_and_benchmark_quote_the_stored_figures():
    docs = (ROOT / "docs" / "video.md").read_text()
    readme = (ROOT / "README.md").read_text()
    bench = (ROOT / "benchmarks" / "eval_digits.md").read_text()
    for text in (docs, readme):
        assert f"k-NN {P['knn']:.1f} and linear {P['linear']:.1f}" in text
        assert f"random init {R['knn']:.1f} and {R['linear']:.1f}" in text
    seeds = RESULTS["random_init_seeds"]
    for task in ("knn", "linear"):
        row = f"| digit (10 classes) | {task} | {P[task]:.1f} | " + " / ".join(f"{s[task]:.1f}" for s in seeds)
        assert row in bench, row


def test_a_missing_results_file_lists_the_model_without_figures(tmp_path, caplog):
    from mimzoo.registry.bundled import probe_figures, results_or_none

    assert results_or_none("assets/no-such-model/results.json", "x-digits") is None
    assert "x-digits is listed without its figures" in caplog.text
    assert probe_figures(RESULTS) in FIGURES  # the one line every surface quotes
