"""The plugin's own tests: mimzoo's shared plugin checks, plus what is specific to this plugin.

Run them against the installed plugin: ``pip install -e .[test] && pytest``.
"""

from __future__ import annotations

import pytest
import torch

import mimzoo
import mimzoo.testing as mt
from mimzoo.registry import get_registry
from mimzoo_plugin_example import METHOD, TEST_VARIANT
from mimzoo_plugin_example.layouts import HEAD_NORM


@pytest.mark.parametrize("variant", METHOD.variants, ids=lambda v: v.name)
def test_variant_passes_mimzoo_checks(variant):
    """Metadata, build, output shapes, parameter count, state-dict round trip: what mimzoo checks itself."""
    mt.check_variant(METHOD, variant)


def test_registered_through_the_entry_point():
    entry = get_registry().model("example-hog-vit-b")
    assert entry.method is METHOD
    assert entry.distribution == "mimzoo-plugin-example"
    assert get_registry().method("example-hog") is METHOD


def official_state_dict(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`encoder`'s weights under PySlowFast MaskMViT names (final norm in the head, HOG head, mask token)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in encoder.state_dict().items():
        out[(HEAD_NORM + k[len("norm."):]) if k.startswith("norm.") else k] = v.clone()
    dim = encoder.num_features
    out["mask_token"] = torch.zeros(1, 1, dim)
    out["pred_head.projections.0.weight"] = torch.randn(9 * 3, dim)  # 9 bins x 3 channels, one 8x8 cell
    out["pred_head.projections.0.bias"] = torch.zeros(9 * 3)
    out["hogs.0.weight_x"] = torch.randn(3, 1, 3, 3)
    out["hogs.0.weight_y"] = torch.randn(3, 1, 3, 3)
    return out


def test_official_layout_gives_identical_outputs(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = mimzoo.load(TEST_VARIANT.name, pretrained=False)
    path = tmp_path / "maskfeat_official.safetensors"
    save_file(official_state_dict(source.model), str(path))

    loaded = mimzoo.load(TEST_VARIANT.name, weights=str(path))
    assert loaded.info.weights.layout == "official"
    x = torch.randn(2, *TEST_VARIANT.preprocess.input_size)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert torch.equal(loaded.forward_features(x), source.forward_features(x))


def test_pooling_is_the_mean_of_normalised_patch_tokens():
    encoder = mimzoo.load(TEST_VARIANT.name, pretrained=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = encoder.forward_features(x)  # [N, 1 + L, D], after the final norm
        assert torch.allclose(encoder(x), tokens[:, 1:].mean(1), atol=1e-6)


def test_recipe_is_found_and_valid():
    from mimzoo.pretrain.recipe import find_recipe

    recipe = find_recipe("example-hog")
    assert recipe is METHOD.recipe
    assert (recipe.masking.kind, recipe.target.kind, recipe.loss.kind) == ("blockwise", "hog", "mse")
