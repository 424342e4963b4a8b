"""Head folders and task models (mimzoo.tasks): `mimzoo eval --save-head` on real digits, the folder
format, TaskModel outputs, and a head folder checked as untrusted input when loaded."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import mimzoo
from mimzoo.cli.main import cli
from mimzoo.errors import MimzooError
from mimzoo.exporters.images import load_images
from mimzoo.tasks import HeadFolderError, HeadSpec, load_head, make_spec, read_spec, save_head

pytestmark = pytest.mark.usefixtures("one_thread")
DIGITS = [str(i) for i in range(10)]


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """`mimzoo eval mae-vit-test --random-init --task linear --save-head DIR` on real digits."""
    root = tmp_path_factory.mktemp("heads")
    r = invoke("eval", "mae-vit-test", "--random-init", "--task", "linear", "--data", "digits", "--quiet",
               "--cache-dir", str(root / "cache"), "--save-head", str(root / "head"), "--json")
    assert r.exit_code == 0, r.output
    torch.manual_seed(0)
    encoder = mimzoo.load("mae-vit-test", pretrained=False).eval()
    return {"dir": root / "head", "encoder": encoder, "record": json.loads(r.stdout[r.stdout.index("["):])[0]}


def test_save_head_writes_the_probe_with_labels_metrics_and_backbone(saved):
    folder, record = saved["dir"], saved["record"]
    names = sorted(p.name for p in folder.iterdir())
    assert names == [".mimzoo-output.json", "head.json", "head.safetensors"]
    assert json.loads((folder / ".mimzoo-output.json").read_text())["kind"] == "head"
    spec = read_spec(folder)
    assert (spec.task, spec.kind, spec.consumes, spec.labels) == ("classification", "linear", "pooled", tuple(DIGITS))
    assert spec.num_classes == 10 and spec.num_features == saved["encoder"].num_features
    assert spec.metrics["top1"] == pytest.approx(record["metrics"]["top1"], abs=1e-3)
    assert spec.dataset == "digits" and spec.input_size == (3, 32, 32) and not spec.includes_backbone
    assert record["config"]["saved_head"] == str(folder)


def test_task_model_gives_the_probe_predictions(saved):
    """TaskModel = encoder + the saved BN+Linear head: its logits are the probe's on the pooled features,
    and its top-1 on the eval images is the accuracy eval reported."""
    from mimzoo.data import open_dataset
    from mimzoo.eval.linear import linear_head

    enc = saved["encoder"]
    task = load_head(saved["dir"], enc)
    assert task.output_names == ("logits",) and not task.training
    x = torch.stack([enc.transform(im) for im in load_images("digits", 8).images])
    head = linear_head(enc.num_features, 10)
    from safetensors.torch import load_file

    head.load_state_dict(load_file(str(saved["dir"] / "head.safetensors")))
    with torch.inference_mode():
        (logits,) = task(x)
        torch.testing.assert_close(logits, head.eval()(enc(x)))
        assert task.predict(x)["logits"].shape == (8, 10)
        split = open_dataset("digits").eval
        xs = torch.stack([enc.transform(split.image(i)) for i in range(len(split))])
        top1 = (task(xs)[0].argmax(1) == torch.tensor(split.labels())).float().mean().item() * 100
    assert top1 == pytest.approx(saved["record"]["metrics"]["top1"], abs=0.5)


def test_save_head_is_refused_before_any_work(tmp_path):
    for args, text in ((["--task", "knn"], "--task knn has no head"), (["--task", "knn,linear"], "saves one head"),
                       (["--task", "attentive"], "--task attentive has no head")):
        r = invoke("eval", "mae-vit-test", "--random-init", *args, "--save-head", str(tmp_path / "head"))
        assert r.exit_code != 0 and text in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "head").exists()


def test_existing_folder_needs_overwrite_and_foreign_folders_are_kept(saved, tmp_path):
    enc = saved["encoder"]
    task = load_head(saved["dir"], enc)
    spec = read_spec(saved["dir"])
    with pytest.raises(HeadFolderError, match="exists; pass --overwrite"):
        save_head(saved["dir"], task.head, spec)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(MimzooError, match="holds files mimzoo did not write"):
        save_head(foreign, task.head, spec, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_another_backbone_is_refused_naming_the_right_one(saved):
    torch.manual_seed(1)
    other = mimzoo.load("mae-vit-test", pretrained=False)
    with pytest.raises(HeadFolderError, match="trained on mae-vit-test .*pass mae-vit-test with the same weights"):
        load_head(saved["dir"], other)
    digits = mimzoo.load("mae-vit-digits")
    with pytest.raises(HeadFolderError, match=f"{digits.num_features}-d embeddings, not 32"):
        load_head(saved["dir"], digits)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(labels=["0"] * 10), "labels must be distinct"),
    (lambda d: d.update(num_classes=11), "num_classes 11 does not match"),
    (lambda d: d.update(kind="../../evil"), "not a head kind name"),
    (lambda d: d.update(kind="nope"), "unknown head kind 'nope'"),
    (lambda d: d.update(task="detection"), "task 'detection' is not one of"),
    (lambda d: d.update(num_features=True), "num_features must be an integer"),
    (lambda d: d.update(std=[0.2, 0.2, 0.0]), "std must be positive"),
    (lambda d: d.update(extra="x"), "unknown field"),
    (lambda d: d.update(metrics={"top1": "high"}), "metrics must map names to numbers"),
    (lambda d: d.update(finetuned_sha256=7, includes_backbone=True), "finetuned_sha256 must be a 64-digit"),
    (lambda d: d.pop("backbone_sha256"), "lacks backbone_sha256"),
])
def test_head_json_is_checked_field_by_field(saved, tmp_path, change, message):
    folder = _copy(saved["dir"], tmp_path / "h")
    data = json.loads((folder / "head.json").read_text())
    change(data)
    (folder / "head.json").write_text(json.dumps(data))
    with pytest.raises(HeadFolderError, match=message):
        load_head(folder, saved["encoder"])


def test_weights_must_fit_the_kind_exactly(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(saved["dir"], tmp_path / "h")
    state = load_file(str(folder / "head.safetensors"))
    state["1.weight"] = state["1.weight"][:5]  # 5 classes where the spec says 10
    save_file(state, str(folder / "head.safetensors"))
    with pytest.raises(HeadFolderError, match=r"tensor 1.weight is torch.float32 \(5, 32\), expected"):
        load_head(folder, saved["encoder"])
    (folder / "head.safetensors").write_bytes(b"\x80\x04K\x01." * 10)  # a pickle, not safetensors
    with pytest.raises(HeadFolderError, match="not a readable safetensors file"):
        load_head(folder, saved["encoder"])
    (folder / "head.safetensors").write_bytes(b"\0" * (2 << 20))  # bigger than 10x32 floats can need
    with pytest.raises(HeadFolderError, match="more than its tensors need"):
        load_head(folder, saved["encoder"])


def test_finetune_head_carries_its_backbone(tmp_path):
    """A fine-tuned head folder holds the fine-tuned backbone: loading it leaves the given encoder alone."""
    torch.manual_seed(0)
    enc = mimzoo.load("mae-vit-test", pretrained=False).eval()
    tuned = mimzoo.load("mae-vit-test", pretrained=False).eval()
    with torch.no_grad():
        tuned.model.blocks[0].mlp.fc1.weight.mul_(1.5)  # stands for what fine-tuning changed
    head = torch.nn.Linear(enc.num_features, 10)
    spec = make_spec(enc, "finetune", DIGITS, dataset="digits", metrics={"top1": 50.0}, finetuned=tuned)
    assert spec.includes_backbone and spec.finetuned_sha256 != spec.backbone_sha256
    with pytest.raises(HeadFolderError, match="needs backbone weights"):
        save_head(tmp_path / "ft0", head, spec)
    save_head(tmp_path / "ft", head, spec, backbone=tuned)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    task = load_head(tmp_path / "ft", enc)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(task(x)[0], head(tuned(x)))
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_segmentation_task_model_gives_logits_and_mask(saved, tmp_path):
    from mimzoo.eval.seg import build_task_head

    enc = saved["encoder"]
    labels = ["background", *DIGITS]
    spec = make_spec(enc, "seg-linear", labels, dataset="digit-scenes", metrics={"miou": 10.0},
                     head_args={"seg_head": "linear"})
    torch.manual_seed(3)
    head = build_task_head(spec).eval()
    save_head(tmp_path / "seg", head, spec)
    task = load_head(tmp_path / "seg", enc, mask_dtype=torch.int32)
    assert task.output_names == ("logits", "mask")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        logits, mask = task(x)
    assert logits.shape == (2, 11, 32, 32) and mask.shape == (2, 32, 32) and mask.dtype == torch.int32
    assert torch.equal(mask.long(), logits.argmax(1))
    assert task.preprocess.crop_mode == "squash" and task.preprocess.crop_pct == 1.0  # the whole image, as trained


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_spec_round_trips_json(saved):
    spec = read_spec(saved["dir"])
    assert HeadSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_eval_finetune_saves_the_fine_tuned_backbone_with_its_head(tmp_path):
    rec, = mimzoo.evaluate("mae-vit-test", "finetune", "digits", pretrained=False, subset=32, eval_subset=32, epochs=1, batch_size=16,
                           cache_dir=tmp_path / "cache", save_head=tmp_path / "ft")
    spec = read_spec(tmp_path / "ft")
    assert spec.kind == "finetune" and spec.includes_backbone and spec.finetuned_sha256 != spec.backbone_sha256
    assert (tmp_path / "ft" / "backbone.safetensors").is_file() and spec.metrics["top1"] == rec.metrics["top1"]
    torch.manual_seed(0)
    enc = mimzoo.load("mae-vit-test", pretrained=False).eval()
    task = load_head(tmp_path / "ft", enc)  # the digest of the fine-tuned weights is checked on load
    assert task.encoder is not enc and task(torch.randn(2, 3, 32, 32))[0].shape == (2, 10)


def test_a_head_at_another_input_size_names_img_size(saved):
    big = mimzoo.load("mae-vit-test", pretrained=False, img_size=48)
    with pytest.raises(HeadFolderError, match="trained at input size 32x32.*pass --img-size 32"):
        load_head(saved["dir"], big)
