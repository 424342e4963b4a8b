"""TrainConfig through the Python API refuses counts the CLI refuses: 0 must never mean "the default"."""

from __future__ import annotations

import pytest

from mimzoo.errors import MimzooError
from mimzoo.pretrain.trainer import TrainConfig


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("batch_size", -4), ("epochs", 0), ("accum_steps", 0),
                                          ("max_steps", 0), ("workers", -1), ("batch_size", 2.5), ("epochs", True)])
def test_bad_counts_are_refused(field, value, tmp_path):
    with pytest.raises(MimzooError, match=rf"TrainConfig {field}={value!r} must be a whole number >= \d; pass {field}="):
        TrainConfig(method="mae", output=str(tmp_path / "run"), **{field: value})
    assert not (tmp_path / "run").exists()


def test_defaults_and_zero_where_zero_means_something_pass(tmp_path):
    cfg = TrainConfig(method="mae", output=str(tmp_path / "run"), save_every=0, workers=0, batch_size=None)
    assert cfg.batch_size is None and cfg.save_every == 0
    assert TrainConfig(method="mae", output=str(tmp_path / "run"), batch_size=16).batch_size == 16
