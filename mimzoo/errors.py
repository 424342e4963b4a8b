"""Errors a user can act on.

Every message is one line that says what went wrong and how to fix it. The CLI prints
`error: <message>` for any :class:`MimzooError` and exits non-zero without a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name `name` most likely meant: the same letters in another case first (names are
    lower-case data, so 'MAE-ViT-B' means 'mae-vit-b'), else the closest spelling, else None."""
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


class MimzooError(Exception):
    """Base class of every error mimzoo raises on purpose (bad input, missing files, ...)."""

    exit_code: int = 1


class UnknownModelError(MimzooError, KeyError):
    """A model name is not in the registry."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        close = closest_name(name, known)
        hint = f"did you mean '{close}'?" if close else "run `mimzoo list` to see the models"
        super().__init__(f"unknown model '{name}'; {hint}")

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0])


class UnknownMethodError(UnknownModelError):
    """A method name is not in the registry."""

    def __init__(self, name: str, known: Iterable[str]):
        close = closest_name(name, known)
        hint = f"did you mean '{close}'?" if close else "run `mimzoo plugins` to see the methods"
        MimzooError.__init__(self, f"unknown method '{name}'; {hint}")
        self.name = name


class PluginError(MimzooError):
    """A plugin is broken or declares something invalid."""


class DuplicateNameError(PluginError):
    """Two plugins claim the same method or model name."""


class WeightsError(MimzooError):
    """A checkpoint cannot be read, is unsafe, or does not match the encoder."""


class WeightsNotAvailableError(WeightsError):
    """Pretrained weights are neither cached nor downloadable."""


class HubFileNotFoundError(WeightsError):
    """A Hub repo exists but does not hold the requested file."""


class MissingDependencyError(MimzooError, ImportError):
    """An optional dependency is not installed."""


class ModelFolderError(MimzooError):
    """A local or Hub model folder is malformed."""
