"""The plugin contract: what a MIM method plugin declares.

A plugin exposes one :class:`Method` through the ``mimzoo.methods`` entry-point group. Everything
here is plain data (frozen dataclasses) plus a few callables for checkpoint conversion; nothing
imports torch, so listing the zoo stays fast.

The taxonomy fields follow "Masked Image Modeling: A Survey" (Hondru et al., arXiv 2408.06687):
a method is reconstruction- or contrastive-based and is characterised by its masking strategy,
target features, objective, architecture and downstream use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..errors import PluginError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Family = Literal["reconstruction", "contrastive", "hybrid"]
FAMILIES: tuple[str, ...] = ("reconstruction", "contrastive", "hybrid")

# Controlled vocabularies of the survey's axes. `mimzoo list --taxonomy` groups by them, so a
# value outside these lists would silently form its own group; the contract refuses it instead.
MASKING = (
    "random-patch",  # i.i.d. patches (MAE)
    "random-block",  # i.i.d. mask units larger than a patch (SimMIM, FCMAE, Hiera)
    "blockwise",  # BEiT-style rectangles grown until a ratio is met
    "multi-block",  # context and target blocks (I-JEPA)
    "tube",  # the same spatial mask on every frame (VideoMAE)
    "guided",  # chosen by a teacher's attention or saliency (MILAN, AttMask)
    "mixing",  # tokens replaced by another image's (MixMIM)
    "none",
)
TARGETS = (
    "pixels",
    "normalized-pixels",  # per-patch mean/var normalised pixels (MAE norm_pix_loss)
    "hog",
    "discrete-tokens",  # ids from a tokenizer (dVAE, VQ-KD)
    "teacher-features",  # a frozen teacher (CLIP for EVA, MILAN)
    "ema-features",  # a momentum copy of the encoder (data2vec, I-JEPA, iBOT)
    # a momentum teacher's softmax over learned prototypes, a tokenizer trained jointly (iBOT, DINOv2)
    "online-tokenizer",
    "multiple",
)
OBJECTIVES = (
    "mse",
    "l1",
    "smooth-l1",
    "cross-entropy",
    "negative-cosine",
    "infonce",
    "self-distillation",  # student matches a momentum teacher's centred, sharpened softmax (DINO, iBOT)
    "multiple",
)
ENCODER_INPUTS = ("visible", "masked")  # visible tokens only, or the full sequence with mask tokens
SURVEY_NODES = ("masking", "target", "objective", "architecture", "downstream", "theory")
# "token-avg": the class token concatenated with the mean of the patch tokens (register tokens
# excluded), 2 x embed_dim features: the linear probe of DINOv2 and iBOT; mimzoo's Encoder pools it
POOLINGS = ("token", "avg", "map", "max", "avgmax", "token-avg")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def _check(value: str, allowed: tuple[str, ...], what: str, owner: str) -> None:
    if value not in allowed:
        raise PluginError(f"{owner}: {what} '{value}' is not one of {', '.join(allowed)}; use one of them")


@dataclass(frozen=True)
class Paper:
    """Where a method was published."""

    title: str  # full paper title
    arxiv: str  # arXiv id, e.g. "2111.06377"
    year: int  # year of first publication
    authors: str  # short author list, e.g. "He, Chen, Xie, Li, Dollár, Girshick"
    code: str | None = None  # official code repository URL
    bibtex: str | None = None  # citation block for model cards

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"


@dataclass(frozen=True)
class Taxonomy:
    """A method's place on the survey's axes."""

    masking: str  # one of MASKING
    target: str  # one of TARGETS
    objective: str  # one of OBJECTIVES
    architecture: str  # encoder family, e.g. "ViT", "Swin", "ConvNeXt", "Hiera"
    encoder_input: str  # one of ENCODER_INPUTS
    mask_ratio: float | None = None  # default masking ratio of the recipe
    downstream: tuple[str, ...] = ("classification",)  # tasks the method is evaluated on
    survey_nodes: tuple[str, ...] = ()  # contribution labels the survey gives it (SURVEY_NODES)
    details: str = ""  # one line of specifics, e.g. "per-patch normalised pixels, loss on masked"

    def validate(self, owner: str) -> None:
        _check(self.masking, MASKING, "masking", owner)
        _check(self.target, TARGETS, "target", owner)
        _check(self.objective, OBJECTIVES, "objective", owner)
        _check(self.encoder_input, ENCODER_INPUTS, "encoder_input", owner)
        for node in self.survey_nodes:
            _check(node, SURVEY_NODES, "survey node", owner)
        if self.mask_ratio is not None and not 0.0 <= self.mask_ratio < 1.0:
            raise PluginError(f"{owner}: mask_ratio {self.mask_ratio} must lie in [0, 1)")


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared for an encoder (what timm calls the data config)."""

    input_size: tuple[int, int, int] = (3, 224, 224)  # C, H, W the encoder was trained at
    mean: tuple[float, ...] = IMAGENET_MEAN  # per-channel mean, after scaling to [0, 1]
    std: tuple[float, ...] = IMAGENET_STD  # per-channel std, after scaling to [0, 1]
    interpolation: str = "bicubic"  # resize filter, one of INTERPOLATIONS
    crop_pct: float = 0.875  # center crop = input size / crop_pct resize (224 / 256)
    crop_mode: str = "center"  # "center" crop after resizing the shorter side, or "squash"
    # video encoders: frames per clip, the T of their [N, C, T, H, W] input; None for image encoders
    num_frames: int | None = None
    # video encoders: a clip takes every `frame_stride`-th frame of the source (VideoMAE: 4 on Kinetics)
    frame_stride: int = 1

    @property
    def is_video(self) -> bool:
        """True for a video encoder's preprocessing (clips ``[C, T, H, W]`` rather than images)."""
        return self.num_frames is not None

    def batch_shape(self, n: int | str) -> tuple[Any, ...]:
        """The shape of a batch of `n` inputs: ``(n, C, H, W)``, or ``(n, C, T, H, W)`` for a video encoder.

        >>> Preprocess(input_size=(3, 32, 32), num_frames=4).batch_shape(2)
        (2, 3, 4, 32, 32)
        """
        c, h, w = self.input_size
        return (n, c, self.num_frames, h, w) if self.is_video else (n, c, h, w)

    def with_size(self, img_size: int | tuple[int, int] | None) -> Preprocess:
        """The same preprocessing at another square or (H, W) input size."""
        if img_size is None:
            return self
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        return replace(self, input_size=(self.input_size[0], int(h), int(w)))

    def to_timm(self) -> dict[str, Any]:
        """The fields of a timm `pretrained_cfg` that describe preprocessing."""
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            # video only, so an image encoder's config.json stays as timm writes it
            **({"num_frames": self.num_frames, "frame_stride": self.frame_stride} if self.is_video else {}),
        }

    @classmethod
    def from_timm(cls, cfg: Mapping[str, Any]) -> Preprocess:
        """Read the preprocessing part of a timm `pretrained_cfg` (missing fields keep defaults)."""
        base = cls()
        return cls(
            input_size=tuple(cfg.get("input_size", base.input_size)),
            mean=tuple(cfg.get("mean", base.mean)),
            std=tuple(cfg.get("std", base.std)),
            interpolation=cfg.get("interpolation", base.interpolation),
            crop_pct=float(cfg.get("crop_pct", base.crop_pct)),
            crop_mode=cfg.get("crop_mode", base.crop_mode),
            num_frames=None if cfg.get("num_frames") is None else int(cfg["num_frames"]),
            frame_stride=int(cfg.get("frame_stride", base.frame_stride)),
        )


@dataclass(frozen=True)
class WeightSource:
    """One place a variant's pretrained weights can come from: a Hub repo, a plain URL, or a bundled file.

    A source needs at least one of ``repo_id``, ``url`` and ``bundled``. ``mimzoo.load`` uses the
    first that applies: ``bundled`` (offline), else the Hub file ``repo_id``/``filename`` (``url`` is
    then provenance only), else a download of ``url`` into mimzoo's cache (``$MIMZOO_CACHE/weights``).
    """

    name: str  # short tag used by `load(..., weights=<tag>)`, e.g. "timm"
    repo_id: str | None = None  # Hugging Face Hub repo holding the file, e.g. "timm/vit_base_patch16_224.mae"
    filename: str = "model.safetensors"  # file inside the Hub repo (Hub sources only)
    revision: str | None = None  # Hub commit to pin; None follows "main"
    # the official http(s) URL of the file: provenance for a Hub source; downloaded when repo_id is None
    url: str | None = None
    sha256: str | None = None  # expected sha256 of the file, verified after download when set
    layout: str | None = None  # checkpoint layout name; None lets mimzoo detect it from the keys
    note: str = ""  # what is special about these weights, shown by `mimzoo info`
    # a file shipped with the plugin, used offline before any download: a relative path resolved
    # first in the folder of the module the plugin's entry point names, then in the mimzoo package
    # (so "assets/mae-vit-digits/model.safetensors" finds mimzoo/assets/...)
    bundled: str | None = None

    def validate(self, owner: str) -> None:
        """Raise PluginError when the source names no place to get the file from, or a malformed one."""
        who = f"{owner}: weight source '{self.name}'"
        if not (self.repo_id or self.url or self.bundled):
            raise PluginError(f"{who} needs at least one of repo_id, url, bundled; set one of them")
        if self.url is not None and not self.url.lower().startswith(("http://", "https://")):
            raise PluginError(f"{who} has url '{self.url}'; only http:// and https:// URLs are supported")
        parts = (self.bundled or "").replace("\\", "/").split("/")
        if self.bundled is not None and (not parts[0] or ":" in parts[0] or ".." in parts):
            raise PluginError(f"{who} has bundled path '{self.bundled}'; use a relative path without '..'")


@dataclass(frozen=True)
class Reference:
    """The paper's numbers for a variant, for the model table and model cards."""

    finetune_top1: float | None = None  # end-to-end fine-tune top-1 (%)
    linear_top1: float | None = None  # linear-probe top-1 (%)
    knn_top1: float | None = None  # k-NN top-1 (%) on frozen features (DINO-style weighted k-NN)
    epochs: int | None = None  # pretraining epochs of the reported weights
    dataset: str = "ImageNet-1K"  # where the top-1 figures are measured
    pretrain_data: str = "ImageNet-1K"  # what the encoder was pretrained on
    source: str = ""  # where the numbers come from (paper table, official README)


# keys -> shapes of a flat checkpoint; pure Python so detection needs no torch
KeyShapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class CheckpointLayout:
    """A known checkpoint key layout and how to turn it into the encoder's own state dict."""

    name: str  # e.g. "official", "transformers", "timm"
    description: str  # one line: where checkpoints in this layout come from
    detect: Callable[[KeyShapes], bool]  # True when a flat checkpoint is in this layout
    # (state_dict, encoder model) -> state dict in the encoder's own (timm) key layout
    convert: Callable[[dict[str, Any], Any], dict[str, Any]]


def arch_label(arch: str, kwargs: Mapping[str, Any]) -> str:
    """The architecture as built: the timm name, or, when kwargs resize it, its family and the sizes.

    >>> arch_label("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 6})
    'vit (patch 4, 96-d, depth 6)'
    >>> arch_label("vit_base_patch16_224", {})
    'vit_base_patch16_224'
    """
    def joined(v: Any) -> str:
        return "-".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)

    parts = [f"patch {kwargs['patch_size']}"] if "patch_size" in kwargs else []
    width = kwargs.get("embed_dim", kwargs.get("dims"))
    if width is not None:
        parts.append(f"{joined(width)}-d")
    depth = kwargs.get("depth", kwargs.get("depths", kwargs.get("stages")))
    if depth is not None:
        parts.append(f"depth {joined(depth)}")
    return f"{arch.split('_')[0]} ({', '.join(parts)})" if parts else arch


@dataclass(frozen=True)
class Variant:
    """One zoo model: an encoder, its preprocessing, its weights and its reference numbers."""

    name: str  # zoo name, `<method>-<arch>-<size>`, e.g. "mae-vit-b"
    arch: str  # timm architecture the encoder is built from
    params_m: float  # encoder parameters in millions (listed without building the model)
    pooling: str = "token"  # how `encoder(x)` pools tokens, one of POOLINGS (timm global_pool, or mimzoo's token-avg)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # extra timm kwargs (read-only)
    preprocess: Preprocess = Preprocess()  # input size, normalisation, resize and crop
    weights: tuple[WeightSource, ...] = ()  # pretrained weight sources, the first is the default
    layouts: tuple[CheckpointLayout, ...] = ()  # checkpoint layouts `weights=` files may use
    reference: Reference | None = None  # paper numbers, None for variants without a paper entry
    description: str = ""  # one line for `mimzoo info`
    test_only: bool = False  # tiny variants for tests: hidden from `mimzoo list` unless --all
    license: str | None = None  # license of this variant's weights when it differs from the method's
    # how these weights were trained when it differs from the method's taxonomy (mae-vit-digits: raw
    # pixels, not MAE's normalised ones); the card and `mimzoo info` state this one
    taxonomy: Taxonomy | None = None

    def license_for(self, method: Method) -> str:
        """The license of this variant's weights."""
        return self.license or method.license

    def taxonomy_for(self, method: Method) -> Taxonomy:
        """The survey axes these weights were trained on."""
        return self.taxonomy or method.taxonomy

    def arch_label(self) -> str:
        """The architecture as built (see :func:`arch_label`)."""
        return arch_label(self.arch, self.model_kwargs)

    def validate(self, owner: str) -> None:
        who = f"{owner}/{self.name}"
        _check(self.pooling, POOLINGS, "pooling", who)
        _check(self.preprocess.interpolation, INTERPOLATIONS, "interpolation", who)
        if self.taxonomy is not None:
            self.taxonomy.validate(who)
        if not self.name or self.name != self.name.lower() or " " in self.name:
            raise PluginError(f"{who}: model names are lower-case without spaces, like 'mae-vit-b'")
        if len(self.preprocess.mean) != self.preprocess.input_size[0]:
            raise PluginError(f"{who}: preprocess mean needs one value per input channel")
        frames, stride = self.preprocess.num_frames, self.preprocess.frame_stride
        if (frames is not None and frames < 1) or stride < 1:
            raise PluginError(f"{who}: preprocess num_frames {frames} and frame_stride {stride} must be at least 1 "
                              "(num_frames None for image encoders)")
        tags = [w.name for w in self.weights]
        if len(set(tags)) != len(tags):
            raise PluginError(f"{who}: weight source tags {tags} must be unique")
        known = {layout.name for layout in self.layouts}
        for w in self.weights:
            w.validate(who)
            if w.layout is not None and w.layout not in known:
                raise PluginError(f"{who}: weight source '{w.name}' names unknown layout '{w.layout}'")

    def weight_source(self, tag: str | None = None) -> WeightSource | None:
        """The weight source with tag `tag`, or the default one (None when there is none)."""
        if tag is None:
            return self.weights[0] if self.weights else None
        return next((w for w in self.weights if w.name == tag), None)


@dataclass(frozen=True)
class Method:
    """A MIM method plugin: the object a ``mimzoo.methods`` entry point resolves to."""

    name: str  # method id, the entry-point name, e.g. "mae"
    title: str  # display name, e.g. "MAE"
    paper: Paper  # where it was published
    family: str  # "reconstruction", "contrastive" or "hybrid" (FAMILIES)
    taxonomy: Taxonomy  # choices on the survey's axes
    license: str  # SPDX-like license id of the released weights, e.g. "cc-by-nc-4.0"
    variants: tuple[Variant, ...]  # the zoo models it provides
    recipe: Any = None  # pretraining recipe (masking, target, loss, decoder), when it has one

    def __post_init__(self) -> None:
        owner = f"method '{self.name}'"
        _check(self.family, FAMILIES, "family", owner)
        self.taxonomy.validate(owner)
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise PluginError(f"{owner}: variant names {names} must be unique")
        for v in self.variants:
            v.validate(self.name)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        from ..errors import UnknownModelError

        raise UnknownModelError(name, [v.name for v in self.variants])
