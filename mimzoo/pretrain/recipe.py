"""The pretraining recipe contract: a MIM method as data.

A recipe picks one choice on each of the survey's axes (masking, target, objective,
encoder/decoder) plus the optimiser defaults the paper used. New combinations are configuration:
``with_overrides(recipe, {"target.kind": "hog"})`` or ``mimzoo pretrain mae --set target.kind=hog``.

Everything here is plain data (frozen dataclasses of str/int/float/tuples) so plugins can import
it without torch, and ``dataclasses.asdict(recipe)`` is the JSON that goes into config.json and
model cards. Recipes are found through the registry (``Method.recipe``); see :func:`find_recipe`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from ..errors import MimzooError

MASKINGS = ("random-patch", "random-block", "blockwise", "multi-block", "tube")
# online-tokenizer: an EMA teacher + projection head whose centred, sharpened softmax is the target (iBOT)
TARGET_KINDS = ("pixels", "normalized-pixels", "hog", "ema-features", "teacher-features", "discrete-tokens",
                "online-tokenizer")
LOSS_KINDS = ("mse", "l1", "smooth-l1", "negative-cosine", "cross-entropy", "self-distillation")
# what the encoder sees and what predicts the target:
#   mae: visible tokens only + transformer decoder;   mask-token: mask tokens + a light (linear) head;
#   predictor: visible context + narrow transformer predictor (I-JEPA);   fcmae: dense masked ConvNeXt + conv decoder
#   videomae: visible tubes of a video ViT + VideoMAE's decoder (needs tube masking and a video encoder)
#   projection-head: mask tokens + DINO/iBOT MLP head to K prototypes, student of an EMA teacher (see `distill`)
DECODER_KINDS = ("mae", "mask-token", "predictor", "fcmae", "videomae", "projection-head")
FEATURE_NORMS = ("none", "layer", "instance")


class RecipeError(MimzooError):
    """A pretraining recipe or an override of it is invalid."""


@dataclass(frozen=True)
class Masking:
    """Which positions of the patch grid are hidden from the encoder."""

    kind: str = "random-patch"  # one of MASKINGS
    ratio: float = 0.75  # share of the grid masked (random-patch, random-block, blockwise)
    mask_patch_size: int | None = None  # random-block: side of one mask unit in pixels (SimMIM, FCMAE: 32)
    min_block: int = 16  # blockwise: smallest block, in patches (BEiT: 16)
    max_block: int | None = None  # blockwise: largest block in patches; None = no limit but the ratio
    aspect: tuple[float, float] = (0.3, 1 / 0.3)  # blockwise: block aspect-ratio range
    num_targets: int = 4  # multi-block: target blocks predicted from one context
    target_scale: tuple[float, float] = (0.15, 0.2)  # multi-block: area of each target block (share of grid)
    target_aspect: tuple[float, float] = (0.75, 1.5)  # multi-block: aspect ratio of target blocks
    context_scale: tuple[float, float] = (0.85, 1.0)  # multi-block: context block area, before targets are cut out
    min_keep: int = 4  # multi-block: fewest context patches a sample may keep
    ratio_var: float = 0.0  # blockwise: each image draws its ratio uniformly in ratio +- ratio_var (iBOT: 0.2)
    unmasked_share: float = 0.0  # blockwise: share of images left unmasked (iBOT: 0.5 of the views)


@dataclass(frozen=True)
class Target:
    """What the model predicts at masked positions."""

    kind: str = "normalized-pixels"  # one of TARGET_KINDS
    teacher: str | None = None  # teacher-features: a mimzoo.load name/folder; discrete-tokens: a registered tokenizer name
    layers: int = 1  # ema/teacher features: average of the last `layers` block outputs (data2vec: 6)
    layer_norm: str = "none"  # ema features: norm of each averaged block output, one of FEATURE_NORMS
    final_norm: bool = False  # LayerNorm (no affine) of the final target features (data2vec, I-JEPA)
    ema: tuple[float, float] = (0.999, 0.9999)  # ema-features: teacher momentum, linear from first to last step
    hog_bins: int = 9  # hog: orientation bins (MaskFeat: 9)
    hog_cell: int = 8  # hog: cell side in pixels (MaskFeat: 8)


@dataclass(frozen=True)
class Loss:
    """How predictions are compared with targets; averaged over the masked positions."""

    kind: str = "mse"  # one of LOSS_KINDS
    beta: float = 1.0  # smooth-l1: transition point (data2vec: 2)


@dataclass(frozen=True)
class Decoder:
    """The part trained with the encoder and thrown away after pretraining."""

    kind: str = "mae"  # one of DECODER_KINDS
    dim: int = 512  # mae / predictor / fcmae: decoder width
    depth: int = 8  # mae / predictor / fcmae: transformer (or ConvNeXt) blocks
    heads: int = 16  # mae / predictor: attention heads
    mlp_ratio: float = 4.0  # mae / predictor: MLP width / dim
    sincos_pos: bool = True  # mae: fixed 2-D sin-cos position embeddings in encoder and decoder (as MAE does)


@dataclass(frozen=True)
class Optim:
    """AdamW with linear warmup then cosine decay, per step."""

    blr: float = 1.5e-4  # base learning rate for a global batch of 256: lr = blr * batch / 256
    weight_decay: float = 0.05  # AdamW decoupled decay (not applied to biases, norms, tokens, position embeddings)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    warmup_epochs: float = 40.0  # linear warmup length
    min_lr: float = 0.0  # floor of the cosine decay
    batch_size: int = 4096  # global batch of the paper (all processes, all accumulation steps)
    epochs: int = 800  # paper's pretraining epochs (the CLI's --epochs overrides)
    clip_grad: float | None = None  # clip the gradient norm to this value; None = no clipping


@dataclass(frozen=True)
class Augment:
    """Training augmentation of the images."""

    crop_scale: tuple[float, float] = (0.2, 1.0)  # random-resized-crop area range
    hflip: bool = True  # random horizontal flip (off for data where it changes meaning, e.g. digits)
    global_crops: int = 1  # views per image at the input size (iBOT/DINO: 2); 1 = one image, as MAE
    local_crops: int = 0  # extra small views per image (multi-crop; iBOT ViT-S: 10), seen by the student only
    local_crop_scale: tuple[float, float] = (0.05, 0.4)  # random-resized-crop area range of the local views
    local_size: int | None = None  # local view side in pixels; None = 96/224 of the input, in whole patches


@dataclass(frozen=True)
class Distill:
    """Self-distillation (``decoder.kind=projection-head``, iBOT): head, temperatures, centring, loss weights."""

    out_dim: int = 8192  # K prototypes of the projection head, one head shared by [CLS] and patch tokens
    hidden_dim: int = 2048  # width of the head's MLP
    bottleneck_dim: int = 256  # width before the L2-normalised, weight-normalised prototype layer
    head_layers: int = 3  # linear layers of the MLP (GELU between)
    norm_last_layer: bool = False  # keep the prototypes' norms fixed at 1 (iBOT: False for ViT-S, True for ViT-B)
    student_temp: float = 0.1  # student softmax temperature
    teacher_temp: tuple[float, float] = (0.04, 0.07)  # teacher [CLS] temperature: linear warmup from first to last
    patch_temp: tuple[float, float] = (0.04, 0.07)  # teacher patch temperature, same warmup
    temp_warmup_epochs: float = 30.0  # epochs of the teacher temperature warmup (per epoch, as iBOT)
    center_momentum: float = 0.9  # EMA momentum of the [CLS] and patch centres
    cls_weight: float = 1.0  # weight of the cross-view [CLS] loss (iBOT's lambda1)
    patch_weight: float = 1.0  # weight of the masked-patch loss (iBOT's lambda2)
    freeze_last_layer_epochs: float = 1.0  # the prototype layer gets no update during these first epochs


@dataclass(frozen=True)
class Recipe:
    """A pretraining method as data."""

    method: str  # method name, as registered ("mae")
    masking: Masking = Masking()  # masking strategy
    target: Target = Target()  # target features
    loss: Loss = Loss()  # objective
    decoder: Decoder = Decoder()  # encoder input + decoder / head / predictor
    optim: Optim = Optim()  # optimiser and schedule defaults of the paper
    augment: Augment = Augment()  # training augmentation
    distill: Distill = Distill()  # self-distillation settings (projection-head recipes: iBOT)
    arch: str = ""  # default zoo variant (or timm architecture) to pretrain
    export_encoder: str = "student"  # the encoder saved as the model: "student", or "teacher" (EMA encoder, I-JEPA)
    notes: str = ""  # one line: where the defaults come from
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form settings a custom component reads

    def validate(self) -> Recipe:
        """Check the controlled vocabularies; returns self so calls chain."""
        _one_of(self.masking.kind, MASKINGS, "masking.kind")
        _one_of(self.target.kind, TARGET_KINDS, "target.kind")
        _one_of(self.loss.kind, LOSS_KINDS, "loss.kind")
        _one_of(self.decoder.kind, DECODER_KINDS, "decoder.kind")
        _one_of(self.target.layer_norm, FEATURE_NORMS, "target.layer_norm")
        _one_of(self.export_encoder, ("student", "teacher"), "export_encoder")
        if self.export_encoder == "teacher" and self.target.kind not in ("ema-features", "online-tokenizer"):
            raise RecipeError("export_encoder=teacher needs an ema-features target (the teacher is the EMA encoder)")
        if not 0.0 <= self.masking.ratio < 1.0:
            raise RecipeError(f"masking.ratio {self.masking.ratio} must lie in [0, 1)")
        if self.target.kind in ("teacher-features", "discrete-tokens") and not self.target.teacher:
            what = "a model name or folder" if self.target.kind == "teacher-features" else "a registered tokenizer name"
            raise RecipeError(f"target.kind={self.target.kind} needs target.teacher: "
                              f"pass --set target.teacher=<{what}>")
        if (self.loss.kind == "cross-entropy") != (self.target.kind == "discrete-tokens"):
            raise RecipeError("cross-entropy goes with discrete-tokens targets only; "
                              "set loss.kind and target.kind together")
        if (self.decoder.kind == "videomae") != (self.masking.kind == "tube"):
            raise RecipeError("decoder.kind=videomae and masking.kind=tube go together (video clips); set both")
        self._check_distillation()
        if self.decoder.kind == "predictor" and self.masking.kind != "multi-block":
            raise RecipeError("decoder.kind=predictor needs masking.kind=multi-block (context and target blocks)")
        self._check_ranges()
        return self

    def _check_distillation(self) -> None:
        """Self-distillation's three parts go together, and only it takes several views per image."""
        parts = (self.decoder.kind == "projection-head", self.target.kind == "online-tokenizer",
                 self.loss.kind == "self-distillation")
        if any(parts) and not all(parts):
            raise RecipeError("decoder.kind=projection-head, target.kind=online-tokenizer and loss.kind=self-distillation "
                              "go together (iBOT); set all three")
        a, m, d = self.augment, self.masking, self.distill
        if all(parts) and a.global_crops < 2:
            raise RecipeError("self-distillation compares [CLS] tokens across views: set augment.global_crops=2 or more")
        if not all(parts) and (a.global_crops != 1 or a.local_crops):
            raise RecipeError(f"{self.decoder.kind} models take one view per image: set augment.global_crops=1 and "
                              "augment.local_crops=0")
        if not (0.0 <= m.ratio - m.ratio_var and m.ratio + m.ratio_var < 1.0 and 0.0 <= m.unmasked_share <= 1.0):
            raise RecipeError("masking.ratio +- masking.ratio_var must lie in [0, 1) and masking.unmasked_share in [0, 1]")
        temps = (d.student_temp, *d.teacher_temp, *d.patch_temp)
        if not all(_finite(t) and t > 0 for t in temps) or not 0.0 <= d.center_momentum < 1.0:
            raise RecipeError("distill temperatures must be positive and distill.center_momentum in [0, 1)")

    def _check_ranges(self) -> None:
        """Sizes, counts and rates that cannot work (a negative depth, a zero width, a NaN rate)."""
        at_least = {
            1: {"decoder.dim": self.decoder.dim, "decoder.depth": self.decoder.depth, "decoder.heads": self.decoder.heads,
                "target.layers": self.target.layers, "target.hog_bins": self.target.hog_bins,
                "target.hog_cell": self.target.hog_cell, "masking.min_block": self.masking.min_block,
                "masking.num_targets": self.masking.num_targets, "masking.mask_patch_size": self.masking.mask_patch_size,
                "masking.max_block": self.masking.max_block, "optim.batch_size": self.optim.batch_size,
                "optim.epochs": self.optim.epochs, "augment.global_crops": self.augment.global_crops,
                "distill.out_dim": self.distill.out_dim, "distill.hidden_dim": self.distill.hidden_dim,
                "distill.bottleneck_dim": self.distill.bottleneck_dim, "distill.head_layers": self.distill.head_layers,
                "augment.local_size": self.augment.local_size},
            0: {"masking.min_keep": self.masking.min_keep, "optim.weight_decay": self.optim.weight_decay,
                "optim.warmup_epochs": self.optim.warmup_epochs, "optim.min_lr": self.optim.min_lr,
                "optim.clip_grad": self.optim.clip_grad, "augment.local_crops": self.augment.local_crops,
                "masking.ratio_var": self.masking.ratio_var, "distill.temp_warmup_epochs": self.distill.temp_warmup_epochs,
                "distill.freeze_last_layer_epochs": self.distill.freeze_last_layer_epochs},
        }
        for low, values in at_least.items():
            for key, value in values.items():
                if value is not None and not (_finite(value) and value >= low):
                    raise RecipeError(f"{key} must be at least {low}, got {value!r}; set it with --set {key}=N")
        for key, value in {"decoder.mlp_ratio": self.decoder.mlp_ratio, "optim.blr": self.optim.blr,
                           "loss.beta": self.loss.beta}.items():
            if not (_finite(value) and value > 0):
                raise RecipeError(f"{key} must be a positive number, got {value!r}; set it with --set {key}=X")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise RecipeError(f"{what} '{value}' is not one of {', '.join(allowed)}; use one of them")


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Inverse of :meth:`Recipe.to_dict` (unknown keys are an error naming them)."""
    return _build(Recipe, data, "recipe").validate()


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RecipeError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for name, value in data.items():
        default = known[name].default
        if is_dataclass(default) and isinstance(value, Mapping):
            value = _build(type(default), value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def with_overrides(recipe: Recipe, overrides: Mapping[str, Any] | None) -> Recipe:
    """A copy of `recipe` with dotted fields replaced, e.g. ``{"masking.ratio": 0.6, "loss.kind": "l1"}``.

    String values are parsed as JSON when they look like it (``"0.6"`` -> 0.6, ``"[0.1, 0.2]"`` -> tuple),
    so CLI ``--set key=value`` pairs can be passed straight through.

    >>> with_overrides(Recipe("mae"), {"masking.ratio": "0.6"}).masking.ratio
    0.6
    """
    for key, raw in (overrides or {}).items():
        recipe = _set(recipe, key.split("."), _parse(raw), key)
    return recipe.validate()


def _set(obj: Any, path: list[str], value: Any, key: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    if path[0] not in known:
        raise RecipeError(f"unknown recipe field '{key}'; fields here: {', '.join(sorted(known))}")
    if len(path) == 1:
        return replace(obj, **{path[0]: _typed(value, str(known[path[0]].type), getattr(obj, path[0]), key)})
    child = getattr(obj, path[0])
    if not is_dataclass(child):
        raise RecipeError(f"'{key}': {path[0]} has no sub-fields")
    return replace(obj, **{path[0]: _set(child, path[1:], value, key)})


def _typed(value: Any, kind: str, default: Any, key: str) -> Any:
    """`value` checked against the field's declared type (``int``, ``float | None``, ``tuple[float, float]``,
    ``str``, ``bool``): an override of the wrong type is refused here, before anything is built."""
    if value is None and "None" in kind:
        return None
    base = kind.split("|")[0].strip()
    if isinstance(value, list):
        value = tuple(value)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": _finite(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }.get(base)
    if base.startswith("tuple"):
        ok = isinstance(value, tuple) and all(_finite(v) for v in value) and (
            not isinstance(default, tuple) or len(value) == len(default))
    if ok is None:  # a free-form field (extra): any JSON value
        return value
    if not ok:
        example = json.dumps(list(default) if isinstance(default, tuple) else default)
        shown = json.dumps(list(value)) if isinstance(value, tuple) else value
        what = "a finite number" if base == "float" else "a whole number" if base == "int" else (
            f"a list of {len(default)} finite numbers" if base.startswith("tuple") and isinstance(default, tuple)
            else f"a {base}")
        raise RecipeError(f"--set {key}={shown}: {key} takes {what}; e.g. --set {key}={example}")
    return float(value) if base == "float" else value


def _parse(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw in ("none", "None", "null"):
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def find_recipe(method: str) -> Recipe:
    """The recipe of a method: the registry's ``Method.recipe``, else the plugin's ``recipe`` module.

    Lookup order: (1) ``get_registry().method(name).recipe``; (2) ``mimzoo_<name>.recipe:RECIPE`` for
    first-party plugins whose Method does not carry its recipe yet. Every recipe belongs to a
    registered method plugin; there are no built-in recipes.

    >>> find_recipe("mae").masking.ratio
    0.75
    """
    from ..errors import UnknownMethodError
    from ..registry import get_registry

    registry = get_registry()
    try:
        recipe = registry.method(method).recipe
        registered = True
    except UnknownMethodError:
        recipe, registered = None, False
    if recipe is None and registered:  # only registered names ever choose a module to import
        recipe = _plugin_module_recipe(method)
    if recipe is None:
        known = sorted(m.name for m in registry.methods() if _has_recipe(m))
        from ..errors import closest_name

        close = closest_name(method, known)
        hint = f"did you mean '{close}'? " if close else ""
        raise RecipeError(f"method '{method}' has no pretraining recipe; {hint}methods with one: {', '.join(known)}")
    if not isinstance(recipe, Recipe):
        raise RecipeError(f"method '{method}' declares a recipe of type {type(recipe).__name__}, "
                          "not mimzoo.pretrain.Recipe")
    return recipe.validate()


def _plugin_module_recipe(method: str) -> Recipe | None:
    try:
        module = importlib.import_module(f"mimzoo_{method}.recipe")
    except ImportError:
        return None
    return getattr(module, "RECIPE", None)


def _has_recipe(m: Any) -> bool:
    return m.recipe is not None or _plugin_module_recipe(m.name) is not None
