"""Fetching files from the Hugging Face Hub through huggingface_hub (its cache, revisions, offline mode).

huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once at import; pass ``endpoint=``
to talk to a private hub or a mirror after that. Every request has a timeout (see
:mod:`~mimzoo.weights.hub_client`): a file that is not cached gets one metadata request bounded by
``HF_HUB_ETAG_TIMEOUT``, and a Hub that does not answer, or answers 5xx, is reported as exactly that.
"""

from __future__ import annotations

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
    errors = require("huggingface_hub.errors")
    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    fix = provide_hint or "pass weights=PATH to a local copy"
    if not is_offline() and not _is_cached(hf, repo_id, filename, revision, cache_dir):
        _first_contact(hf, repo_id, filename, revision, endpoint, where, fix)
    try:
        path = hf.hf_hub_download(
            repo_id, filename, revision=revision, endpoint=endpoint, cache_dir=cache_dir,
            etag_timeout=timeout_s("HF_HUB_ETAG_TIMEOUT"),
        )
    except errors.HFValidationError as e:
        raise WeightsError(f"invalid Hub repo id or revision in '{where}' ({e}); use 'org/name[@revision]'") from e
    except errors.RepositoryNotFoundError as e:
        raise WeightsError(f"Hub repo '{repo_id}' not found (or private: set HF_TOKEN); check the repo id") from e
    except errors.RevisionNotFoundError as e:
        raise WeightsError(f"revision '{revision}' not found in Hub repo '{repo_id}'; check the revision") from e
    except errors.LocalEntryNotFoundError as e:
        # offline (HF_HUB_OFFLINE=1), unreachable, timed out or failing, and not in the cache
        cache = cache_dir or hub_cache_dir()
        server = endpoint_of(endpoint)
        failure = None if is_offline() else network_failure(e, server, "HF_HUB_DOWNLOAD_TIMEOUT")
        if failure is not None:
            raise WeightsNotAvailableError(f"cannot download {where}: {failure}, or {fix}") from e
        answer = None if is_offline() else http_answer(e)
        if answer is not None:  # a 4xx the client does not type (400, 403, 405, ...)
            raise WeightsError(f"cannot download {where}: the Hub at {server} answered HTTP {answer[0]} "
                               f"({answer[1]}); check the repo id, revision and file name, and that {server} "
                               "is a Hugging Face Hub") from e
        mode = "offline mode is on" if is_offline() else f"the Hub at {server} is unreachable"
        raise WeightsNotAvailableError(
            f"{where} is not in the Hugging Face cache ({cache}) and {mode}; "
            f"{fix}, or fill that cache on a connected machine and set HF_HUB_OFFLINE=1"
        ) from e
    except errors.EntryNotFoundError as e:
        raise HubFileNotFoundError(f"file '{filename}' not found in Hub repo '{repo_id}'; check the file name") from e
    except errors.HfHubHTTPError as e:
        if getattr(e.response, "status_code", None) == 401:  # a token was sent and refused
            raise WeightsError(f"the Hub refused the token for {where} (401 Unauthorized); set HF_TOKEN to a valid "
                               "token (or unset it for public repos)") from e
        raise WeightsError(f"Hub request for {where} failed ({str(e).splitlines()[0]}); retry or check access") from e
    except Exception as e:  # a timeout or transport error the client let through
        failure = network_failure(e, endpoint_of(endpoint), "HF_HUB_DOWNLOAD_TIMEOUT")
        if failure is None:
            raise
        raise WeightsNotAvailableError(f"cannot download {where}: {failure}, or {fix}") from e
    return Path(path)


def _is_cached(hf: Any, repo_id: str, filename: str, revision: str | None, cache_dir: Any) -> bool:
    found = hf.try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    return isinstance(found, str)


def _first_contact(hf: Any, repo_id: str, filename: str, revision: str | None, endpoint: str | None, where: str,
                   fix: str) -> None:
    """One metadata request, bounded by HF_HUB_ETAG_TIMEOUT and not retried, for a file that is not cached:
    a Hub that hangs or fails (5xx) is reported now, not after huggingface_hub's five 60-second retries.
    Answers that name the problem (404, 401, ...) are left to hf_hub_download, which raises them typed."""
    server = endpoint_of(endpoint)
    url = hf.hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        hf.get_hf_file_metadata(url, timeout=timeout_s("HF_HUB_ETAG_TIMEOUT"), endpoint=endpoint,
                                retry_on_errors=False)
    except Exception as e:  # noqa: BLE001 - classified below; anything else is left to hf_hub_download
        failure = network_failure(e, server)
        if failure is None:
            return
        raise WeightsNotAvailableError(f"cannot download {where}: {failure}, or {fix}") from e
