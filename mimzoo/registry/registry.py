"""The registry: every model name the installed plugins provide, and where it comes from."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import DuplicateNameError, UnknownMethodError, UnknownModelError
from .contract import Method, Variant
from .discovery import PluginInfo, discover


@dataclass(frozen=True)
class ModelEntry:
    """A zoo model with the method and distribution that provide it."""

    method: Method
    variant: Variant
    distribution: str

    @property
    def name(self) -> str:
        return self.variant.name


class Registry:
    """Methods and models from a set of plugins; names are unique across distributions."""

    def __init__(self, plugins: Iterable[PluginInfo]):
        self.plugins: list[PluginInfo] = list(plugins)
        self._methods: dict[str, PluginInfo] = {}
        self._models: dict[str, ModelEntry] = {}
        for info in self.plugins:
            if info.method is not None:
                self._add(info)

    def _add(self, info: PluginInfo) -> None:
        method = info.method
        assert method is not None  # only called for loaded plugins
        if method.name in self._methods:
            other = self._methods[method.name]
            raise DuplicateNameError(
                f"method '{method.name}' is registered by both {other.distribution} ({other.value}) "
                f"and {info.distribution} ({info.value}); uninstall one of them"
            )
        for v in method.variants:
            if v.name in self._models:
                other = self._models[v.name]
                raise DuplicateNameError(
                    f"model '{v.name}' is registered by both {other.distribution} (method '{other.method.name}') "
                    f"and {info.distribution} (method '{method.name}'); uninstall one of them"
                )
        self._methods[method.name] = info
        for v in method.variants:
            self._models[v.name] = ModelEntry(method, v, info.distribution)

    def methods(self) -> list[Method]:
        return [info.method for info in self._methods.values() if info.method is not None]

    def method(self, name: str) -> Method:
        info = self._methods.get(name)
        if info is None or info.method is None:
            raise UnknownMethodError(name, self._methods)
        return info.method

    def models(self, pattern: str = "*", include_test: bool = False) -> list[ModelEntry]:
        """Model entries whose name matches the glob `pattern`, sorted by name."""
        return [
            e
            for name, e in sorted(self._models.items())
            if fnmatch.fnmatchcase(name, pattern) and (include_test or not e.variant.test_only)
        ]

    def model(self, name: str) -> ModelEntry:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModelError(name, self._models) from None

    def __contains__(self, name: object) -> bool:
        return name in self._models


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The registry of the installed plugins, built on first use and cached."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry(discover())
    return _REGISTRY


def reset_registry() -> None:
    """Forget the cached registry (after installing or removing plugins in-process)."""
    global _REGISTRY
    _REGISTRY = None
