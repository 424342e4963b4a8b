"""The facts about mae-vit-digits come from one place and every surface says the same.

The figures live in ``mimzoo/assets/mae-vit-digits/results.json``; the plugin's description (so
`mimzoo info` and the Hub card), the docs, the benchmark report and the README quote it, and a
rerun of `mimzoo eval` on the bundled weights reproduces it. The training target (raw pixels), the
architecture as built, and the model counts of `plugins` vs `list` agree the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import mimzoo
from mimzoo.api.listing import info, model_table
from mimzoo.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(mimzoo.__file__).parent / "assets" / "mae-vit-digits"
RESULTS = json.loads((ASSETS / "results.json").read_text())
P, R = RESULTS["pretrained"], RESULTS["random_init"]
FIGURES = f"k-NN {P['knn']:.1f} / linear {P['linear']:.1f} (random init {R['knn']:.1f} / {R['linear']:.1f})"


def _card() -> str:
    from mimzoo.hub.card import CardInfo, build_card

    entry = get_registry().model("mae-vit-digits")
    v = entry.variant
    return build_card(CardInfo("mimzoo/mae-vit-digits", v.license_for(entry.method), v.arch, 96, v.params_m,
                               v.pooling, v.preprocess, method=entry.method, variant=v,
                               weights_source="bundled:assets/mae-vit-digits/model.safetensors"))


def test_info_and_card_quote_the_stored_figures():
    assert FIGURES in info("mae-vit-digits")["description"]
    card = _card()
    assert FIGURES in card
    assert not re.search(r"\]\((?!https?://)[^)]+\)", card)  # no repo-relative links: they mean nothing on the Hub
    assert "benchmarks/" not in card


def test_rerunning_the_probes_on_the_bundled_weights_gives_the_stored_figures():
    records = mimzoo.evaluate("mae-vit-digits", ["knn", "linear"], "digits", device="cpu")
    measured = {r.task: r.top1 for r in records}
    assert measured == pytest.approx(P, abs=0.05), (measured, P)


def test_docs_benchmark_and_readme_quote_the_stored_figures():
    docs = (ROOT / "docs" / "pretrain.md").read_text()
    bench = (ROOT / "benchmarks" / "pretrain_digits.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"k-NN {P['knn']:.1f}% and\nlinear probe {P['linear']:.1f}% top-1, against {R['knn']:.1f}% and " \
           f"{R['linear']:.1f}%" in docs
    for task in ("knn", "linear"):
        assert f"| {task} | {P[task]:.1f} | {R[task]:.1f} |" in bench
    assert f"scores {R['knn']:.1f} (k-NN) and {R['linear']:.1f} (linear)" in readme
    assert f"top-1 {P['knn']:.1f} %" in readme and f"top-1 {P['linear']:.1f} %" in readme


def test_target_is_raw_pixels_everywhere():
    config = json.loads((ASSETS / "config.json").read_text())["mimzoo"]["recipe"]
    assert config["target"]["kind"] == RESULTS["target"] == "pixels"
    assert info("mae-vit-digits")["method"]["taxonomy"]["target"] == "pixels"
    assert "| Masking / target / objective | random-patch (75%) / pixels / mse" in _card()
    assert "target.kind=pixels" in config["notes"]  # the recipe's notes no longer claim norm-pix alone
    assert info("mae-vit-b")["method"]["taxonomy"]["target"] == "normalized-pixels"  # the paper's models are


def test_architecture_is_shown_as_built():
    config = json.loads((ASSETS / "config.json").read_text())["model_args"]
    label = f"vit (patch {config['patch_size']}, {config['embed_dim']}-d, depth {config['depth']})"
    row = next(r for r in model_table("mae-vit-digits"))
    assert row["arch"] == label
    assert f"timm `vit_tiny_patch16_224` built as {label}" in _card()
    assert next(r for r in model_table("mae-vit-b"))["arch"] == "vit_base_patch16_224"  # unchanged when not resized


def test_plugins_counts_what_list_shows_plus_test_variants():
    from click.testing import CliRunner

    from mimzoo.cli.main import cli

    out = CliRunner().invoke(cli, ["plugins"]).output
    for method in get_registry().methods():
        shown = sum(1 for e in get_registry().models(include_test=False) if e.method.name == method.name)
        tests = sum(1 for v in method.variants if v.test_only)
        row = next(line for line in out.splitlines() if line.startswith(method.name + " "))
        assert (f" {shown} (+{tests} test) " if tests else f" {shown} ") in row, row
