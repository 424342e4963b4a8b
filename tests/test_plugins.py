"""Plugin discovery through real installed distributions: third-party, broken, duplicate."""

from __future__ import annotations

import pytest
from helpers import make_distribution, run_cli

import mimzoo
from mimzoo.errors import DuplicateNameError
from mimzoo.registry import discover, get_registry

ACME = """
from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource
from mimzoo_mae.layouts import LAYOUTS

METHOD = Method(
    name="acme",
    title="AcmeMIM",
    paper=Paper(title="Acme Masked Modeling", arxiv="2401.00001", year=2024, authors="Doe"),
    family="contrastive",
    taxonomy=Taxonomy(masking="multi-block", target="ema-features", objective="smooth-l1",
                      architecture="ViT", encoder_input="visible", survey_nodes=("target",)),
    license="apache-2.0",
    variants=(
        Variant(
            name="acme-vit-tiny", arch="vit_tiny_patch16_224", params_m=0.029,
            model_kwargs={"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
            preprocess=Preprocess(input_size=(3, 32, 32)),
            weights=(WeightSource("hub", repo_id="acme/acme-vit-tiny", filename="acme.pth",
                                  url="https://example.org/acme.pth", layout="official"),),
            layouts=LAYOUTS,
            reference=Reference(linear_top1=50.0, epochs=10, source="made up for tests"),
            description="a third-party test model",
        ),
    ),
)
"""

BROKEN = """
raise ImportError("No module named 'acme_cuda_kernels'")
"""

NOT_A_METHOD = """
METHOD = {"name": "weird"}
"""

CLASH = ACME.replace('name="acme",', 'name="acme2",').replace("AcmeMIM", "Clash")


def test_first_party_mae_registered_through_entry_point(fresh_registry):
    infos = {p.entry_point: p for p in discover()}
    assert infos["mae"].distribution == "mimzoo"
    assert infos["mae"].status == "ok"
    assert {"mae-vit-b", "mae-vit-l", "mae-vit-h"} <= set(mimzoo.list_models())
    assert "mae-vit-test" not in mimzoo.list_models()
    assert "mae-vit-test" in mimzoo.list_models(include_test=True)


def test_third_party_distribution_is_discovered(tmp_path, monkeypatch, fresh_registry):
    root = make_distribution(tmp_path / "site", "acme-mim", "1.2.3", {"acme": "acme_mim:METHOD"}, {"acme_mim": ACME})
    monkeypatch.syspath_prepend(str(root))
    acme = next(p for p in discover() if p.entry_point == "acme")
    assert (acme.distribution, acme.version, acme.status) == ("acme-mim", "1.2.3", "ok")
    assert "acme-vit-tiny" in mimzoo.list_models()
    entry = get_registry().model("acme-vit-tiny")
    assert entry.distribution == "acme-mim" and entry.method.family == "contrastive"
    encoder = mimzoo.load("acme-vit-tiny", pretrained=False)
    assert encoder.num_features == 32


def test_broken_plugins_are_reported_and_others_keep_working(tmp_path, monkeypatch, fresh_registry):
    root = make_distribution(
        tmp_path / "site", "acme-broken", "0.1", {"busted": "acme_busted:METHOD", "weird": "acme_weird:METHOD"},
        {"acme_busted": BROKEN, "acme_weird": NOT_A_METHOD},
    )
    monkeypatch.syspath_prepend(str(root))
    infos = {p.entry_point: p for p in discover()}
    assert infos["busted"].distribution == "acme-broken"
    assert infos["busted"].status == "broken: ImportError: No module named 'acme_cuda_kernels'"
    assert infos["weird"].status.startswith("broken: entry point resolves to dict")
    assert infos["mae"].status == "ok"
    assert "mae-vit-b" in mimzoo.list_models()

    result = run_cli("plugins", pythonpath=[root])
    assert result.returncode == 1  # something is broken: say so in the exit code
    assert "busted" in result.stdout and "acme-broken" in result.stdout and "acme_cuda_kernels" in result.stdout
    assert "mae" in result.stdout and "ok" in result.stdout
    listing = run_cli("list", pythonpath=[root])
    assert listing.returncode == 0 and "mae-vit-b" in listing.stdout


def test_duplicate_model_name_across_distributions_is_an_error(tmp_path, monkeypatch, fresh_registry):
    a = make_distribution(tmp_path / "a", "acme-mim", "1.0", {"acme": "acme_mim:METHOD"}, {"acme_mim": ACME})
    b = make_distribution(tmp_path / "b", "clash-mim", "2.0", {"acme2": "clash_mim:METHOD"}, {"clash_mim": CLASH})
    monkeypatch.syspath_prepend(str(a))
    monkeypatch.syspath_prepend(str(b))
    with pytest.raises(DuplicateNameError) as err:
        mimzoo.list_models()
    msg = str(err.value)
    assert "acme-vit-tiny" in msg and "acme-mim" in msg and "clash-mim" in msg

    result = run_cli("list", pythonpath=[a, b])
    assert result.returncode == 1
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("WARNING")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith("error: model 'acme-vit-tiny' is registered by both")
    assert "clash-mim" in errors[0] and "acme-mim" in errors[0]


def test_duplicate_method_name_across_distributions_is_an_error(tmp_path, monkeypatch, fresh_registry):
    other = ACME.replace("acme-vit-tiny", "other-vit-tiny")
    a = make_distribution(tmp_path / "a", "acme-mim", "1.0", {"acme": "acme_mim:METHOD"}, {"acme_mim": ACME})
    b = make_distribution(tmp_path / "b", "acme-fork", "1.1", {"acme": "acme_fork:METHOD"}, {"acme_fork": other})
    monkeypatch.syspath_prepend(str(a))
    monkeypatch.syspath_prepend(str(b))
    with pytest.raises(DuplicateNameError, match="method 'acme' is registered by both acme-(mim|fork).*acme-(mim|fork)"):
        get_registry()


def test_entry_point_name_must_match_method_name(tmp_path, monkeypatch, fresh_registry):
    root = make_distribution(tmp_path / "s", "acme-mim", "1.0", {"nope": "acme_mim:METHOD"}, {"acme_mim": ACME})
    monkeypatch.syspath_prepend(str(root))
    info = next(p for p in discover() if p.entry_point == "nope")
    assert "differs from the method name 'acme'" in info.status


def test_invalid_taxonomy_marks_the_plugin_broken(tmp_path, monkeypatch, fresh_registry):
    bad = ACME.replace('masking="multi-block"', 'masking="sorta-random"')
    root = make_distribution(tmp_path / "s", "acme-mim", "1.0", {"acme": "acme_mim:METHOD"}, {"acme_mim": bad})
    monkeypatch.syspath_prepend(str(root))
    info = next(p for p in discover() if p.entry_point == "acme")
    assert "masking 'sorta-random' is not one of" in info.status
