"""`mimzoo info` documents how Hiera's pooled embedding differs from official hiera.py."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli


@pytest.mark.parametrize("name", ["mae-hiera-b", "mae-hiera-t"])
def test_info_states_the_hiera_pooling_convention(name):
    r = run_cli("info", name)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "encoder_norm as head.norm" in text and "timm's convention" in text
    assert "official hiera.py leaves that norm at its init" in text
    data = json.loads(run_cli("info", name, "--json").stdout)
    official = next(lay for lay in data["layouts"] if lay["name"] == "official")
    assert "encoder_norm becomes head.norm" in official["description"]
    assert "forward_features tokens are the same" in official["description"]
