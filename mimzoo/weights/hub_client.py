"""The huggingface_hub client as mimzoo uses it: every request with a timeout, every failure named.

huggingface_hub's shared HTTP client has no timeout of its own (its HfApi calls wait for ever on a
server that accepts a connection and never answers), and its downloads retry a failed metadata call
five times at 60 s each. mimzoo gives each network call one bounded try:

- ``HF_HUB_ETAG_TIMEOUT`` (default 10 s): connecting, and a file's metadata (HEAD) request;
- ``HF_HUB_DOWNLOAD_TIMEOUT`` (default 30 s): waiting for data while downloading or uploading, and
  every API call (create repo, commit, ...).

huggingface_hub reads both variables once, at import; mimzoo reads them at each call, and fills in its
defaults before huggingface_hub is first imported.
"""

from __future__ import annotations

import os
from typing import Any

from .._deps import require
from ..errors import MimzooError

ETAG_TIMEOUT_S = 10.0  # default of HF_HUB_ETAG_TIMEOUT
DOWNLOAD_TIMEOUT_S = 30.0  # default of HF_HUB_DOWNLOAD_TIMEOUT


def timeout_s(variable: str) -> float:
    """Seconds from `variable` (HF_HUB_ETAG_TIMEOUT or HF_HUB_DOWNLOAD_TIMEOUT), else mimzoo's default."""
    default = ETAG_TIMEOUT_S if variable == "HF_HUB_ETAG_TIMEOUT" else DOWNLOAD_TIMEOUT_S
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)  # huggingface_hub itself takes whole seconds only (it fails at import otherwise)
    except ValueError:
        value = 0
    if value <= 0:
        raise MimzooError(f"{variable}={raw!r} is not a whole number of seconds; set it to e.g. {default:g} "
                          "(or unset it)")
    return float(value)


def hub() -> Any:
    """The huggingface_hub module, its shared HTTP client given mimzoo's timeouts when it has none."""
    for variable, default in (("HF_HUB_ETAG_TIMEOUT", ETAG_TIMEOUT_S), ("HF_HUB_DOWNLOAD_TIMEOUT", DOWNLOAD_TIMEOUT_S)):
        timeout_s(variable)  # a bad value is one line naming the variable, before huggingface_hub trips on it
        os.environ.setdefault(variable, f"{default:g}")  # read by huggingface_hub at its first import only
    hf = require("huggingface_hub")
    httpx = require("httpx2")
    client = hf.get_session()
    t = client.timeout
    if (t.connect, t.read, t.write, t.pool) == (None, None, None, None):  # never set (its default): ours
        io = timeout_s("HF_HUB_DOWNLOAD_TIMEOUT")
        client.timeout = httpx.Timeout(io, connect=timeout_s("HF_HUB_ETAG_TIMEOUT"))
    return hf


def endpoint_of(endpoint: str | None) -> str:
    """The Hub URL a call goes to: `endpoint`, else HF_ENDPOINT as huggingface_hub read it."""
    return (endpoint or require("huggingface_hub.constants").ENDPOINT).rstrip("/")


def http_answer(e: BaseException | None) -> tuple[int, str] | None:
    """(HTTP status, the server's first line) of the answer behind `e` or a cause of it, if any."""
    seen = 0
    while e is not None and seen < 8:
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            said = getattr(response, "headers", {}).get("X-Error-Message") or str(e)
            return status, next((ln.strip() for ln in said.splitlines() if ln.strip()), "")[:200]
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def network_failure(e: BaseException | None, server: str, timeout_var: str = "HF_HUB_ETAG_TIMEOUT") -> str | None:
    """What went wrong talking to `server` and what to do, when `e` (or an exception it was raised from)
    is a timeout, a failed connection or an HTTP 5xx/429 answer; None for anything else.

    Args:
        e: the exception.
        server: the Hub URL, named in the message.
        timeout_var: the variable that bounded the call that timed out (connecting: HF_HUB_ETAG_TIMEOUT).
    """
    httpx = require("httpx2")
    seen = 0
    while e is not None and seen < 8:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int) and (status >= 500 or status == 429):
            busy = "is rate-limiting requests" if status == 429 else "is failing, not your request"
            return f"the Hub at {server} answered HTTP {status} (it {busy}); try again later"
        if isinstance(e, httpx.TimeoutException):
            var = "HF_HUB_ETAG_TIMEOUT" if isinstance(e, httpx.ConnectTimeout) else timeout_var
            return (f"the Hub at {server} did not answer within {timeout_s(var):g} s ({var}); check that server, "
                    f"or raise {var} if it is only slow")
        if isinstance(e, (httpx.ConnectError, httpx.ProxyError)):
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            return f"cannot reach the Hub at {server} ({why}); check the network, HF_ENDPOINT or --endpoint, and proxies"
        if isinstance(e, httpx.TransportError):
            return f"the connection to the Hub at {server} failed ({type(e).__name__}); try again"
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None
