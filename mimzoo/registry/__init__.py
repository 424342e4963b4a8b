"""The plugin contract and the registry of installed methods and models."""

from .contract import (
    CheckpointLayout,
    Method,
    Paper,
    Preprocess,
    Reference,
    Taxonomy,
    Variant,
    WeightSource,
)
from .discovery import ENTRY_POINT_GROUP, PluginInfo, discover
from .registry import ModelEntry, Registry, get_registry, reset_registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "CheckpointLayout",
    "Method",
    "ModelEntry",
    "Paper",
    "PluginInfo",
    "Preprocess",
    "Reference",
    "Registry",
    "Taxonomy",
    "Variant",
    "WeightSource",
    "discover",
    "get_registry",
    "reset_registry",
]
