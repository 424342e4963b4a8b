"""Fault trials against a Hub: failing answers, silence, bad configs, and a publish killed mid-upload.

The Hub is the stand-in of tests/hub_standin.py (a real HTTP server on 127.0.0.1 for the real client),
or a socket that accepts connections and never answers. Every trial runs the real `mimzoo` CLI in a
fresh process and asserts the exit code, one `error:` line that names the server and the fix, no
traceback, and how long it took: a Hub that fails must not cost minutes of retries.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.faults.trial import expect_error, kill_when, listing, run
from tests.hub_standin import TOKEN, HubStandIn, client_env

TINY = "mae-vit-test"
EVAL = ("--subset", "20", "--eval-subset", "10", "-q", "--no-cache")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, bytes]:
    import mimzoo

    folder = tmp_path_factory.mktemp("models") / "tiny"
    mimzoo.load(TINY, pretrained=False).save_pretrained(folder)
    return {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}


@pytest.fixture
def hub(model_files):
    with HubStandIn({TOKEN: ("acme",)}) as h:
        h.put("acme/tiny", model_files)
        yield h


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "cache").mkdir()
    return tmp_path


def hub_env(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = client_env(str(home / "cache" / "hf"), endpoint=endpoint)
    env.update(extra)
    return env


def timed_run(*args: str, home: Path, env: dict[str, str]):
    start = time.monotonic()
    out = run(*args, cwd=home, env={**env, "MIMZOO_CACHE": str(home / "cache" / "mimzoo")}, timeout=120)
    return out, time.monotonic() - start


@contextlib.contextmanager
def silent_server():
    """A server on 127.0.0.1 that accepts every connection and never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        for c in held:
            c.close()
        sock.close()


def _resolves(hub: HubStandIn) -> int:
    return sum(1 for line in hub.log if "/resolve/" in line)


# -- downloads (mimzoo.load, through `mimzoo eval hf-hub:...`) -------------------------------------

@pytest.mark.parametrize("status", [500, 503])
def test_load_from_a_hub_answering_5xx_says_so_at_once(hub, home, status):
    hub.fail("resolve", status, times=20)
    out, took = timed_run("eval", "hf-hub:acme/tiny", *EVAL, home=home, env=hub_env(home, hub.url))
    expect_error(out, says=(f"the Hub at {hub.url} answered HTTP {status}", "acme/tiny/config.json"),
                 fix=("try again later",))
    assert "unreachable" not in out.stderr
    assert _resolves(hub) == 1 and took < 60  # one request, not five retries with back-off


def test_load_from_a_hub_answering_400_says_so(hub, home):
    hub.fail("resolve", 400, times=20)
    out, _ = timed_run("eval", "hf-hub:acme/tiny", *EVAL, home=home, env=hub_env(home, hub.url))
    expect_error(out, says=(f"the Hub at {hub.url} answered HTTP 400", "injected failure"),
                 fix=("check the repo id",))
    assert "unreachable" not in out.stderr


def test_load_from_a_hub_rate_limiting(hub, home):
    hub.fail("resolve", 429, times=20)
    out, _ = timed_run("eval", "hf-hub:acme/tiny", *EVAL, home=home, env=hub_env(home, hub.url))
    expect_error(out, says=("answered HTTP 429", "rate-limiting"), fix=("try again later",))


def test_load_from_a_silent_hub_times_out_in_seconds_and_names_the_variable(home):
    with silent_server() as url:
        out, took = timed_run("eval", "hf-hub:acme/tiny", *EVAL, home=home,
                              env=hub_env(home, url, HF_HUB_ETAG_TIMEOUT="1", HF_HUB_DOWNLOAD_TIMEOUT="7"))
    expect_error(out, says=(f"the Hub at {url} did not answer within 1 s (HF_HUB_ETAG_TIMEOUT)",),
                 fix=("raise HF_HUB_ETAG_TIMEOUT",))
    assert took < 30, f"took {took:.0f} s"


def test_load_from_a_closed_port_says_it_cannot_reach_the_hub(home):
    out, took = timed_run("eval", "hf-hub:acme/tiny", *EVAL, home=home, env=hub_env(home, "http://127.0.0.1:9"))
    expect_error(out, says=("cannot reach the Hub at http://127.0.0.1:9",), fix=("HF_ENDPOINT", "--endpoint"))
    assert took < 60


def test_a_bad_timeout_variable_is_refused(hub, home):
    out, _ = timed_run("eval", "hf-hub:acme/tiny", *EVAL, home=home,
                       env=hub_env(home, hub.url, HF_HUB_ETAG_TIMEOUT="soon"))
    expect_error(out, says=("HF_HUB_ETAG_TIMEOUT='soon' is not a whole number of seconds",), fix=("set it to e.g. 10",))


# -- configs in a Hub repo -------------------------------------------------------------------------

def _config(model_files: dict[str, bytes], **changes) -> bytes:
    cfg = json.loads(model_files["config.json"])
    for key, value in changes.items():
        if key == "std":
            cfg["pretrained_cfg"]["std"] = value
        else:
            cfg[key] = value
    return json.dumps(cfg).encode()


def test_an_unknown_architecture_blames_the_config(hub, home, model_files):
    hub.put("acme/odd", {**model_files, "config.json": _config(model_files, architecture="resnetz_9000")})
    out, _ = timed_run("eval", "hf-hub:acme/odd", *EVAL, home=home, env=hub_env(home, hub.url))
    line = expect_error(out, says=("config.json of hf-hub:acme/odd names architecture 'resnetz_9000'",
                                   "timm", "does not have"), fix=("fix 'architecture' in that config.json",))
    assert "upgrade timm" not in line  # no timm has a 'resnetz' family: upgrading would not help


def test_an_unknown_model_of_a_known_family_may_need_a_newer_timm(hub, home, model_files):
    hub.put("acme/newer", {**model_files, "config.json": _config(model_files, architecture="vit_base_patch16_2099")})
    out, _ = timed_run("eval", "hf-hub:acme/newer", *EVAL, home=home, env=hub_env(home, hub.url))
    expect_error(out, says=("config.json of hf-hub:acme/newer", "vit_base_patch16_2099"),
                 fix=("upgrade timm", "otherwise fix 'architecture'"))


def test_a_hub_config_with_nan_std_is_refused(hub, home, model_files):
    hub.put("acme/nan", {**model_files, "config.json": _config(model_files, std=[float("nan"), 0.2, 0.2])})
    out, _ = timed_run("eval", "hf-hub:acme/nan", *EVAL, home=home, env=hub_env(home, hub.url))
    expect_error(out, says=("config.json of hf-hub:acme/nan", "not finite"), fix=("fix pretrained_cfg.mean/std",))


# -- publishing ------------------------------------------------------------------------------------

@pytest.fixture
def local_model(home, model_files) -> Path:
    folder = home / "model"
    folder.mkdir()
    for name, data in model_files.items():
        (folder / name).write_bytes(data)
    return folder


def _publish(local_model: Path, endpoint: str, repo: str = "acme/new") -> tuple[str, ...]:
    return ("publish", str(local_model), "--repo", repo, "--endpoint", endpoint, "--license", "cc-by-nc-4.0")


@pytest.mark.parametrize("route", ["create-repo", "commit"])
def test_publish_to_a_hub_answering_500_says_so_and_commits_nothing(hub, home, local_model, route):
    hub.fail(route, 500, times=20)
    out, took = timed_run(*_publish(local_model, hub.url), home=home, env=hub_env(home, hub.url))
    expect_error(out, says=(f"the Hub at {hub.url} answered HTTP 500",), fix=("try again later", "re-run"))
    assert "acme/new" not in hub.repos or len(hub.history("acme/new")) == 1  # at most the repo's initial commit
    assert took < 60


def test_publish_to_a_silent_hub_times_out_in_seconds(home, local_model):
    with silent_server() as url:
        out, took = timed_run(*_publish(local_model, url), home=home,
                              env=hub_env(home, url, HF_HUB_ETAG_TIMEOUT="7", HF_HUB_DOWNLOAD_TIMEOUT="1"))
    expect_error(out, says=(f"the Hub at {url} did not answer within 1 s (HF_HUB_DOWNLOAD_TIMEOUT)",
                            "nothing was committed"), fix=("raise HF_HUB_DOWNLOAD_TIMEOUT",))
    assert took < 30, f"took {took:.0f} s"
    assert TOKEN not in out.stderr + out.stdout


def _tmp_publish_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mimzoo-publish-*")}


def test_publish_killed_mid_upload_leaves_no_copy_in_tmp_and_the_next_run_removes_its_stage(hub, home, local_model):
    env = {**hub_env(home, hub.url), "MIMZOO_CACHE": str(home / "cache" / "mimzoo")}
    staging = home / "cache" / "mimzoo" / "staging"
    in_tmp = _tmp_publish_folders()
    out = kill_when(list(_publish(local_model, hub.url)), marker="uploading", env=env, cwd=home)
    assert out.rc == -9, out.stdout
    assert _tmp_publish_folders() == in_tmp  # nothing of this model in the shared /tmp
    left = listing(staging)
    assert any(name.startswith(".publish.tmp-") for name in left), left  # the stage, in mimzoo's own cache
    assert "acme/new" not in hub.repos or set(hub.files("acme/new")) == {".gitattributes"}
    # the next publish (whoever runs it) removes the killed run's stage, then publishes and cleans its own
    again = run(*_publish(local_model, hub.url), cwd=home, env=env, timeout=120)
    assert again.rc == 0, again.stderr
    assert listing(staging) == set()
    assert {"config.json", "model.safetensors", "README.md"} <= set(hub.files("acme/new"))
