"""Weights: safe reading, Hub download (URL download: .url_download), layout detection and strict conversion."""

from .convert import LoadReport, convert_and_load, detect_layout, load_strict, resample_pos_embed
from .download import hub_download
from .read import read_checkpoint, sha256_of

__all__ = [
    "LoadReport",
    "convert_and_load",
    "detect_layout",
    "hub_download",
    "load_strict",
    "read_checkpoint",
    "resample_pos_embed",
    "sha256_of",
]
