"""Weight sources that are a plain URL, served by a real HTTP server on 127.0.0.1, and bundled files
shipped by a third-party plugin package.

The plugin is a real installed distribution (tests/helpers.py make_distribution) whose tiny
variant declares URL-only sources on the test server; its checkpoints use the official MAE
pretrain layout (``{'model': state_dict, 'args': Namespace}`` saved with torch.save).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import pickle
import sys
import threading
from pathlib import Path

import pytest
import torch
from helpers import make_distribution

import mimzoo
import mimzoo.testing as mt
from mimzoo.errors import PluginError, WeightsError, WeightsNotAvailableError
from mimzoo.registry import WeightSource, get_registry, reset_registry
from mimzoo.weights.url_download import cache_name, cached_url_file, url_download

PLUGIN = """
import os
from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource
from mimzoo_mae.layouts import LAYOUTS

BASE = os.environ["URLW_BASE"]
KWARGS = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}
REF = Reference(linear_top1=50.0, epochs=10, source="made up for tests")


def variant(name, weights):
    return Variant(name=name, arch="vit_tiny_patch16_224", params_m=0.029, model_kwargs=KWARGS,
                   preprocess=Preprocess(input_size=(3, 32, 32)), weights=weights, layouts=LAYOUTS,
                   reference=REF, description="a third-party test model")


URL = variant("urlw-vit-tiny", (
    WeightSource("official", url=BASE + "/pretrain/urlw_tiny.pth", layout="timm"),
    WeightSource("checked", url=BASE + "/pretrain/urlw_tiny.pth?copy=2", sha256=os.environ["URLW_SHA"]),
    WeightSource("missing", url=BASE + "/pretrain/gone.pth"),
    WeightSource("evil", url=BASE + "/pretrain/evil.pth"),
))
BUNDLED = variant("urlw-vit-bundled", (WeightSource("bundled", bundled="weights/urlw_tiny.safetensors"),))
METHOD = Method(
    name="urlw", title="UrlW", paper=Paper(title="URL weights", arxiv="2401.00002", year=2024, authors="Doe"),
    family="reconstruction",
    taxonomy=Taxonomy(masking="random-patch", target="pixels", objective="mse", architecture="ViT",
                      encoder_input="visible", survey_nodes=("masking",)),
    license="apache-2.0", variants=(URL, BUNDLED),
)
"""


class _RunsCode:
    """Unpickling this would call os.system: what a malicious checkpoint does."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Server:
    """A real HTTP server on 127.0.0.1 serving `files` (URL path -> bytes); counts the requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        self.redirects: dict[str, str] = {}  # URL path -> Location of a 302
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's API
                server.requests.append(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b"not found"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _official_bytes(tmp: Path, sd: dict[str, torch.Tensor]) -> bytes:
    """`sd` saved as the official MAE pretrain files are: {'model': ..., 'args': Namespace}."""
    path = tmp / "official.pth"
    torch.save({"model": sd, "args": argparse.Namespace(model="vit_tiny"), "epoch": 9}, path)
    return path.read_bytes()


@pytest.fixture
def world(tmp_path, monkeypatch):
    """The test server, the installed plugin pointing at it, and an empty mimzoo cache.

    Only the plugin's own module is forgotten afterwards (conftest's fresh_registry would also drop
    modules first imported here, such as sympy, and a second copy of those breaks later tests)."""
    torch.manual_seed(0)
    reference = mimzoo.load("mae-vit-test", pretrained=False)  # same architecture as urlw-vit-tiny
    sd = {k: v.clone() for k, v in reference.model.state_dict().items()}
    good = _official_bytes(tmp_path, sd)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_RunsCode(str(marker)), protocol=2)
    server = Server({"/pretrain/urlw_tiny.pth": good, "/pretrain/evil.pth": evil})
    root = make_distribution(tmp_path / "site", "urlw-mim", "0.1", {"urlw": "urlw_mim:METHOD"}, {"urlw_mim": PLUGIN})
    monkeypatch.setenv("URLW_BASE", server.url)
    monkeypatch.setenv("URLW_SHA", hashlib.sha256(good).hexdigest())
    monkeypatch.setenv("MIMZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.syspath_prepend(str(root))
    reset_registry()  # built above by the reference load, before the plugin was on the path
    yield {"server": server, "reference": reference, "sd": sd, "cache": tmp_path / "cache" / "weights",
           "marker": marker, "root": root}
    server.stop()
    sys.modules.pop("urlw_mim", None)
    reset_registry()


def _cached(world) -> list[str]:
    cache = world["cache"]
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_url_source_downloads_loads_identically_and_is_cached(world):
    enc = mimzoo.load("urlw-vit-tiny")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(enc(x), world["reference"](x))
    for k, v in world["sd"].items():
        assert torch.equal(enc.model.state_dict()[k], v), k
    report = enc.info.weights
    assert report.source == world["server"].url + "/pretrain/urlw_tiny.pth" and report.layout == "timm"
    assert _cached(world) == [cache_name(report.source)]  # no temp file left beside it
    world["server"].stop()  # the second load must not need the network
    again = mimzoo.load("urlw-vit-tiny")
    with torch.no_grad():
        assert torch.equal(again(x), enc(x))
    assert world["server"].requests == ["/pretrain/urlw_tiny.pth"]


def test_declared_sha256_is_verified(world):
    enc = mimzoo.load("urlw-vit-tiny", weights="checked")
    assert enc.info.weights.sha256 == os.environ["URLW_SHA"]
    url = world["server"].url + "/pretrain/urlw_tiny.pth?copy=3"
    with pytest.raises(WeightsError) as e:
        url_download(url, sha256="0" * 64)
    msg = str(e.value)
    assert url in msg and "0" * 64 in msg and os.environ["URLW_SHA"] in msg and "\n" not in msg
    assert not cached_url_file(url).exists() and len(_cached(world)) == 1  # only the good copy
    # a cached copy that does not match (replaced upstream, or a wrong declaration) is removed too
    checked = world["server"].url + "/pretrain/urlw_tiny.pth?copy=2"
    assert cached_url_file(checked).is_file()
    with pytest.raises(WeightsError, match="expected 1111"):
        url_download(checked, sha256="1" * 64)
    assert not cached_url_file(checked).exists()


def test_offline_and_not_cached_is_one_line_naming_weights_path(world, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = world["server"].url + "/pretrain/urlw_tiny.pth"
    with pytest.raises(WeightsNotAvailableError) as e:
        mimzoo.load("urlw-vit-tiny")
    msg = str(e.value)
    assert "\n" not in msg and "offline mode is on" in msg and f"pass weights=PATH to a local copy of {url}" in msg
    assert world["server"].requests == [] and _cached(world) == []


def test_unreachable_server_is_the_same_error(world):
    world["server"].stop()
    with pytest.raises(WeightsNotAvailableError, match=r"server is unreachable.*weights=PATH"):
        mimzoo.load("urlw-vit-tiny")
    assert _cached(world) == []


def test_http_404_is_a_clear_error(world):
    with pytest.raises(WeightsError) as e:
        mimzoo.load("urlw-vit-tiny", weights="missing")
    msg = str(e.value)
    assert "HTTP 404" in msg and "/pretrain/gone.pth" in msg and "\n" not in msg
    assert _cached(world) == []


def test_url_path_cannot_escape_the_cache(world):
    raw = "/a/../../%2e%2e/..%2f..%2fetc/passwd"
    world["server"].files[raw] = b"x"
    path = url_download(world["server"].url + raw)
    assert world["server"].requests == [raw]
    assert path.parent == world["cache"] and path.name.endswith("-passwd") and path.read_bytes() == b"x"
    assert _cached(world) == [path.name]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.pth", "http:///x.pth"])
def test_only_http_urls(url, tmp_path):
    with pytest.raises(WeightsError, match="only http:// and https://"):
        url_download(url, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pickle_with_code_from_a_url_is_refused(world):
    with pytest.raises(WeightsError, match="refused to unpickle|cannot read"):
        mimzoo.load("urlw-vit-tiny", weights="evil")
    assert not world["marker"].exists()


def test_bundled_file_of_a_third_party_package_loads(world):
    from safetensors.torch import save_file

    (world["root"] / "weights").mkdir()
    save_file(world["sd"], str(world["root"] / "weights" / "urlw_tiny.safetensors"))
    enc = mimzoo.load("urlw-vit-bundled")
    assert enc.info.weights.source == "bundled:weights/urlw_tiny.safetensors"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(enc(x), world["reference"](x))
    assert world["server"].requests == []


def test_first_party_bundled_model_still_resolves_in_mimzoo(world):
    enc = mimzoo.load("mae-vit-digits")
    assert enc.info.weights.source == "bundled:assets/mae-vit-digits/model.safetensors"


def test_url_only_public_variant_passes_the_plugin_checks(world):
    entry = get_registry().model("urlw-vit-tiny")
    mt.check_variant_metadata(entry.method, entry.variant)
    mt.check_variant_metadata(entry.method, get_registry().model("urlw-vit-bundled").variant)


def test_contract_needs_a_place_and_safe_paths():
    with pytest.raises(PluginError, match="needs at least one of repo_id, url, bundled"):
        WeightSource("x").validate("acme/x")
    for bad in ("../x.safetensors", "/abs/x.safetensors", "a/../../x"):
        with pytest.raises(PluginError, match="relative path without"):
            WeightSource("x", bundled=bad).validate("acme/x")
    with pytest.raises(PluginError, match="only http:// and https://"):
        WeightSource("x", url="file:///etc/passwd").validate("acme/x")
    WeightSource("x", repo_id="acme/x").validate("acme/x")  # the Hub form stays valid


def test_redirects_are_followed_to_http_only(world):
    server = world["server"]
    server.redirects["/moved.pth"] = server.url + "/pretrain/urlw_tiny.pth"  # e.g. a CDN hop
    path = url_download(server.url + "/moved.pth")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == os.environ["URLW_SHA"]
    # urllib itself refuses file:// hops; mimzoo's handler refuses the ones urllib would follow (ftp://)
    refusals = {"file:///etc/passwd": "Redirection to url 'file:///etc/passwd' is not allowed",
                "ftp://127.0.0.1/x.pth": "only http:// and https://"}
    for i, (target, message) in enumerate(refusals.items()):
        server.redirects[f"/sneaky{i}.pth"] = target
        with pytest.raises(WeightsError, match=message):
            url_download(server.url + f"/sneaky{i}.pth")
    assert _cached(world) == [path.name]


def test_a_silent_server_times_out_after_hf_hub_download_timeout_and_is_named(tmp_path, monkeypatch):
    """A server that accepts the connection and never answers: the download ends after
    HF_HUB_DOWNLOAD_TIMEOUT (not 60 s or never), the error names the server and the variable, nothing is cached."""
    import socket
    import time

    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    held = []
    threading.Thread(target=lambda: held.append(sock.accept()[0]), daemon=True).start()
    host = f"127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    try:
        with pytest.raises(WeightsNotAvailableError) as e:
            url_download(f"http://{host}/ckpt.pth", cache_dir=tmp_path)
    finally:
        for c in held:
            c.close()
        sock.close()
    assert time.monotonic() - start < 10
    msg = str(e.value)
    assert f"the server {host} did not answer within 1 s (HF_HUB_DOWNLOAD_TIMEOUT" in msg and "weights=PATH" in msg
    assert list(tmp_path.iterdir()) == []
