"""Checking the names that travel to the Hub: repo ids, revisions, and file paths inside a repo.

Everything a user or a file on disk supplies is checked here before it becomes part of a URL or of
a path on someone's disk (the Hugging Face cache lays repo files out under their repo paths).
"""

from __future__ import annotations

import re

from ..errors import MimzooError

# the Hub's rules: letters, digits, '-', '_', '.'; no '--' or '..'; '-' and '.' neither first nor last
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")
# a branch name git and the Hub both accept (a subset of git's check-ref-format)
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+/-]{0,199}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# one segment of a file path in a repo: no hidden files, no shell or URL specials
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}$")


class RepoIdError(MimzooError):
    """A repo id, revision or repo file path is not acceptable."""


def validate_repo_id(repo_id: str) -> str:
    """Check a Hub model repo id of the form ``org/name`` and return it.

    Args:
        repo_id: e.g. ``"mimzoo/mae-vit-b"``; the namespace is required.

    >>> validate_repo_id("mimzoo/mae-vit-b")
    'mimzoo/mae-vit-b'
    """
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    ok = len(parts) == 2 and all(_NAME.match(p) and "--" not in p and ".." not in p for p in parts)
    if not ok or repo_id.endswith(".git"):
        raise RepoIdError(
            f"{repo_id!r} is not a Hub repo id; use 'org/name' (letters, digits, '-', '_', '.'; "
            "no '..' or '--'; at most 96 characters each)"
        )
    return repo_id


def validate_branch(revision: str) -> str:
    """Check a branch name to publish to (a commit id is not a place to commit) and return it.

    >>> validate_branch("v1.0")
    'v1.0'
    """
    bad = (
        not isinstance(revision, str) or not _BRANCH.match(revision) or ".." in revision or "//" in revision
        or revision.endswith(("/", ".", ".lock")) or "@{" in revision
    )
    if bad:
        raise RepoIdError(f"{revision!r} is not a valid branch name; use letters, digits and '._-/', like 'main' or 'v1'")
    if _COMMIT.match(revision):
        raise RepoIdError(f"'{revision}' is a commit id; publish to a branch name such as 'main' or 'v1'")
    return revision


def validate_repo_path(path: str) -> str:
    """Check a file path inside a repo: relative, '/'-separated, no '..', no hidden or odd names.

    Args:
        path: e.g. ``"onnx/fp32/model.onnx"``.

    >>> validate_repo_path("onnx/fp32/model.onnx")
    'onnx/fp32/model.onnx'
    """
    parts = path.split("/") if isinstance(path, str) else [""]
    if not all(_SEGMENT.match(p) for p in parts) or len(parts) > 8:
        raise RepoIdError(
            f"{path!r} is not an acceptable file path in a repo; use relative '/'-separated names of "
            "letters, digits and '._+-' (no '..', no absolute paths, no hidden files)"
        )
    return path
