"""Reading checkpoint files safely.

safetensors files are read directly. Pickle-based files (``.pth``, ``.pt``, ``.bin``, ``.pyth``)
go through ``torch.load(weights_only=True)``, whose unpickler refuses anything but tensors and
plain containers; official checkpoints that also store their config (argparse, yacs) are read by
mimzoo's :class:`~mimzoo.weights.unpickle.InertUnpickler`, which runs none of their code either.
A checkpoint that tries to run code, or to change anything outside itself, is refused.
The format is recognised from the file's first bytes, not its extension; a pickle named
``.safetensors`` is refused.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import WeightsError

log = logging.getLogger(__name__)

# Containers research code wraps state dicts in, tried in this order.
WRAPPER_KEYS = ("model", "model_state", "state_dict", "module", "model_ema")


def sniff_format(path: Path) -> str:
    """'safetensors', 'torch-zip', 'torch-pickle' or 'unknown', from the first bytes."""
    with path.open("rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 31):
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol 2+ (torch's legacy format)
        return "torch-pickle"
    return "unknown"


def check_safetensors_name(path: Path, fmt: str | None = None) -> None:
    """Refuse a file named ``.safetensors`` that holds a pickle: one line saying what it really is.

    torch.load would hand such a file to safetensors (a raw SafetensorError); mimzoo never unpickles a
    file that claims to be safetensors, since whoever named it so expected no pickle inside.
    """
    fmt = fmt or sniff_format(path)
    if fmt in ("torch-zip", "torch-pickle"):
        what = "a PyTorch zip checkpoint (pickle inside)" if fmt == "torch-zip" else "a pickle"
        raise WeightsError(
            f"{path} is named .safetensors but is {what}; mimzoo does not unpickle a file that claims to be "
            "safetensors: convert it with safetensors.torch.save_file, or rename it to .pth if you trust it"
        )


def sha256_of(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _load_safetensors(path: Path) -> dict[str, Any]:
    st = require("safetensors.torch")
    try:
        return st.load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError, OSError: truncated or corrupt header/data
        raise WeightsError(
            f"cannot read {path} as safetensors ({_first_line(e)}); "
            "the file is truncated or corrupt: download or copy it again"
        ) from e


def _load_torch(path: Path) -> Any:
    """torch's own weights-only unpickler first; official checkpoints holding config objects
    (argparse Namespace, yacs CfgNode) get a second chance with :class:`~.unpickle.InertUnpickler`.

    No ``torch.serialization.safe_globals`` here: that would change a process-wide list (and drop
    a class the caller had allowed itself). A zip whose pickle names globals outside torch's list goes
    straight to the second reader (listing them reads only the small pickle, not the tensors)."""
    torch = require("torch")
    if _names_extra_globals(path):
        return _load_with_config_objects(path, None)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        return _load_with_config_objects(path, e)
    except RuntimeError as e:
        if "TorchScript" in str(e):
            raise _torchscript(path) from e
        if "Invalid magic number" in str(e):
            raise WeightsError(f"{path} is a plain pickle, not a torch.save checkpoint; load it only if you trust it, "
                               "then re-save its tensors with torch.save or safetensors") from e
        raise _corrupt(path, e) from e
    except Exception as e:  # noqa: BLE001 - malformed bytes surface as any error (IndexError, KeyError, ...)
        raise _corrupt(path, e) from e


def check_zip_sizes(path: Path) -> None:
    """Refuse a zip whose records could expand beyond the file itself (a zip bomb), before torch reads it.

    torch.save writes every record uncompressed, so each record's size must be its stored size, and
    no record can be larger than the file on disk: the sizes the archive declares are checked
    against the file, never trusted.
    """
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _corrupt(path, e) from e
    if any(info.filename.rpartition("/")[2] == "constants.pkl" for info in infos):
        raise _torchscript(path)
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise WeightsError(f"{path} holds a compressed record ({info.filename}), which torch.save never writes; "
                               "the file was repacked or is hostile: re-save it with torch.save or safetensors")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
            raise WeightsError(f"{path} declares a record ({info.filename}, {info.file_size} bytes) larger than the "
                               "file itself; the file is truncated or corrupt: download or copy it again")


def _first_line(e: BaseException) -> str:
    """The first line of an error's message, or its type when it has none (``KeyError: 7`` -> ``7``)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _torchscript(path: Path) -> WeightsError:
    return WeightsError(f"{path} is a TorchScript archive (code, not only weights); "
                        "save the model's state_dict() with torch.save or safetensors and pass that")


def _corrupt(path: Path, e: Exception) -> WeightsError:
    return WeightsError(
        f"cannot read {path} as a PyTorch checkpoint ({_first_line(e)}); "
        "the file is truncated or corrupt: download or copy it again"
    )


def _names_extra_globals(path: Path) -> bool:
    """Whether a zip checkpoint's pickle names globals outside torch's weights-only list (read, not run)."""
    from .unpickle import checkpoint_globals

    if not zipfile.is_zipfile(path):
        return False
    try:
        return bool(checkpoint_globals(str(path)))
    except Exception:  # noqa: BLE001 - an opcode the lister does not know: let torch's reader decide first
        return False


def _load_with_config_objects(path: Path, refusal: pickle.UnpicklingError | None) -> Any:
    """Second chance for official checkpoints whose extra globals are plain data or known config classes."""
    from .unpickle import InertCheckpointError, load_with_inert_configs

    try:
        return load_with_inert_configs(str(path))
    except InertCheckpointError as e:
        raise WeightsError(
            f"refused to unpickle {path}: {e}{_unsafe_globals(path)}; "
            "only load it if you trust it, then re-save its tensors with safetensors"
        ) from e
    except pickle.UnpicklingError as e:
        raise WeightsError(f"refused to unpickle {path}: {_first_line(e)}; "
                           "re-save its tensors with safetensors") from e
    except Exception as e:  # noqa: BLE001 - malformed pickle data surfaces as any error (IndexError, KeyError, ...)
        raise _corrupt(path, e) from e


def _unsafe_globals(path: Path) -> str:
    """`` (needs a, b)``: the globals outside torch's allow-list, listed without running anything."""
    from .unpickle import INERT_CONFIG_CLASSES, EXTRA_CLASSES, checkpoint_globals

    try:
        names = checkpoint_globals(str(path)) if zipfile.is_zipfile(path) else []
    except Exception:  # noqa: BLE001 - the listing is only a hint
        return ""
    names = [g for g in names if g not in INERT_CONFIG_CLASSES and g not in EXTRA_CLASSES]
    return f" (needs {', '.join(names[:3])})" if names else ""


def _is_tensor_dict(obj: Any) -> bool:
    torch = require("torch")
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings of tensors as one flat dict with dotted keys; non-tensors are dropped."""
    torch = require("torch")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[key] = v
        elif isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
    return out


def flatten_checkpoint(obj: Any) -> dict[str, Any]:
    """A flat ``{key: tensor}`` dict from whatever container a checkpoint uses.

    A known wrapper (``{'model': state_dict, 'args': ...}``) is unwrapped; a checkpoint holding
    several state dicts (I-JEPA's ``encoder``/``target_encoder``) is flattened with dotted keys;
    a ``module.`` prefix shared by every key (DDP) is removed.
    """
    if not isinstance(obj, Mapping):
        raise WeightsError(f"checkpoint holds a {type(obj).__name__}, not a dict of tensors; save a state_dict")
    sd: dict[str, Any] | None = None
    for key in WRAPPER_KEYS:
        if _is_tensor_dict(obj.get(key)):
            sd = dict(obj[key])
            break
    if sd is None:
        sd = _flatten(obj)
    if not sd:
        raise WeightsError("checkpoint contains no tensors; pass a file holding model weights")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    hooked = [k for k, v in sd.items() if getattr(v, "_backward_hooks", None)]
    if hooked:  # torch.save never writes hooks; these would run in a later backward pass
        raise WeightsError(f"checkpoint attaches backward hooks to {', '.join(hooked[:3])}, which torch.save never "
                           "writes; the file is hostile or was crafted: re-save its tensors with safetensors")
    return sd


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict, never running pickled code.

    Args:
        path: a ``.safetensors`` file, a PyTorch checkpoint, or a folder holding ``model.safetensors``.

    >>> sd = read_checkpoint("mae_pretrain_vit_base.pth")  # doctest: +SKIP
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.exists():
        raise WeightsError(f"checkpoint file not found: {p}; check the path")
    if not p.is_file():  # a device, FIFO or socket: never read (/dev/zero would never end)
        raise WeightsError(f"{p} is not a regular file; pass a checkpoint file")
    fmt = sniff_format(p)
    log.debug("reading %s (%s)", p, fmt)
    if p.suffix == ".safetensors":
        check_safetensors_name(p, fmt)
    if fmt == "safetensors" or (fmt == "unknown" and p.suffix == ".safetensors"):
        return flatten_checkpoint(_load_safetensors(p))
    if fmt == "torch-zip":
        check_zip_sizes(p)
    if fmt in ("torch-zip", "torch-pickle"):
        return flatten_checkpoint(_load_torch(p))
    raise WeightsError(f"{p} is neither safetensors nor a PyTorch checkpoint; pass a .safetensors or .pth file")
