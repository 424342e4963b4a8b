"""Fetching files from the Hugging Face Hub through huggingface_hub (its cache, revisions, offline mode).

huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once at import; pass ``endpoint=``
to talk to a private hub or a mirror after that. Every request has a timeout (see
:mod:`~mimzoo.weights.hub_client`): a file that is not cached gets one metadata request bounded by
``HF_HUB_ETAG_TIMEOUT``, and a Hub that does not answer, or answers 5xx, is reported as exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import HubFileNotFoundError, WeightsError, WeightsNotAvailableError
from .hub_client import endpoint_of, http_answer, hub, network_failure, timeout_s


def hub_cache_dir() -> str:
    """Where huggingface_hub keeps downloaded files (honours HF_HOME / HF_HUB_CACHE)."""
    return str(require("huggingface_hub.constants").HF_HUB_CACHE)


def is_offline() -> bool:
    return bool(require("huggingface_hub.constants").HF_HUB_OFFLINE)


def hub_download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    provide_hint: str = "",
) -> Path:
    """Download one file of a Hub model repo (or take it from the cache) and return its local path.

    Args:
        repo_id: ``org/name`` of the model repo.
        filename: path of the file inside the repo.
        revision: branch, tag or commit; None follows ``main``.
        endpoint: Hub URL, for private hubs and mirrors; None uses ``HF_ENDPOINT`` or huggingface.co.
        cache_dir: huggingface_hub cache to use; None uses its default.
        provide_hint: how to supply the file by hand, appended to the not-available error.
    """
    hf = hub()
    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    ctx = _Context(repo_id, filename, revision, where, endpoint_of(endpoint), str(cache_dir or hub_cache_dir()),
                   provide_hint or "pass weights=PATH to a local copy")
    bound = "HF_HUB_ETAG_TIMEOUT"  # the variable that bounds the request under way, named after a timeout
    try:
        if not is_offline() and not _is_cached(hf, repo_id, filename, revision, cache_dir):
            _first_contact(hf, ctx, endpoint)
        bound = "HF_HUB_DOWNLOAD_TIMEOUT"
        path = hf.hf_hub_download(
            repo_id, filename, revision=revision, endpoint=endpoint, cache_dir=cache_dir,
            etag_timeout=timeout_s("HF_HUB_ETAG_TIMEOUT"),
        )
    except WeightsError:
        raise
    except Exception as e:
        mapped = _translate(e, ctx, bound)
        if mapped is None:
            raise
        raise mapped from e
    return Path(path)


# what to do when the Hub cannot be reached (not offline): files already cached work without it
_OFFLINE_HINT = "to use files already in the Hugging Face cache without the network, set HF_HUB_OFFLINE=1"


@dataclass(frozen=True)
class _Context:
    """What an error message about one download names."""

    repo_id: str  # org/name
    filename: str  # file in the repo
    revision: str | None  # as asked
    where: str  # repo/file[@revision]
    server: str  # the Hub URL
    cache: str  # the huggingface_hub cache folder
    fix: str  # how to supply the file by hand


def _translate(e: Exception, ctx: _Context, bound: str) -> WeightsError | None:
    """The one-line error for a failed Hub download, or None for an exception that is not about the Hub."""
    errors = require("huggingface_hub.errors")
    where = ctx.where
    if isinstance(e, errors.HFValidationError):
        return WeightsError(f"invalid Hub repo id or revision in '{where}' ({e}); use 'org/name[@revision]'")
    if isinstance(e, errors.RepositoryNotFoundError):
        return WeightsError(f"Hub repo '{ctx.repo_id}' not found (or private: set HF_TOKEN); check the repo id")
    if isinstance(e, errors.RevisionNotFoundError):
        return WeightsError(f"revision '{ctx.revision}' not found in Hub repo '{ctx.repo_id}'; check the revision")
    if isinstance(e, errors.LocalEntryNotFoundError):  # offline, or the Hub failed, and the file is not cached
        if is_offline():
            return WeightsNotAvailableError(
                f"{where} is not in the Hugging Face cache at {ctx.cache} and HF_HUB_OFFLINE=1 is set (offline mode "
                f"is on); {ctx.fix}, or put the file in that cache: run `hf download {ctx.repo_id} {ctx.filename}"
                f"{' --revision ' + ctx.revision if ctx.revision else ''}` with HF_HUB_CACHE={ctx.cache} on a "
                "connected machine and copy the folder here (or unset HF_HUB_OFFLINE to download it)")
        return _failure(e, ctx, bound) or WeightsNotAvailableError(
            f"{where} is not in the Hugging Face cache at {ctx.cache} and the Hub at {ctx.server} is unreachable; "
            f"{ctx.fix}, or {_OFFLINE_HINT}")
    if isinstance(e, errors.EntryNotFoundError):
        return HubFileNotFoundError(f"file '{ctx.filename}' not found in Hub repo '{ctx.repo_id}'; check the file name")
    if isinstance(e, errors.HfHubHTTPError) and getattr(e.response, "status_code", None) == 401:
        return WeightsError(f"the Hub refused the token for {where} (401 Unauthorized); set HF_TOKEN to a valid "
                            "token (or unset it for public repos)")
    return _failure(e, ctx, bound)


def _failure(e: BaseException, ctx: _Context, bound: str) -> WeightsError | None:
    """A Hub that failed (5xx, 429), timed out, could not be reached, or answered another HTTP error."""
    failure = network_failure(e, ctx.server, bound)
    if failure is not None:
        return WeightsNotAvailableError(f"cannot download {ctx.where}: {failure}, or {ctx.fix}"
                                        + ("" if "HTTP" in failure else f"; {_OFFLINE_HINT}"))
    answer = http_answer(e)
    if answer is not None:  # a 4xx the client does not type (400, 403, 405, ...)
        return WeightsError(f"cannot download {ctx.where}: the Hub at {ctx.server} answered HTTP {answer[0]} "
                            f"({answer[1]}); check the repo id, revision and file name, and that {ctx.server} is a "
                            "Hugging Face Hub")
    return None


def _is_cached(hf: Any, repo_id: str, filename: str, revision: str | None, cache_dir: Any) -> bool:
    found = hf.try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    return isinstance(found, str)


def _first_contact(hf: Any, ctx: _Context, endpoint: str | None) -> None:
    """One metadata request, bounded by HF_HUB_ETAG_TIMEOUT and not retried, for a file that is not cached:
    a Hub that hangs or fails (5xx) is reported now, not after huggingface_hub's five 60-second retries.
    Its errors are raised as hf_hub_download's would be (the caller translates them)."""
    url = hf.hf_hub_url(ctx.repo_id, ctx.filename, revision=ctx.revision, endpoint=endpoint)
    hf.get_hf_file_metadata(url, timeout=timeout_s("HF_HUB_ETAG_TIMEOUT"), endpoint=endpoint, retry_on_errors=False)
