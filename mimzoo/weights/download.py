"""Fetching files from the Hugging Face Hub through huggingface_hub (its cache, revisions, offline mode).

huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once at import; pass ``endpoint=``
to talk to a private hub or a mirror after that.
"""

from __future__ import annotations

from pathlib import Path

from .._deps import require
from ..errors import HubFileNotFoundError, WeightsError, WeightsNotAvailableError


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
    hf = require("huggingface_hub")
    errors = require("huggingface_hub.errors")
    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    try:
        path = hf.hf_hub_download(
            repo_id, filename, revision=revision, endpoint=endpoint, cache_dir=cache_dir
        )
    except errors.HFValidationError as e:
        raise WeightsError(f"invalid Hub repo id or revision in '{where}' ({e}); use 'org/name[@revision]'") from e
    except errors.RepositoryNotFoundError as e:
        raise WeightsError(f"Hub repo '{repo_id}' not found (or private: set HF_TOKEN); check the repo id") from e
    except errors.RevisionNotFoundError as e:
        raise WeightsError(f"revision '{revision}' not found in Hub repo '{repo_id}'; check the revision") from e
    except errors.LocalEntryNotFoundError as e:
        # offline (HF_HUB_OFFLINE=1) or unreachable, and not in the cache
        cache = cache_dir or hub_cache_dir()
        mode = "offline mode is on" if is_offline() else "the Hub is unreachable"
        raise WeightsNotAvailableError(
            f"{where} is not in the Hugging Face cache ({cache}) and {mode}; "
            f"{provide_hint or 'pass weights=PATH to a local copy'}, or fill that cache on a connected "
            "machine and set HF_HUB_OFFLINE=1"
        ) from e
    except errors.EntryNotFoundError as e:
        raise HubFileNotFoundError(f"file '{filename}' not found in Hub repo '{repo_id}'; check the file name") from e
    except errors.HfHubHTTPError as e:
        if getattr(e.response, "status_code", None) == 401:  # a token was sent and refused
            raise WeightsError(f"the Hub refused the token for {where} (401 Unauthorized); set HF_TOKEN to a valid "
                               "token (or unset it for public repos)") from e
        raise WeightsError(f"Hub request for {where} failed ({str(e).splitlines()[0]}); retry or check access") from e
    return Path(path)
