"""What may appear in a public repo: references to this machine are reduced to a name.

Cards, config.json and export reports must not show someone's file system (user names, project
layout); Hub repos, bundled files and URLs (a weight source that is a plain URL) are public already and stay
as they are, less any credentials written into a URL.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

_PUBLIC_PREFIXES = ("hf-hub:", "bundled:", "http://", "https://")


def public_name(name: str) -> str:
    """A dataset or file reference fit for a public card: local paths become their last component.

    >>> public_name("/home/me/data/cifar100"), public_name("ILSVRC/imagenet-1k")
    ('cifar100', 'ILSVRC/imagenet-1k')
    """
    if os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name) or "\\" in name:
        return Path(name.replace("\\", "/")).name or name
    return name


def public_source(source: str | None) -> str | None:
    """Where weights came from, for a public repo: ``local:<name>`` for files on this machine.

    >>> public_source("/home/me/runs/ckpt.pth"), public_source("hf-hub:timm/vit_base_patch16_224.mae")
    ('local:ckpt.pth', 'hf-hub:timm/vit_base_patch16_224.mae')
    """
    if source is not None and source.startswith(("http://", "https://")):
        return public_url(source)
    if source is None or source.startswith(_PUBLIC_PREFIXES) or source == "random init":
        return source
    if "/" not in source and "\\" not in source and not os.path.exists(source):
        return source  # a zoo name
    return f"local:{Path(source.replace(chr(92), '/')).name}"


def public_url(url: str) -> str:
    """A URL weight source fit for a public card: any ``user:password@`` part is dropped.

    >>> public_url("https://me:secret@example.org/w.pth?x=1")
    'https://example.org/w.pth?x=1'
    """
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def public_export_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """An export report (export.json) with the exporting machine's paths reduced to names."""
    out = dict(meta)
    prov = dict(out.get("provenance") or {})
    for key in ("model", "weights_source"):
        if isinstance(prov.get(key), str):
            prov[key] = public_source(prov[key])
    check = dict(out.get("verification") or {})
    if isinstance(check.get("data"), str):
        check["data"] = public_name(check["data"])
    return {**out, "provenance": prov, "verification": check}
