"""Fetching weight files published only at a plain http(s) URL (a CDN, a GitHub release, a blob store).

Files land in mimzoo's own cache, ``$MIMZOO_CACHE/weights`` (else ``$XDG_CACHE_HOME/mimzoo/weights``,
else ``~/.cache/mimzoo/weights``), under a name made of a digest of the URL and the URL's sanitised
basename, so nothing in a URL can place a file outside that folder. A download streams into a
temporary file that is renamed into place only when complete (and, when an sha256 is declared,
verified). Offline mode (``HF_HUB_OFFLINE=1``, the switch mimzoo honours for the Hub too) serves
cached files only. Every network operation waits at most ``HF_HUB_DOWNLOAD_TIMEOUT`` seconds (30 by
default), the same bound as Hub downloads; a timeout names the server and that variable. Only the
standard library is used (urllib).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .._atomic import atomic_file
from ..errors import WeightsError, WeightsNotAvailableError
from .download import is_offline
from .hub_client import timeout_s
from .read import sha256_of

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # bytes read per step of a download
_PROGRESS_EVERY_S = 5.0  # seconds between progress log lines
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_TRUTHY = {"1", "ON", "YES", "TRUE"}


def weights_cache_dir() -> Path:
    """Where URL downloads are cached: ``$MIMZOO_CACHE/weights``, else ``~/.cache/mimzoo/weights``."""
    if os.environ.get("MIMZOO_CACHE"):
        return Path(os.environ["MIMZOO_CACHE"]).expanduser() / "weights"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mimzoo" / "weights"


def cache_name(url: str) -> str:
    """The cache file name of `url`: 16 hex digits of its sha256, then its basename made safe.

    >>> cache_name("https://example.org/a/../ckpt%20v1.pth")[16:]
    '-ckpt_v1.pth'
    """
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    base = urllib.parse.unquote(urllib.parse.urlsplit(url).path).replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE_CHARS.sub("_", base).lstrip(".")[-100:] or "weights"
    return f"{digest}-{base}"


def cached_url_file(url: str, cache_dir: str | Path | None = None) -> Path:
    """The path `url` is (or would be) cached at; it always lies directly inside the cache folder."""
    root = Path(cache_dir) if cache_dir is not None else weights_cache_dir()
    path = root / cache_name(url)
    if path.resolve().parent != root.resolve():  # cannot happen with cache_name; kept as a guard
        raise WeightsError(f"refused to cache {url} outside {root}; report this URL as a mimzoo bug")
    return path


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE is set now or was set when huggingface_hub was imported."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUTHY or is_offline()


def url_download(
    url: str,
    *,
    sha256: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> Path:
    """Download `url` into mimzoo's weights cache (or reuse the cached copy) and return its local path.

    Args:
        url: an ``http://`` or ``https://`` URL.
        sha256: expected hex digest; a mismatching file is removed and an error names both digests.
        cache_dir: cache folder to use; None uses :func:`weights_cache_dir`.
        timeout: seconds to wait for the server to answer (per network operation); None reads
            ``HF_HUB_DOWNLOAD_TIMEOUT`` (default 30).

    Raises:
        WeightsNotAvailableError: not cached, and offline mode is on or the server cannot be reached.
        WeightsError: bad URL scheme, HTTP error status, truncated transfer or sha256 mismatch.

    >>> path = url_download("https://dl.fbaipublicfiles.com/ijepa/IN1K-vit.h.14-300e.pth.tar")  # doctest: +SKIP
    """
    check_url(url)
    path = cached_url_file(url, cache_dir)
    if path.is_file():
        log.info("using cached %s for %s", path, url)
        if sha256 is not None:
            _check_digest(path, url, sha256_of(path), sha256)
        return path
    if offline_mode():
        raise _not_available(url, path.parent, "offline mode is on (HF_HUB_OFFLINE=1)")
    _fetch(url, path, sha256, timeout if timeout is not None else timeout_s("HF_HUB_DOWNLOAD_TIMEOUT"))
    return path


def check_url(url: str) -> None:
    """Refuse anything but an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise WeightsError(f"cannot download '{url}': only http:// and https:// URLs are supported")


def _not_available(url: str, cache: Path, why: str) -> WeightsNotAvailableError:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1] or url
    if offline_mode():  # already offline: say how to get the file into the cache, not to turn offline on
        fill = (f"or put it in that cache: load it once on a connected machine with MIMZOO_CACHE pointing to a "
                f"copy of {cache.parent}, and copy that folder here (or unset HF_HUB_OFFLINE to download it)")
    else:
        fill = "or, to use files already in that cache without the network, set HF_HUB_OFFLINE=1"
    return WeightsNotAvailableError(
        f"{name} is not in the mimzoo weights cache ({cache}) and {why}; pass weights=PATH to a local copy of "
        f"{url}, {fill}"
    )


def _check_digest(path: Path, url: str, digest: str, expected: str) -> None:
    if digest != expected.lower():
        path.unlink(missing_ok=True)
        raise WeightsError(
            f"{url} has sha256 {digest}, expected {expected.lower()}; the file is corrupt or was replaced "
            "upstream, and was removed from the cache: retry, or check the declared sha256"
        )


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 - urllib's API
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, timeout: float, cache: Path):  # noqa: ANN202 - an http.client.HTTPResponse
    from .._version import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"mimzoo/{__version__}"})
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise WeightsError(
            f"{url} answered HTTP {e.code} {e.reason}; check the URL, or pass weights=PATH to a local copy"
        ) from e
    except (urllib.error.URLError, OSError) as e:  # DNS failure, refused connection, timeout: no network
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
            raise _not_available(url, cache, _silent(url, timeout)) from e
        raise _not_available(url, cache, f"the server is unreachable ({reason})") from e


def _silent(url: str, timeout: float) -> str:
    host = urllib.parse.urlsplit(url).netloc
    return (f"the server {host} did not answer within {timeout:g} s (HF_HUB_DOWNLOAD_TIMEOUT; raise it if "
            "the server is only slow)")


def _fetch(url: str, path: Path, sha256: str | None, timeout: float) -> None:
    """Stream `url` into a temporary file beside `path`, check it, then rename it into place."""
    with _open(url, timeout, path.parent) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        log.info("downloading %s%s to %s", url, f" ({total / 2**20:.1f} MiB)" if total else "", path)
        h, done, last = hashlib.sha256(), 0, time.monotonic()
        with atomic_file(path) as tmp:
            with tmp.open("wb") as f:
                while block := _read(response, url, timeout):
                    f.write(block)
                    h.update(block)
                    done += len(block)
                    if time.monotonic() - last >= _PROGRESS_EVERY_S:
                        last = time.monotonic()
                        log.info("downloading %s: %s", url, _progress(done, total))
            if total is not None and done != total:
                raise WeightsError(f"download of {url} stopped after {done} of {total} bytes; retry")
            if sha256 is not None:
                _check_digest(tmp, url, h.hexdigest(), sha256)
    log.info("downloaded %s (%s)", url, _progress(done, total))


def _read(response, url: str, timeout: float) -> bytes:  # noqa: ANN001 - an http.client.HTTPResponse
    try:
        return response.read(_CHUNK)
    except TimeoutError as e:
        raise WeightsError(f"download of {url} stalled: {_silent(url, timeout)}; retry") from e
    except (OSError, http.client.HTTPException) as e:  # connection reset, timed out, bad chunking
        raise WeightsError(f"download of {url} failed mid-transfer ({e}); retry") from e


def _progress(done: int, total: int | None) -> str:
    if total:
        return f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB ({100 * done / total:.0f}%)"
    return f"{done / 2**20:.1f} MiB"
