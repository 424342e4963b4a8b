"""Reconstruction pictures: original | masked | reconstruction | reconstruction + visible patches.

Works for models pretrained with a pixel target and a decoder or head (MAE, SimMIM, FCMAE):
a model folder written by ``mimzoo pretrain`` (its ``pretrain.safetensors`` holds the decoder),
a zoo model whose bundled weights ship one (``mae-vit-digits``), or any MAE encoder plus an
official ``mae_visualize_*.pth`` / transformers ``ViTMAEForPreTraining`` checkpoint passed as
``decoder=``.

The columns follow facebookresearch/mae ``demo/mae_visualize.ipynb``, with one change: its
"reconstruction" column shows the decoder's output at every patch, visible ones included. The
loss never trains those (MAE scores masked patches only), and a small model's outputs there are
noise, so here the "reconstruction" column shows the predictions at the masked patches only
(visible patches are filled with ``VISIBLE_COLOR``); "+ visible" pastes the input's own visible
patches around them, as the demo does.

Normalised-pixel targets (MAE's norm_pix_loss): the model predicts each patch's pixels minus the
patch's mean, over its standard deviation, so the prediction is drawn with the mean and variance
of the *original* patch (the only statistics there are; the MAE-pytorch visualisation does the
same). The official demo needs no such step: its ``mae_visualize_*`` weights were trained on raw
pixels. Models trained on plain pixels (``mae-vit-digits``) are drawn as predicted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_file
from ..errors import MimzooError
from .output import PRETRAIN_NAME, read_pretrain_file
from .recipe import Decoder, Recipe, Target, with_overrides

log = logging.getLogger(__name__)
COLUMNS = ("original", "masked", "reconstruction", "+ visible")
MASK_COLOR = (0.25, 0.35, 0.65)  # masked patches: a blue grey no grey-scale image contains
VISIBLE_COLOR = (0.85, 0.75, 0.45)  # visible patches in the "reconstruction" column (nothing predicted there)
PIXEL_TARGETS = ("pixels", "normalized-pixels")  # the targets a picture can be drawn from
MIN_PANEL = 128  # small inputs (digits: 32 px) are enlarged to at least this many pixels per panel


def reconstruct(model: str, images: Sequence[Any], output: str | Path, *, decoder: str | Path | None = None,
                weights: str | None = None, mask_ratio: float | None = None, seed: int = 0) -> Path:
    """Draw a reconstruction picture for each image (one row each) into a PNG.

    Args:
        model: a model folder from ``mimzoo pretrain``, or a zoo name / anything ``mimzoo.load`` takes.
        images: image paths or PIL images.
        output: the PNG to write.
        decoder: a ``pretrain.safetensors``, or an official / transformers MAE checkpoint with a decoder;
            None finds the one beside the model's weights.
        weights: passed to ``mimzoo.load`` (a weight-source tag or checkpoint file).
        mask_ratio: masking ratio other than the recipe's.
        seed: seed of the masks.

    A video model (VideoMAE) takes clips instead (video files, frame folders, ``moving-digits:INDEX``)
    and writes an animated ``.gif`` or a ``.png`` frame strip (:mod:`mimzoo.pretrain.reconstruct_video`).

    >>> reconstruct("mae-vit-digits", ["seven.png"], "out.png")  # doctest: +SKIP
    PosixPath('out.png')
    """
    import mimzoo

    encoder = mimzoo.load(model, weights=weights) if weights else mimzoo.load(model)
    if getattr(encoder.preprocess, "num_frames", None) is not None:
        from .reconstruct_video import reconstruct_clips

        objective = _objective(encoder, _decoder_file(model, encoder, decoder), mask_ratio)
        return reconstruct_clips(encoder, objective, images, output, seed=seed)
    columns = reconstruction_columns(model, images, decoder=decoder, weights=weights, mask_ratio=mask_ratio,
                                     seed=seed, encoder=encoder)
    *panels, _ = columns
    rows = [[_to_pil(t[i]) for t in panels] for i in range(panels[0].shape[0])]
    return _save_grid(rows, Path(output))


def reconstruction_columns(model: str, images: Sequence[Any], *, decoder: str | Path | None = None,
                           weights: str | None = None, mask_ratio: float | None = None,
                           seed: int = 0, encoder: Any = None) -> tuple[torch.Tensor, ...]:
    """The picture's four columns as ``[N, C, H, W]`` images in [0, 1] (see :func:`panel_tensors`),
    plus the patch mask ``[N, L]`` (True = masked) last. Arguments as :func:`reconstruct` (`encoder`:
    `model` already loaded)."""
    import mimzoo

    from .masking import MaskBatch

    if encoder is None:
        encoder = mimzoo.load(model, weights=weights) if weights else mimzoo.load(model)
    objective = _objective(encoder, _decoder_file(model, encoder, decoder), mask_ratio)
    pil = [_open(im) for im in images]
    if not pil:
        raise MimzooError("no images given; pass one or more image files")
    x = torch.stack([encoder.transform(im) for im in pil])
    masks: MaskBatch = objective.masking(len(pil), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = objective.reconstruct(x, masks)
    return (*panel_tensors(x, pred, masks.mask, objective.patch, objective.grid, encoder.preprocess), masks.mask)


def _open(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise MimzooError(f"no image at {path}; pass image files")
        with Image.open(path) as im:
            return im.convert("RGB")
    return image


def _decoder_file(model: str, encoder: Any, decoder: str | Path | None) -> Path:
    if decoder is not None:
        return Path(decoder)
    candidates = [Path(model) / PRETRAIN_NAME] if Path(model).is_dir() else []
    source = getattr(encoder.info.weights, "source", "") or ""
    if source.startswith("bundled:"):
        candidates.append((Path(__file__).resolve().parents[1] / source[len("bundled:"):]).with_name(PRETRAIN_NAME))
    for path in candidates:
        if path.is_file():
            return path
    raise MimzooError(f"'{model}' comes without its pretraining decoder; pass --decoder PATH (a {PRETRAIN_NAME}, "
                      "or an official mae_visualize_*.pth / transformers ViTMAEForPreTraining checkpoint)")


def _objective(encoder: Any, path: Path, mask_ratio: float | None) -> Any:
    from .models import build_objective

    if path.name.endswith(".safetensors") and _is_mimzoo_file(path):
        tensors, recipe, _ = read_pretrain_file(path)
        if recipe is None:
            raise MimzooError(f"{path} records no recipe; re-save it with mimzoo pretrain")
    else:
        tensors, recipe = _foreign_mae(path)
    if recipe.target.kind not in PIXEL_TARGETS:  # before anything is built: a teacher or tokenizer named in
        # the file is never loaded, imported or called
        raise MimzooError(f"{path} was pretrained with a {recipe.target.kind} target; pictures need a pixel target "
                          "(MAE, SimMIM, FCMAE): pass a model pretrained on pixels")
    if mask_ratio is not None:
        recipe = with_overrides(recipe, {"masking.ratio": mask_ratio})
    objective = build_objective(recipe, encoder, trained=True).eval()
    missing, unexpected = objective.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.startswith(("encoder.", "target."))]
    if missing or unexpected:
        raise MimzooError(f"{path} does not fit the {recipe.method} objective (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}); pass the decoder saved with this model")
    return objective


def _is_mimzoo_file(path: Path) -> bool:
    from safetensors import SafetensorError, safe_open

    from ..weights.read import check_safetensors_name

    if not path.is_file():
        raise MimzooError(f"no decoder file at {path}; pass --decoder PATH to a {PRETRAIN_NAME}")
    check_safetensors_name(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return "recipe" in (f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise MimzooError(f"cannot read {path} as safetensors ({str(e).splitlines()[0]}); the file is truncated "
                          "or corrupt: copy it again, or pass the pretrain.safetensors of this model") from e


def _foreign_mae(path: Path) -> tuple[dict[str, torch.Tensor], Recipe]:
    """An official mae_visualize / transformers ViTMAEForPreTraining checkpoint: its decoder and a
    raw-pixel MAE recipe sized from the tensors (those weights were trained without norm-pix)."""
    from ..weights import read_checkpoint
    from .models.mae import decoder_from_transformers

    sd = read_checkpoint(path)
    if any(k.startswith("decoder.decoder_") for k in sd):
        sd = decoder_from_transformers(sd)
    dec = {f"decoder.{k}": v for k, v in sd.items() if k.startswith(("decoder_", "mask_token"))}
    if "decoder.decoder_embed.weight" not in dec:
        raise MimzooError(f"{path} holds no MAE decoder (decoder_embed, decoder_blocks, ...); "
                          "pass a checkpoint with one")
    dim = dec["decoder.decoder_embed.weight"].shape[0]
    depth = 1 + max(int(k.split(".")[2]) for k in dec if k.startswith("decoder.decoder_blocks."))
    hidden = dec["decoder.decoder_blocks.0.mlp.fc1.weight"].shape[0]
    recipe = Recipe("mae", target=Target("pixels"),
                    decoder=Decoder("mae", dim=dim, depth=depth, heads=16, mlp_ratio=hidden / dim))
    return dec, recipe


def panel_tensors(x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch: int, grid: tuple[int, int],
                  pp: Any) -> tuple[torch.Tensor, ...]:
    """The four columns as images in [0, 1]: original, masked, reconstruction, reconstruction + visible.

    Args:
        x: the model's (normalised) inputs ``[N, C, H, W]``.
        pred: the objective's predicted images in the same normalised space ``[N, C, H, W]``.
        mask: ``[N, L]``, True (1) where a patch was masked.
        patch, grid: patch size in pixels and the patch grid (rows, columns).
        pp: the encoder's preprocessing (its mean and std undo the normalisation).
    """
    from .targets import unpatchify

    channels = x.shape[1]
    mean = torch.tensor(pp.mean).view(1, -1, 1, 1)
    std = torch.tensor(pp.std).view(1, -1, 1, 1)
    m = unpatchify(mask.float().unsqueeze(-1).expand(-1, -1, patch * patch * channels), patch, grid, channels)
    original = x * std + mean  # [N, C, H, W]
    recon = pred * std + mean
    tint = torch.tensor(MASK_COLOR[:channels]).view(1, -1, 1, 1)
    fill = torch.tensor(VISIBLE_COLOR[:channels]).view(1, -1, 1, 1)
    masked = original * (1 - m) + tint * m
    predicted = fill * (1 - m) + recon * m  # what the loss trained: masked patches only
    pasted = original * (1 - m) + recon * m
    return original, masked, predicted, pasted


def _to_pil(t: torch.Tensor) -> Any:
    from PIL import Image

    arr = (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0], "RGB" if arr.shape[2] == 3 else "L")
    scale = max(1, -(-MIN_PANEL // max(img.size)))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def _save_grid(rows: list[list[Any]], output: Path) -> Path:
    from PIL import Image, ImageDraw

    w, h = rows[0][0].size
    pad, head = 4, 16
    sheet = Image.new("RGB", (len(COLUMNS) * (w + pad) + pad, head + len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(COLUMNS):
        draw.text((pad + c * (w + pad), 2), title, fill="black")
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            sheet.paste(panel.convert("RGB"), (pad + c * (w + pad), head + pad + r * (h + pad)))
    with atomic_file(output) as tmp:
        sheet.save(tmp, format="PNG")
    log.info("wrote %s (%d images)", output, len(rows))
    return output
