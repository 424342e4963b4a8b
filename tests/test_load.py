"""mimzoo.load: the encoder contract, dtype/device, img_size, model folders, and the Hub cache.

Hub tests run the real huggingface_hub client in a fresh interpreter with HF_HUB_OFFLINE=1 and a
cache folder filled in the client's own layout (models--org--name/{refs,snapshots}), because the
client reads HF_HUB_OFFLINE once at import. Downloads over HTTP are the Hub issue's stand-in server.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import make_distribution, run_py
from PIL import Image

import mimzoo
from mimzoo.errors import MimzooError, ModelFolderError, UnknownModelError, WeightsError


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return mimzoo.load("mae-vit-test", pretrained=False)


def test_encoder_contract(encoder):
    x = torch.randn(2, 3, 32, 32)
    assert not encoder.training
    assert encoder.num_features == 32
    assert encoder(x).shape == (2, 32)
    assert encoder.forward_features(x).shape == (2, 1 + 64, 32)  # class token first
    assert encoder.info.weights.source == "random init"
    # no masking at inference: the same input gives the same output
    assert torch.equal(encoder(x), encoder(x))


def test_transform_prepares_pil_images(encoder):
    rgb = Image.new("RGB", (50, 40), (255, 0, 0))
    grey = Image.new("L", (40, 40), 128)
    t = encoder.transform
    assert t(rgb).shape == t(grey).shape == (3, 32, 32)
    red = t(rgb)[0, 0, 0].item()
    assert red == pytest.approx((1.0 - 0.485) / 0.229, abs=1e-5)
    assert encoder.embed_images([rgb, grey]).shape == (2, 32)


def test_dtype_and_device():
    enc = mimzoo.load("mae-vit-test", pretrained=False, dtype="bf16", device="cpu")
    assert next(enc.parameters()).dtype == torch.bfloat16
    assert enc(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(MimzooError, match="unknown dtype 'fp8'; use one of fp32, fp16, bf16"):
        mimzoo.load("mae-vit-test", pretrained=False, dtype="fp8")


def test_img_size_changes_the_grid():
    enc = mimzoo.load("mae-vit-test", pretrained=False, img_size=48)
    assert enc.forward_features(torch.randn(1, 3, 48, 48)).shape == (1, 1 + 144, 32)
    assert enc.preprocess.input_size == (3, 48, 48)


def test_unknown_names():
    with pytest.raises(UnknownModelError, match=r"unknown model 'mae-vit-bb'; did you mean 'mae-vit-b'\?"):
        mimzoo.load("mae-vit-bb")
    with pytest.raises(WeightsError, match="'mae-vit-test' has no pretrained weights; pass pretrained=False"):
        mimzoo.load("mae-vit-test")
    with pytest.raises(ModelFolderError, match="no model folder at 'acme/models'; for a Hub repo use 'hf-hub:acme/models'"):
        mimzoo.load("acme/models")
    with pytest.raises(WeightsError, match=r"weights='hf' is neither a file nor a weight source of 'mae-vit-b' \(sources: timm, vis\)"):
        mimzoo.load("mae-vit-b", weights="hf")
    for bad in ("hf-hub:../../etc", "hf-hub:a/b/c", "hf-hub:org/name@", "hf-hub:org/name@../x"):
        with pytest.raises(MimzooError, match="hf-hub:org/name"):
            mimzoo.load(bad)


def test_folder_round_trip_and_timm_reads_it(encoder, tmp_path):
    import timm

    folder = encoder.save_pretrained(tmp_path / "enc")
    assert sorted(p.name for p in folder.iterdir()) == [".mimzoo-output.json", "config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["num_features"] == 32
    assert cfg["mimzoo"]["method"] == "mae" and cfg["mimzoo"]["license"] == "cc-by-nc-4.0"
    assert cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]
    x = torch.randn(2, 3, 32, 32)
    again = mimzoo.load(str(folder))
    assert torch.equal(again(x), encoder(x))
    assert torch.equal(again.forward_features(x), encoder.forward_features(x))
    assert again.info.variant == "mae-vit-test" and again.preprocess == encoder.preprocess
    with torch.no_grad():
        plain = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        assert torch.allclose(plain(x), encoder(x), atol=1e-6)
    bigger = mimzoo.load(f"local-dir:{folder}", img_size=64)
    assert bigger(torch.randn(1, 3, 64, 64)).shape == (1, 32)


def test_folder_save_is_atomic(encoder, tmp_path, monkeypatch):
    import timm.models

    target = tmp_path / "enc"
    encoder.save_pretrained(target)
    before = (target / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(timm.models, "save_for_hf", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        encoder.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before  # the old folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    with pytest.raises(ModelFolderError, match=r"already exists; pass --overwrite \(overwrite=True\)"):
        mimzoo.save_pretrained(encoder, target, overwrite=False)


def test_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="config.json not found"):
        mimzoo.load(str(tmp_path / "empty"))
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{oops")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        mimzoo.load(str(tmp_path / "badjson"))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text('{"architecture": "vit_tiny_patch16_224"}')
    with pytest.raises(ModelFolderError, match="has no model.safetensors"):
        mimzoo.load(str(tmp_path / "noweights"))


# --- the Hugging Face cache, offline, through the real client ------------------------------------------

ACME = """
from mimzoo.registry import Method, Paper, Preprocess, Reference, Taxonomy, Variant, WeightSource
from mimzoo_mae.layouts import LAYOUTS

METHOD = Method(
    name="acme", title="AcmeMIM", paper=Paper(title="Acme", arxiv="2401.00001", year=2024, authors="Doe"),
    family="reconstruction",
    taxonomy=Taxonomy(masking="random-patch", target="pixels", objective="mse", architecture="ViT",
                      encoder_input="visible", survey_nodes=("masking",)),
    license="apache-2.0",
    variants=tuple(
        Variant(
            name=name, arch="vit_tiny_patch16_224", params_m=0.029,
            model_kwargs={"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
            preprocess=Preprocess(input_size=(3, 32, 32)),
            weights=(WeightSource("hub", repo_id="acme/acme-vit-tiny", filename="acme.pth",
                                  url="https://example.org/acme.pth", sha256=sha),),
            layouts=LAYOUTS, reference=Reference(linear_top1=50.0, epochs=10, source="tests"),
            description="test model",
        )
        for name, sha in (("acme-vit-tiny", None), ("acme-vit-sha", "SHA"))
    ),
)
"""


def fill_hf_cache(cache: Path, repo_id: str, commits: dict[str, dict[str, Path]], main: str) -> None:
    """Lay files out exactly as huggingface_hub caches them: snapshots per commit, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for commit, files in commits.items():
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        for name, src in files.items():
            shutil.copy(src, snap / name)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(main)


@pytest.fixture
def acme(tmp_path):
    """A third-party plugin whose tiny variant's weights live (only) in a filled HF cache."""
    torch.manual_seed(1)
    enc = mimzoo.load("mae-vit-test", pretrained=False)
    ckpt = tmp_path / "acme.pth"
    torch.save({"model": enc.model.state_dict()}, ckpt)  # official container, timm keys
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    site = make_distribution(tmp_path / "site", "acme-mim", "1.0", {"acme": "acme_mim:METHOD"},
                             {"acme_mim": ACME.replace("SHA", "0" * 64)})
    return {"ckpt": ckpt, "sha": sha, "site": site, "encoder": enc, "cache": tmp_path / "hf-cache"}


def offline_env(cache: Path) -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_pretrained_weights_from_the_hub_cache_offline(acme):
    fill_hf_cache(acme["cache"], "acme/acme-vit-tiny", {"c" * 40: {"acme.pth": acme["ckpt"]}}, main="c" * 40)
    torch.save(torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3)), acme["cache"].parent / "x.pt")
    code = f"""
        import torch, mimzoo
        enc = mimzoo.load("acme-vit-tiny")
        x = torch.load({str(acme["cache"].parent / "x.pt")!r}, weights_only=True)
        torch.save(enc(x), {str(acme["cache"].parent / "y.pt")!r})
        print(enc.info.weights.source, enc.info.weights.layout)
    """
    r = run_py(code, env=offline_env(acme["cache"]), pythonpath=[acme["site"]])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hf-hub:acme/acme-vit-tiny/acme.pth", "timm"]
    x = torch.load(acme["cache"].parent / "x.pt")
    with torch.no_grad():
        assert torch.allclose(torch.load(acme["cache"].parent / "y.pt"), acme["encoder"](x), atol=1e-6)


def test_sha256_mismatch_is_refused(acme):
    fill_hf_cache(acme["cache"], "acme/acme-vit-tiny", {"c" * 40: {"acme.pth": acme["ckpt"]}}, main="c" * 40)
    r = run_py("import mimzoo; mimzoo.load('acme-vit-sha')", env=offline_env(acme["cache"]), pythonpath=[acme["site"]])
    assert r.returncode != 0
    assert f"has sha256 {acme['sha'][:12]}..., expected 000000000000...; the download is corrupt" in r.stderr


def test_offline_and_not_cached_names_the_cache_and_the_fix(acme):
    acme["cache"].mkdir()
    code = """
        import mimzoo
        import mimzoo.encoders.build as build
        from mimzoo.errors import WeightsNotAvailableError

        def never(*args, **kwargs):  # the weights are looked up first: nothing is built for a failed load
            raise AssertionError("built a model before finding its weights")

        build.build_variant = never
        for name, kw in (("acme-vit-tiny", {}), ("mae-vit-b", {}), ("hf-hub:acme/nothing-here", {}),
                         ("mae-vit-b", {"weights": "vis"})):
            try:
                mimzoo.load(name, **kw)
            except WeightsNotAvailableError as e:
                print(e)
    """
    r = run_py(code, env=offline_env(acme["cache"]), pythonpath=[acme["site"]])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        assert str(acme["cache"]) in line and "offline mode is on" in line and "HF_HUB_OFFLINE=1" in line
    assert "pass weights=PATH to a local copy of https://example.org/acme.pth" in lines[0]
    assert "timm/vit_base_patch16_224.mae/model.safetensors" in lines[1]
    assert "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth" in lines[1]
    assert "facebook/vit-mae-base/pytorch_model.bin" in lines[3]  # weights="vis" picks that source


def test_hf_hub_folder_and_pinned_revision_offline(acme, tmp_path):
    old = acme["encoder"].save_pretrained(tmp_path / "old")
    torch.manual_seed(2)
    new = mimzoo.load("mae-vit-test", pretrained=False).save_pretrained(tmp_path / "new")
    files = lambda d: {"config.json": d / "config.json", "model.safetensors": d / "model.safetensors"}  # noqa: E731
    a, b = "a" * 40, "b" * 40
    fill_hf_cache(acme["cache"], "acme/tiny-encoder", {a: files(old), b: files(new)}, main=b)
    code = f"""
        import torch, mimzoo
        x = torch.randn(2, 3, 32, 32)
        for name, folder in (("hf-hub:acme/tiny-encoder", {str(new)!r}),
                             ("hf-hub:acme/tiny-encoder@{a}", {str(old)!r}),
                             ("hf-hub:acme/tiny-encoder@{b}", {str(new)!r})):
            enc = mimzoo.load(name)
            assert torch.equal(enc(x), mimzoo.load(folder)(x)), name
            print(name, enc.info.variant)
    """
    r = run_py(code, env=offline_env(acme["cache"]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("mae-vit-test") == 3


def test_bundled_default_model_loads_offline():
    """mae-vit-digits ships inside the package: no Hub, no cache, no network."""
    r = run_py("""
        import mimzoo, torch
        enc = mimzoo.load("mae-vit-digits")
        print(enc.info.weights.source, enc.num_features, tuple(enc(torch.zeros(1, 3, 32, 32)).shape))
    """, env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/nonexistent"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["bundled:assets/mae-vit-digits/model.safetensors", "96", "(1,", "96)"]


def test_saved_folders_are_readable_by_others(encoder, tmp_path):
    # safetensors itself writes 0600 files; a saved folder gets the mode open() would give
    import os

    umask = os.umask(0o022)
    try:
        encoder.save_pretrained(tmp_path / "enc")
    finally:
        os.umask(umask)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "enc" / name).stat().st_mode & 0o777 == 0o644, name
    assert (tmp_path / "enc").stat().st_mode & 0o777 == 0o755
