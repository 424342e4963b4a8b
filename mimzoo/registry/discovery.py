"""Finding method plugins through the ``mimzoo.methods`` entry-point group.

First-party plugins (under ``plugins/`` in this repository) register through the same group a
third-party distribution uses. A plugin that fails to import, or resolves to something that is
not a :class:`~mimzoo.registry.contract.Method`, is recorded as broken with its reason; the
others keep working.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass

from ..errors import MimzooError
from .contract import Method

ENTRY_POINT_GROUP = "mimzoo.methods"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    """What `mimzoo plugins` shows for one entry point."""

    entry_point: str  # entry-point name, which must equal the method name
    value: str  # "module:attribute" the entry point resolves
    distribution: str  # distribution that declares it
    version: str  # that distribution's version
    method: Method | None  # the loaded method, None when broken
    error: str | None = None  # why it is broken

    @property
    def status(self) -> str:
        return "ok" if self.error is None else f"broken: {self.error}"


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _load(ep: importlib.metadata.EntryPoint) -> PluginInfo:
    dist = ep.dist.name if ep.dist is not None else "<unknown>"
    version = ep.dist.version if ep.dist is not None else "?"

    def broken(reason: str) -> PluginInfo:
        log.warning("mimzoo plugin '%s' from %s %s is broken: %s", ep.name, dist, version, reason)
        return PluginInfo(ep.name, ep.value, dist, version, None, reason)

    try:
        obj = ep.load()
    except MimzooError as e:  # contract violations raised while building the Method
        return broken(str(e))
    except Exception as e:  # noqa: BLE001 - any import failure must not break other plugins
        return broken(f"{type(e).__name__}: {e}")
    if not isinstance(obj, Method):
        return broken(f"entry point resolves to {type(obj).__name__}, not mimzoo.registry.Method")
    if obj.name != ep.name:
        return broken(f"entry point name '{ep.name}' differs from the method name '{obj.name}'; make them equal")
    return PluginInfo(ep.name, ep.value, dist, version, obj)


def discover() -> list[PluginInfo]:
    """Load every installed method plugin, in entry-point name order."""
    return [_load(ep) for ep in sorted(_entry_points(), key=lambda e: (e.name, e.value))]
