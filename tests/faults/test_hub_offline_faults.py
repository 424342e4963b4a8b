"""Fault trials for an offline or unreachable Hub: fail in seconds, each warning once, and a message that
fits the state.

- HF_HUB_OFFLINE unset, Hub unreachable: say the Hub cannot be reached and that HF_HUB_OFFLINE=1 uses
  what is already cached.
- HF_HUB_OFFLINE=1 set, file not cached: say where the cache is and how to get the file there, never
  "set HF_HUB_OFFLINE=1" (it is set).

The real huggingface_hub client runs in a fresh `mimzoo` process, against a closed port on 127.0.0.1 and
against the stand-in of tests/hub_standin.py (stopped after filling the cache). Elapsed times are only a
sanity bound against retry storms (the issue saw 25-31 s of retries), not a benchmark.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.trial import Outcome, expect_error, run
from tests.hub_standin import TOKEN, HubStandIn, client_env

TINY = "mae-vit-test"
EVAL = ("--subset", "20", "--eval-subset", "10", "-q", "--no-cache", "--device", "cpu")
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there, connections are refused at once
BOUND_S = 15  # generous: one bounded request takes well under a second here


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, bytes]:
    import mimzoo

    folder = tmp_path_factory.mktemp("models") / "tiny"
    mimzoo.load(TINY, pretrained=False).save_pretrained(folder)
    return {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}


def _env(home: Path, endpoint: str, *, offline: bool = False) -> dict[str, str]:
    env = client_env(str(home / "hf"), endpoint=endpoint, offline=offline, cache=str(home / "hf-cache"))
    env["MIMZOO_CACHE"] = str(home / "mimzoo")
    return env


def _timed(*args: str, home: Path, env: dict[str, str]) -> tuple[Outcome, float]:
    start = time.monotonic()
    out = run(*args, cwd=home, env=env, timeout=120)
    return out, time.monotonic() - start


def _each_warning_once(out: Outcome) -> None:
    warnings = [ln.strip() for ln in out.stderr.splitlines() if "warn" in ln.lower()]
    twice = [w for w, n in Counter(warnings).items() if n > 1]
    assert not twice, f"warnings printed more than once: {twice}\n{out.stderr}"


def test_closed_port_not_offline_says_unreachable_and_suggests_offline_mode(tmp_path):
    out, took = _timed("eval", "hf-hub:acme/tiny", *EVAL, home=tmp_path, env=_env(tmp_path, CLOSED))
    expect_error(out, says=(f"cannot reach the Hub at {CLOSED}", "acme/tiny/config.json"),
                 fix=("set HF_HUB_OFFLINE=1", "HF_ENDPOINT"))
    _each_warning_once(out)
    assert took < BOUND_S, f"took {took:.1f} s"


def test_zoo_weights_offline_not_cached_say_how_to_fill_the_cache(tmp_path):
    out, took = _timed("eval", "mae-vit-b", *EVAL, home=tmp_path, env=_env(tmp_path, CLOSED, offline=True))
    line = expect_error(out, says=("timm/vit_base_patch16_224.mae/model.safetensors is not in the Hugging Face "
                                   f"cache at {tmp_path / 'hf-cache'}", "HF_HUB_OFFLINE=1 is set"),
                        fix=("hf download timm/vit_base_patch16_224.mae model.safetensors",
                             f"HF_HUB_CACHE={tmp_path / 'hf-cache'}", "unset HF_HUB_OFFLINE"))
    assert "set HF_HUB_OFFLINE=1" not in line.replace("unset HF_HUB_OFFLINE", "")  # it is set already
    assert "unreachable" not in line and CLOSED not in line  # offline: the Hub was not asked
    _each_warning_once(out)
    assert took < BOUND_S, f"took {took:.1f} s"


def test_standin_cached_repo_works_without_the_hub_and_a_missing_one_fails_fast(tmp_path, model_files):
    with HubStandIn({TOKEN: ("acme",)}) as hub:
        hub.put("acme/tiny", model_files)
        url = hub.url
        out, _ = _timed("eval", "hf-hub:acme/tiny", *EVAL, home=tmp_path, env=_env(tmp_path, url))
        assert out.rc == 0, out.stderr
    # the stand-in is stopped: its port is closed now
    for offline in (False, True):
        out, took = _timed("eval", "hf-hub:acme/tiny", *EVAL, home=tmp_path, env=_env(tmp_path, url, offline=offline))
        assert out.rc == 0, out.stderr  # the cached snapshot serves, offline or not
        _each_warning_once(out)
        assert took < BOUND_S, f"cached load with the Hub gone took {took:.1f} s (offline={offline})"

    out, took = _timed("eval", "hf-hub:acme/other", *EVAL, home=tmp_path, env=_env(tmp_path, url))
    expect_error(out, says=(f"cannot reach the Hub at {url}",), fix=("set HF_HUB_OFFLINE=1",))
    assert took < BOUND_S

    out, took = _timed("eval", "hf-hub:acme/other", *EVAL, home=tmp_path, env=_env(tmp_path, url, offline=True))
    line = expect_error(out, says=("acme/other/config.json is not in the Hugging Face cache", "HF_HUB_OFFLINE=1 is set"),
                        fix=("hf download acme/other config.json",))
    assert "set HF_HUB_OFFLINE=1" not in line.replace("unset HF_HUB_OFFLINE", "") and url not in line
    _each_warning_once(out)
    assert took < BOUND_S


def test_url_weights_message_fits_the_offline_state(monkeypatch, tmp_path):
    """Weights from an official URL (mimzoo's own cache): the same rule as the Hub's."""
    from mimzoo.weights import url_download as ud

    url = "https://example.org/w/ckpt.pth"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = str(ud._not_available(url, tmp_path / "weights" / "x", "offline mode is on (HF_HUB_OFFLINE=1)"))
    assert "set HF_HUB_OFFLINE=1" not in offline and "MIMZOO_CACHE" in offline and "unset HF_HUB_OFFLINE" in offline
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(ud, "is_offline", lambda: False)
    online = str(ud._not_available(url, tmp_path / "weights" / "x", "the server is unreachable (refused)"))
    assert "set HF_HUB_OFFLINE=1" in online and f"pass weights=PATH to a local copy of {url}" in online
