"""A video encoder on the Hub: config.json and the card carry the clip preprocessing, and the round trip
(save -> publish to the local Hub stand-in over real HTTP -> mimzoo.load("hf-hub:...")) gives the same tokens.

The stand-in (tests/hub_standin.py) takes uploads through the LFS path (HF_HUB_DISABLE_XET=1); the
client's Xet paths are not covered here.
"""

from __future__ import annotations

import json

import pytest
import torch
from hub_standin import NO_PROXY, TOKEN, HubStandIn

import mimzoo
from mimzoo.hub.card import CardInfo, build_card
from mimzoo.registry.contract import Preprocess

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif("videomae-vit-test" not in mimzoo.list_models(include_test=True),
                       reason="the videomae plugin (videomae-vit-test) is not installed"),
]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import close_session

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.setenv("NO_PROXY", NO_PROXY)
    close_session()
    with HubStandIn({TOKEN: ("acme",)}) as server:
        yield server
    close_session()


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """videomae-vit-test (seeded random init) saved as a model folder, with the stride changed to 3."""
    from dataclasses import replace

    torch.manual_seed(0)
    enc = mimzoo.load("videomae-vit-test", pretrained=False)
    enc.preprocess = replace(enc.preprocess, frame_stride=3)
    enc._transform = None
    folder = tmp_path_factory.mktemp("vmodels") / "tiny-videomae"
    enc.save_pretrained(str(folder))
    return folder, enc


def test_folder_config_carries_the_clip_preprocessing_and_loads_back(video_folder):
    folder, enc = video_folder
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "video_vit" and cfg["num_features"] == enc.num_features
    assert cfg["pretrained_cfg"]["num_frames"] == 4 and cfg["pretrained_cfg"]["frame_stride"] == 3
    assert cfg["model_args"]["num_frames"] == 4 and cfg["model_args"]["tubelet_size"] == 2
    back = mimzoo.load(str(folder))
    assert back.preprocess == enc.preprocess
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(back.forward_features(x), enc.forward_features(x), rtol=0, atol=0)


def test_publish_to_the_hub_and_load_back_gives_the_same_tokens(video_folder, hub, tmp_path):
    from PIL import Image

    folder, enc = video_folder
    mimzoo.publish(str(folder), "acme/tiny-videomae", endpoint=hub.url)
    card = hub.files("acme/tiny-videomae")["README.md"].decode()
    assert "clips of 4 frames, frame stride 3" in card and "[N, 3, 4, 32, 32]" in card
    assert "read_video(\"clip.mp4\")" in card and "timm.create_model" not in card
    assert "pipeline_tag: video-classification" in card and "mimzoo `video_vit`" in card
    remote_cfg = json.loads(hub.files("acme/tiny-videomae")["config.json"])
    assert remote_cfg["pretrained_cfg"]["num_frames"] == 4 and remote_cfg["pretrained_cfg"]["frame_stride"] == 3
    back = mimzoo.load("hf-hub:acme/tiny-videomae", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert back.preprocess.num_frames == 4 and back.preprocess.frame_stride == 3
    frames = [Image.new("RGB", (40, 40), (10 * t, 100, 200 - 10 * t)) for t in range(12)]
    x = back.transform(frames).unsqueeze(0)  # 4 centred frames 3 apart: 1, 4, 7, 10
    assert x.shape == (1, 3, 4, 32, 32)
    torch.testing.assert_close(x, enc.transform([frames[t] for t in (1, 4, 7, 10)]).unsqueeze(0))
    with torch.no_grad():
        torch.testing.assert_close(back.forward_features(x), enc.forward_features(x), rtol=0, atol=0)
        torch.testing.assert_close(back(x), enc(x), rtol=0, atol=0)


def test_image_cards_are_unchanged_by_the_video_rows():
    card = build_card(CardInfo("acme/tiny", "apache-2.0", "vit_tiny_patch16_224", 32, 0.03, "token", Preprocess()))
    assert "frames" not in card and "pipeline_tag: image-feature-extraction" in card
    assert "timm.create_model(\"hf-hub:acme/tiny\"" in card
