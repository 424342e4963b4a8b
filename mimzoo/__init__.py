"""mimzoo: Masked Image Modeling backbones you can trust and ship.

>>> import mimzoo
>>> mimzoo.list_models("mae-vit-*")  # doctest: +SKIP
['mae-vit-b', 'mae-vit-h', 'mae-vit-l']
>>> encoder = mimzoo.load("mae-vit-b")  # doctest: +SKIP

Importing mimzoo imports neither torch nor timm; they load when a model is built.
"""

from __future__ import annotations

import logging

from ._version import __version__
from .api.listing import info, list_models
from .api.load import load
from .errors import MimzooError
from .registry import Method, Variant, get_registry


def save_pretrained(encoder, path, *, overwrite: bool = True):  # noqa: ANN001, ANN201 - thin alias
    """Write an encoder as a model folder (config.json + model.safetensors) that `load` reads back.

    >>> mimzoo.save_pretrained(mimzoo.load("mae-vit-b"), "out/mae-vit-b")  # doctest: +SKIP
    """
    from .hub.folder import save_folder

    return save_folder(encoder, path, overwrite=overwrite)


# verbs implemented in heavier modules, imported on first use: attribute -> "module:attr"
_LAZY = {
    "evaluate": "mimzoo.api.evaluate:evaluate",
    "export": "mimzoo.api.export:export",
    "verify": "mimzoo.api.export:verify",
    "publish": "mimzoo.api.publish:publish",
    "release": "mimzoo.api.release:release",
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mimzoo' has no attribute '{name}'")


logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Method",
    "MimzooError",
    "Variant",
    "__version__",
    "get_registry",
    "info",
    "list_models",
    "load",
    "save_pretrained",
]
