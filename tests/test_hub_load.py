"""Published repos as other programs see them, each in a fresh interpreter (huggingface_hub reads
HF_ENDPOINT and HF_HUB_OFFLINE once at import): timm's own `hf-hub:` loader, mimzoo honouring
HF_ENDPOINT, reloading from the cache with the server stopped, and the `mimzoo publish` command.

The Hub is tests/hub_standin.py over real HTTP on 127.0.0.1, LFS uploads (HF_HUB_DISABLE_XET=1);
the Xet upload/download paths of the client are NOT covered by these tests.
"""

from __future__ import annotations

import json

import pytest
import torch
from hub_standin import NO_PROXY, TOKEN, HubStandIn, client_env, make_model_folder, make_onnx_export
from helpers import run_cli, run_py

import mimzoo


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A running stand-in holding acme/tiny-mae with two commits (weights a, then b) and an ONNX export."""
    import huggingface_hub.constants as constants

    root = tmp_path_factory.mktemp("hub-load")
    folder_a, enc_a = make_model_folder(root, "enc-a", seed=0)
    folder_b, enc_b = make_model_folder(root, "enc-b", seed=1)
    export = make_onnx_export(enc_a, folder_a, root / "export-a")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    torch.save(x, root / "x.pt")
    hub = HubStandIn({TOKEN: ("acme",)}).start()
    mp = pytest.MonkeyPatch()
    mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
    mp.setattr(constants, "HF_HUB_OFFLINE", False)
    mp.setenv("NO_PROXY", NO_PROXY)
    mp.setattr(constants, "HF_TOKEN_PATH", str(root / "no-login" / "token"))  # not the machine's login
    mp.delenv("HF_TOKEN", raising=False)
    first = mimzoo.publish(str(folder_a), "acme/tiny-mae", endpoint=hub.url, token=TOKEN)
    second = mimzoo.publish(str(folder_b), "acme/tiny-mae", endpoint=hub.url, token=TOKEN)
    with torch.no_grad():
        ya, yb = enc_a(x), enc_b(x)
    yield {"hub": hub, "root": root, "first": first, "second": second, "ya": ya, "yb": yb, "x": root / "x.pt",
           "folder_a": folder_a, "folder_b": folder_b, "export": export}
    mp.undo()
    hub.stop()


def test_timm_and_mimzoo_load_through_hf_endpoint(published, tmp_path):
    """timm.create_model('hf-hub:...') reads a mimzoo repo; both honour HF_ENDPOINT set before import."""
    code = f"""
        import torch, timm, mimzoo
        x = torch.load({str(published["x"])!r}, weights_only=True)
        with torch.no_grad():
            plain = timm.create_model("hf-hub:acme/tiny-mae", pretrained=True).eval()
            ours = mimzoo.load("hf-hub:acme/tiny-mae")
            old = mimzoo.load("hf-hub:acme/tiny-mae@{published["first"].commit}")
            torch.save([plain(x), ours(x), old(x)], {str(tmp_path / "y.pt")!r})
        print(type(plain).__name__, plain.num_classes, plain.pretrained_cfg["hf_hub_id"])
    """
    env = client_env(str(tmp_path / "home"), token=None, endpoint=published["hub"].url, cache=str(tmp_path / "cache"))
    r = run_py(code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["VisionTransformer", "0", "acme/tiny-mae"]
    plain, ours, old = torch.load(tmp_path / "y.pt")
    assert torch.allclose(plain, published["yb"], atol=1e-6)  # timm pools exactly as the encoder does
    assert torch.equal(ours, published["yb"]) and torch.equal(old, published["ya"])


def test_reload_from_cache_with_the_server_stopped(published, tmp_path):
    """Fill a cache over HTTP, stop the server, and load again offline: latest, pinned, and a miss."""
    cache = tmp_path / "cache"
    with HubStandIn({TOKEN: ("acme",)}) as hub:  # its own server, to stop
        url = hub.url
        first = mimzoo.publish(str(published["folder_a"]), "acme/tiny-mae", endpoint=url, token=TOKEN).commit
        mimzoo.publish(str(published["folder_b"]), "acme/tiny-mae", endpoint=url, token=TOKEN)
        for name in ("hf-hub:acme/tiny-mae", f"hf-hub:acme/tiny-mae@{first}"):
            mimzoo.load(name, endpoint=url, cache_dir=cache)
    code = f"""
        import torch, mimzoo
        from mimzoo.errors import WeightsNotAvailableError
        x = torch.load({str(published["x"])!r}, weights_only=True)
        with torch.no_grad():
            torch.save([mimzoo.load("hf-hub:acme/tiny-mae")(x), mimzoo.load("hf-hub:acme/tiny-mae@{first}")(x)],
                       {str(tmp_path / "y.pt")!r})
        try:
            mimzoo.load("hf-hub:acme/never-downloaded")
        except WeightsNotAvailableError as e:
            print(e)
    """
    r = run_py(code, env=client_env(str(tmp_path / "home"), endpoint=url, offline=True, cache=str(cache)))
    assert r.returncode == 0, r.stderr
    latest, pinned = torch.load(tmp_path / "y.pt")
    assert torch.equal(latest, published["yb"]) and torch.equal(pinned, published["ya"])
    assert "acme/never-downloaded/config.json is not in the Hugging Face cache" in r.stdout
    assert "offline mode is on" in r.stdout
    # not offline, but the server is gone: the client falls back to the cached snapshot of main
    with torch.no_grad():
        again = mimzoo.load("hf-hub:acme/tiny-mae", endpoint=url, cache_dir=cache)(torch.load(published["x"]))
    assert torch.equal(again, published["yb"])


@pytest.fixture
def cli_hub():
    with HubStandIn({TOKEN: ("acme",)}) as hub:
        yield hub


def test_cli_publish_prints_no_token(published, cli_hub, tmp_path):
    """`mimzoo -v publish` as a user runs it (Hub from HF_ENDPOINT, token from HF_TOKEN): table and commit on
    stdout, progress and logs on stderr, the token nowhere."""
    results = tmp_path / "eval.json"
    results.write_text(json.dumps([{"model": str(published["folder_a"]), "task": "linear", "dataset": "digits",
                                    "split": "test", "metrics": {"top1": 93.25}, "config": {}, "mimzoo_version": "0.1.0"}]))
    out = tmp_path / "kept"
    env = client_env(str(tmp_path / "home"), cache=str(tmp_path / "cache"), endpoint=cli_hub.url)  # HF_ENDPOINT
    r = run_cli("-v", "publish", str(published["export"]), "--repo", "acme/cli-mae",
                "--eval-results", str(results), "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["file", "size", "sha256"]
    assert any(line.startswith("onnx/fp32/model.onnx.data ") for line in lines)
    assert "license: cc-by-nc-4.0 (non-commercial; stated at the top of the model card)" in r.stdout
    commit = cli_hub.head("acme/cli-mae")
    assert f"published {cli_hub.url}/acme/cli-mae at {commit}" in r.stdout
    assert "uploading 6 files" in r.stderr and "INFO" in r.stderr  # progress and -v logging
    kept = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    remote = cli_hub.files("acme/cli-mae")
    assert all(TOKEN not in t for t in (r.stdout, r.stderr))
    assert all(TOKEN.encode() not in b for b in [*kept.values(), *remote.values()])
    assert b"93.25" in remote["README.md"]


def test_cli_errors_are_one_line(published, cli_hub, tmp_path):
    env = client_env(str(tmp_path / "home"), token=None)
    r = run_cli("publish", str(published["folder_a"]), "--repo", "acme/../etc", "--dry-run", "-o", str(tmp_path / "o"),
                env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: 'acme/../etc' is not a Hub repo id; use 'org/name'")
    r = run_cli("publish", str(published["folder_a"]), "--repo", "acme/cli-mae", "--endpoint", cli_hub.url, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not create the repo (the Hub at") and "set HF_TOKEN" in last
    assert f"re-run: mimzoo publish {published['folder_a']} --repo acme/cli-mae --endpoint {cli_hub.url}" in last
