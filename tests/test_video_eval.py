"""k-NN, linear and attentive probes on clip features: sampled as the model asks, cached, refusals in one line."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from video_helpers import clip_encoder, write_frame_folder

import mimzoo
from mimzoo.data import open_dataset
from mimzoo.errors import MimzooError
from mimzoo.eval.features import ExtractConfig, extract_features
from mimzoo.eval.video import match_source

pytestmark = pytest.mark.usefixtures("one_thread")
DATA = "moving-digits:train=80,test=40,frames=8,label=direction"


def test_clip_features_equal_a_bare_forward_of_the_sampled_clips(tmp_path):
    enc = clip_encoder(num_frames=4, frame_stride=2)
    src = match_source(enc, open_dataset(DATA), ["knn"], "tube-test")
    cfg = ExtractConfig(batch_size=16, workers=0, cache_dir=str(tmp_path))
    f = extract_features(enc, src.eval, tokens=True, config=cfg)
    clips = torch.stack([enc.transform(src.eval.image(i)) for i in range(len(src.eval))])
    assert clips.shape == (40, 3, 4, 32, 32)  # [N, C, T, H, W]
    with torch.no_grad():
        tokens, pooled = enc.forward_features(clips), enc(clips)
    assert f.tokens.shape == (40, 2 * 16, 24) and f.labels.tolist() == src.eval.labels()
    torch.testing.assert_close(f.pooled, pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f.pooled, tokens.mean(1), rtol=1e-5, atol=1e-5)
    again = extract_features(enc, src.eval, tokens=True, config=cfg)
    assert (f.cache_status, again.cache_status) == ("miss", "hit")
    torch.testing.assert_close(again.pooled, f.pooled)
    # another stride is another cache entry, and other frames
    other = match_source(clip_encoder(num_frames=4, frame_stride=1), open_dataset(DATA), ["knn"], "tube-test")
    g = extract_features(clip_encoder(num_frames=4, frame_stride=1), other.eval, config=cfg)
    assert g.cache_status == "miss" and g.cache_file != f.cache_file and not torch.equal(g.pooled, f.pooled)


def test_evaluate_knn_linear_attentive_on_moving_digits_with_json(tmp_path):
    out = tmp_path / "eval.json"
    records = mimzoo.evaluate(clip_encoder(), "knn,linear,attentive", DATA, cache_dir=tmp_path, output=out,
                              workers=0, epochs=5, seed=0)
    assert [r.task for r in records] == ["knn", "linear", "attentive"]
    for r in records:
        assert r.dataset == "moving-digits" and r.split == "test" and 0.0 <= r.top1 <= 100.0
        assert r.config["train_images"] == 80 and r.config["eval_images"] == 40
    saved = json.loads(out.read_text())
    assert json.dumps(saved).count("moving-digits") >= 3
    hit = mimzoo.evaluate(clip_encoder(), "knn", DATA, cache_dir=tmp_path, workers=0)
    assert hit[0].config["features_cache"] == "hit" and hit[0].top1 == records[0].top1


def test_mismatches_and_image_only_tasks_are_refused_in_one_line(tiny_encoder, tmp_path):
    cases = [
        (clip_encoder(), "knn", "digits", "video model .* holds images; pass --data moving-digits"),
        (tiny_encoder, "knn", DATA, "holds video clips but .* is an image model"),
        (clip_encoder(), "finetune", DATA, "finetune does not run on video clips yet"),
        (clip_encoder(num_frames=8, frame_stride=2), "knn", DATA,
         "at most 8 frames; 8 frames at stride 2 need 15: pass moving-digits:frames=15"),
    ]
    for enc, task, data, words in cases:
        with pytest.raises(MimzooError, match=words) as e:
            mimzoo.evaluate(enc, task, data, cache_dir=tmp_path, workers=0)
        assert "\n" not in str(e.value)


def test_video_folder_of_frame_folders_evaluates(tmp_path):
    root = tmp_path / "clips"
    for c, value in (("dark", 30), ("bright", 200)):
        for k in range(4):
            write_frame_folder(root / c / f"clip{k}", frames=6, value=value + k)
    rec, = mimzoo.evaluate(clip_encoder(num_frames=3, frame_stride=2), "knn", f"video-folder:{root}",
                           cache_dir=tmp_path, workers=0, k=1)
    assert rec.top1 == 100.0 and rec.config["eval_images"] == 2  # solid brightness: nearest clip is its class


def _has(name: str) -> bool:
    return name in mimzoo.list_models(include_test=True)


@pytest.mark.skipif(not _has("videomae-vit-test"), reason="the videomae plugin (videomae-vit-test) is not installed")
def test_cli_eval_videomae_test_random_init_on_moving_digits(tmp_path):
    from mimzoo.cli.main import cli

    args = ["eval", "videomae-vit-test", "--random-init", "--task", "knn,linear", "--data",
            "moving-digits:train=60,test=30", "--cache-dir", str(tmp_path), "-o", str(tmp_path / "r.json"),
            "--set", "workers=0", "--set", "epochs=3"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "knn" in res.output and "linear" in res.output and "moving-digits" in res.output
    assert len(json.loads((tmp_path / "r.json").read_text())) == 2
