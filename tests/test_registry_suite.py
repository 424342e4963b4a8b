"""The registry drives the tests: every registered method and variant passes mimzoo.testing.

Large variants are built on torch's meta device (shapes and parameter counts without memory);
variants up to mimzoo.testing.REAL_FORWARD_MAX_PARAMS_M also run a real forward pass.
"""

from __future__ import annotations

import pytest

import mimzoo.testing as mt
from mimzoo.registry import get_registry

ENTRIES = get_registry().models(include_test=True)
METHODS = get_registry().methods()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_method_metadata(method):
    mt.check_method(method)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_variant_metadata(entry):
    mt.check_variant_metadata(entry.method, entry.variant)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_variant_builds_with_declared_shapes(entry):
    encoder = mt.check_variant_builds(entry.method, entry.variant)
    assert encoder.preprocess == entry.variant.preprocess
    assert encoder.model.pretrained_cfg["input_size"] == list(entry.variant.preprocess.input_size)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_variant_state_dict_round_trip(entry):
    mt.check_state_dict_roundtrip(entry.method, entry.variant)


def test_checks_catch_a_wrong_parameter_count():
    entry = get_registry().model("mae-vit-test")
    from dataclasses import replace

    wrong = replace(entry.variant, params_m=1.0)
    with pytest.raises(AssertionError, match="params_m says 1.0M"):
        mt.check_variant_builds(entry.method, wrong)


def test_checks_catch_missing_provenance():
    from dataclasses import replace

    entry = get_registry().model("mae-vit-b")
    src = replace(entry.variant.weights[0], url=None)
    with pytest.raises(AssertionError, match="official URL"):
        mt.check_variant_metadata(entry.method, replace(entry.variant, weights=(src,)))
