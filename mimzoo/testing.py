"""Checks for method plugins: the same ones mimzoo runs on its own plugins.

A plugin author parametrizes a test over their variants and calls :func:`check_variant`:

>>> import pytest, mimzoo.testing as mt  # doctest: +SKIP
>>> @pytest.mark.parametrize("variant", METHOD.variants, ids=lambda v: v.name)  # doctest: +SKIP
... def test_variant(variant):
...     mt.check_variant(METHOD, variant)

Each check raises AssertionError with a message naming the plugin, variant and what is wrong.
Shape checks for large variants run on torch's meta device: no memory, no compute.
"""

from __future__ import annotations

import re
from typing import Any

from .registry.contract import Method, Variant

_ARXIV = re.compile(r"^\d{4}\.\d{4,5}$")
# variants at most this big (millions of parameters) also run a real forward pass
REAL_FORWARD_MAX_PARAMS_M = 30.0


def _fail(owner: str, msg: str) -> None:
    raise AssertionError(f"{owner}: {msg}")


def check_method(method: Method) -> None:
    """Metadata complete: paper, license, taxonomy, at least one public variant."""
    owner = f"method '{method.name}'"
    if not _ARXIV.match(method.paper.arxiv):
        _fail(owner, f"paper.arxiv '{method.paper.arxiv}' is not an arXiv id like 2111.06377")
    if not 2010 <= method.paper.year <= 2100:
        _fail(owner, f"paper.year {method.paper.year} is implausible")
    if not method.title or not method.paper.title or not method.paper.authors:
        _fail(owner, "title, paper.title and paper.authors must be set")
    if not method.license:
        _fail(owner, "license of the weights must be set (e.g. 'cc-by-nc-4.0', 'apache-2.0')")
    if not method.taxonomy.survey_nodes and not method.taxonomy.details:
        _fail(owner, "taxonomy needs survey_nodes or details")
    if not any(not v.test_only for v in method.variants):
        _fail(owner, "declares no public (non test-only) variants")
    method.taxonomy.validate(owner)


def check_variant_metadata(method: Method, variant: Variant) -> None:
    """A public variant has a description, reference numbers and weight sources with provenance."""
    owner = f"{method.name}/{variant.name}"
    variant.validate(method.name)
    if not variant.description:
        _fail(owner, "description must be set")
    if variant.params_m <= 0:
        _fail(owner, "params_m must be positive")
    if variant.test_only:
        return
    trained_here = any(w.bundled for w in variant.weights)  # the project's own models: no paper numbers
    ref = variant.reference
    # epochs may stay None where the paper trains by iterations and names no epoch count (DINOv2)
    figures = ref is not None and any(
        x is not None for x in (ref.epochs, ref.finetune_top1, ref.linear_top1, ref.knn_top1))
    if not trained_here and not figures:
        _fail(owner, "reference numbers (top-1, epochs) from the paper must be set")
    if not trained_here and not variant.reference.source:
        _fail(owner, "reference.source must say where the numbers come from")
    if not variant.weights:
        _fail(owner, "public variants need at least one weight source")
    for w in variant.weights:
        _check_weight_source(owner, w)
    if not variant.layouts:
        _fail(owner, "declares no checkpoint layouts")


def _check_weight_source(owner: str, w: Any) -> None:
    """A public source names where its file is: a Hub file (with the official URL), a URL, or a bundled file."""
    if not (w.repo_id or w.url or w.bundled):
        _fail(owner, f"weight source '{w.name}' needs a repo_id, a url or a bundled file")
    if w.repo_id is not None and ("/" not in w.repo_id or not w.filename):
        _fail(owner, f"weight source '{w.name}' needs repo_id 'org/name' and a filename")
    if w.url is not None and not w.url.startswith(("http://", "https://")):
        _fail(owner, f"weight source '{w.name}' has url '{w.url}'; use the official http(s) URL")
    if not w.url and not w.bundled:
        _fail(owner, f"weight source '{w.name}' needs the official URL as provenance")


def check_variant_builds(method: Method, variant: Variant, *, batch: int = 2) -> Any:
    """The encoder builds; forward shapes, num_features and parameter count match the metadata."""
    import torch

    from .encoders.build import build_variant

    owner = f"{method.name}/{variant.name}"
    real = variant.params_m <= REAL_FORWARD_MAX_PARAMS_M
    device = torch.device("cpu") if real else torch.device("meta")
    with device:
        encoder = build_variant(method, variant).eval()
        pp = variant.preprocess
        c, h, w = pp.input_size
        x = torch.randn(batch, c, pp.num_frames, h, w) if pp.is_video else torch.randn(batch, c, h, w)  # clips: 5-D
        with torch.no_grad():
            pooled = encoder(x)
            tokens = encoder.forward_features(x)
    d = encoder.num_features
    if tuple(pooled.shape) != (batch, d):
        _fail(owner, f"encoder(x) has shape {tuple(pooled.shape)}, expected {(batch, d)}")
    t = getattr(encoder, "token_dim", d)  # "token-avg" pools [CLS] + mean patch: d = 2 x the token width
    if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[-1] != t:
        _fail(owner, f"forward_features(x) has shape {tuple(tokens.shape)}, expected [N, L, {t}]")
    expected = _video_tokens(encoder.model, pp) if pp.is_video else None
    if expected is not None and tokens.shape[1] != expected:
        _fail(owner, f"forward_features(x) has {tokens.shape[1]} tokens, expected T/t * H/p * W/p = {expected}")
    params = sum(p.numel() for p in encoder.parameters()) / 1e6
    if abs(params - variant.params_m) > max(0.01 * params, 0.001):
        _fail(owner, f"params_m says {variant.params_m}M but the encoder has {params:.3f}M")
    if real and not torch.isfinite(pooled).all():
        _fail(owner, "encoder(x) is not finite at random init")
    return encoder


def _video_tokens(model: Any, pp: Any) -> int | None:
    """``T/t * H/p * W/p`` for a video encoder with a tube embedding, None when it has none."""
    emb = getattr(model, "patch_embed", None)
    t, p = getattr(emb, "tubelet_size", None), getattr(emb, "patch_size", None)
    if not (isinstance(t, int) and isinstance(p, int)):
        return None
    return pp.num_frames // t * (pp.input_size[1] // p) * (pp.input_size[2] // p)


def check_state_dict_roundtrip(method: Method, variant: Variant) -> None:
    """The encoder's own state dict is recognised by one of the variant's layouts and loads back."""
    import torch

    from .encoders.build import build_variant
    from .weights.convert import convert_and_load

    owner = f"{method.name}/{variant.name}"
    if variant.params_m > REAL_FORWARD_MAX_PARAMS_M:
        return
    torch.manual_seed(0)
    src = build_variant(method, variant)
    dst = build_variant(method, variant)
    report = convert_and_load(dst.model, dict(src.model.state_dict()), variant.layouts, source="own", owner=owner)
    for k, v in src.model.state_dict().items():
        if not torch.equal(v, dst.model.state_dict()[k]):
            _fail(owner, f"tensor {k} changed in a round trip through the '{report.layout}' layout")


def check_variant(method: Method, variant: Variant) -> None:
    """Every check for one variant."""
    check_method(method)
    check_variant_metadata(method, variant)
    check_variant_builds(method, variant)
    check_state_dict_roundtrip(method, variant)
