"""Encoders with masks, decoders, heads and predictors; :func:`build_objective` composes them."""

from __future__ import annotations

from typing import Any

from ..recipe import Recipe


def build_objective(recipe: Recipe, encoder: Any, *, trained: bool | None = None) -> Any:
    """The pretraining model a recipe describes, around a mimzoo encoder.

    Args:
        recipe: the method's :class:`~mimzoo.pretrain.recipe.Recipe`.
        encoder: a :class:`~mimzoo.encoders.encoder.Encoder` (e.g. ``mimzoo.load(name, pretrained=False)``);
            its timm model becomes ``objective.encoder`` and is trained in place.
        trained: the encoder holds trained weights (pictures, continued training): keep its position
            embeddings instead of resetting them to fixed sin-cos ones. None (default): decide from the
            encoder's provenance: weights were loaded into it (``encoder.info.weights`` reports tensors).

    Returns:
        An :class:`~mimzoo.pretrain.models.objectives.Objective`; ``objective(images, masks)`` is the loss,
        ``objective.masking(n, generator)`` draws masks.

    >>> obj = build_objective(find_recipe("mae"), mimzoo.load("mae-vit-test", pretrained=False))  # doctest: +SKIP
    """
    from ..masking import make_mask_generator
    from ..targets import build_target
    from . import objectives as O
    from .fcmae import FCMAEDecoder, total_stride
    from .mae import MAEDecoder
    from .predictor import Predictor
    from .vit import num_prefix_tokens, patch_grid, patch_size, use_sincos_pos

    recipe = recipe.validate()
    if recipe.decoder.kind == "videomae":  # video clips: tube masking, tube targets (models/videomae.py)
        from .videomae import build_videomae

        return build_videomae(recipe, encoder)
    if recipe.decoder.kind == "projection-head":  # iBOT: EMA teacher + projection head, several views (models/ibot.py)
        from .ibot import build_ibot

        return build_ibot(recipe, encoder)
    model, pp, dec = encoder.model, encoder.preprocess, recipe.decoder
    if pp.is_video:
        from ..recipe import RecipeError

        raise RecipeError(f"{encoder.name} is a video encoder; the {recipe.method} recipe trains on images: "
                          "pretrain it with the videomae recipe")
    if trained is None:
        trained = holds_loaded_weights(encoder)
    if dec.kind == "fcmae":
        patch = total_stride(model)
        grid = (pp.input_size[1] // patch, pp.input_size[2] // patch)
    else:
        grid, patch = patch_grid(model), patch_size(model)
    if dec.kind == "mae" and dec.sincos_pos and not trained:
        use_sincos_pos(model)  # before an EMA teacher copies the encoder
    target = build_target(recipe.target, encoder=model, preprocess=pp, patch=patch, grid=grid)
    masking = make_mask_generator(recipe.masking, grid, patch)
    common = (model, target, recipe.loss, grid, patch, masking)
    dim = int(model.num_features)
    if dec.kind == "mae":
        decoder = MAEDecoder(dim, grid, num_prefix_tokens(model), target.dim, dim=dec.dim, depth=dec.depth,
                             heads=dec.heads, mlp_ratio=dec.mlp_ratio)
        return O.MaskedAutoencoder(*common, decoder)
    if dec.kind == "mask-token":
        return O.MaskTokenModel(*common)
    if dec.kind == "predictor":
        predictor = Predictor(dim, grid, dim=dec.dim, depth=dec.depth, heads=dec.heads, mlp_ratio=dec.mlp_ratio)
        return O.JointEmbeddingPredictive(*common, predictor)
    return O.FCMAE(*common, FCMAEDecoder(dim, target.dim, dim=dec.dim, depth=dec.depth))


def holds_loaded_weights(encoder: Any) -> bool:
    """Whether weights were loaded into ``encoder`` (its provenance reports tensors), i.e. not a fresh init."""
    report = getattr(getattr(encoder, "info", None), "weights", None)
    return bool(report is not None and getattr(report, "tensors", 0))
