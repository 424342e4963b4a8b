"""The model card (README.md) of a published repo, built with huggingface_hub's ModelCard.

YAML metadata: library_name, license, tags, datasets, base_model, pipeline_tag and the
``model-index`` of the eval results. Body: a license notice first when the weights are
non-commercial, what the model is (method, taxonomy, encoder, preprocessing, provenance), eval
results, the ONNX exports and their verification, usage with mimzoo / timm / onnxruntime, and the
method's citation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .._deps import require
from .._version import __version__
from ..registry.contract import Method, Preprocess, Variant
from .eval_results import TASKS

# licenses whose terms forbid commercial use; the card says so before anything else
_NONCOMMERCIAL = re.compile(r"(^|[-_])nc([-_]|$)|non[-_]?commercial", re.I)
_LICENSE_LINKS = {
    "cc-by-nc-4.0": "https://creativecommons.org/licenses/by-nc/4.0/",
    "cc-by-nc-sa-4.0": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "cc-by-nc-nd-4.0": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    "cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0",
    "mit": "https://opensource.org/licenses/MIT",
}
# pretraining data named in plugin references -> Hub dataset ids
_DATASETS = {"imagenet-1k": "ILSVRC/imagenet-1k", "in1k": "ILSVRC/imagenet-1k"}


def is_noncommercial(license_id: str | None) -> bool:
    """True for licenses such as cc-by-nc-4.0 that forbid commercial use.

    >>> is_noncommercial("cc-by-nc-4.0"), is_noncommercial("apache-2.0")
    (True, False)
    """
    return bool(license_id) and bool(_NONCOMMERCIAL.search(license_id))


@dataclass(frozen=True)
class CardInfo:
    """Everything a model card states."""

    repo_id: str  # org/name the card lives in
    license: str  # license id of the weights
    arch: str  # timm architecture
    num_features: int  # embedding width D
    params_m: float  # parameters in millions
    pooling: str  # timm global_pool of the embedding
    preprocess: Preprocess  # input size, normalisation, resize/crop
    method: Method | None = None  # the method plugin, when known
    variant: Variant | None = None  # the zoo variant, only when these are its own weights
    weights_source: str | None = None  # where the weights came from (public form)
    weights_sha256: str | None = None  # sha256 of the source weights file
    base_model: str | None = None  # Hub repo the weights were copied from, when they were
    eval_records: tuple[dict[str, Any], ...] = ()  # eval records of this model
    model_index: tuple[dict[str, Any], ...] = ()  # the model-index built from them
    exports: tuple[dict[str, Any], ...] = ()  # {"path", "precision", "opset", "batch", "verification", "recheck_cosine"}
    extra_tags: tuple[str, ...] = field(default_factory=tuple)  # more Hub tags


def build_card(info: CardInfo) -> str:
    """The README.md text of a published repo.

    >>> text = build_card(CardInfo("acme/tiny", "apache-2.0", "vit_tiny_patch16_224", 32, 0.03, "token", Preprocess()))
    >>> text.startswith("---") and "timm.create_model(\\"hf-hub:acme/tiny\\"" in text
    True
    """
    hub = require("huggingface_hub")
    data = hub.ModelCardData(
        library_name="mimzoo" if _is_video(info) else "timm",  # timm cannot build mimzoo's video ViT
        license=info.license,
        tags=_tags(info),
        datasets=_datasets(info),
        base_model=info.base_model,
        # a video encoder (VideoMAE) is still a feature extractor; the Hub has no video-feature-extraction task
        pipeline_tag="video-classification" if _is_video(info) else "image-feature-extraction",
    )
    meta = data.to_yaml()
    if info.model_index:  # written as built: ModelCardData would merge tasks that share a dataset and split
        yaml = require("yaml")
        meta += "\n" + yaml.safe_dump({"model-index": [dict(m) for m in info.model_index]}, sort_keys=False).rstrip()
    body = "\n".join(part for part in _body(info) if part is not None)
    text = f"---\n{meta}\n---\n\n{body}"
    hub.ModelCard(text)  # parses: the metadata is valid YAML that huggingface_hub reads (str() would re-merge it)
    return text


def _tags(info: CardInfo) -> list[str]:
    tags = ["mimzoo", "timm", "image-feature-extraction", "masked-image-modeling"]
    if _is_video(info):  # mimzoo builds it (timm cannot), and it takes clips
        tags = ["mimzoo", "video", "video-feature-extraction", "masked-video-modeling"]
    if info.method is not None:
        tags += [info.method.name, f"{info.method.family}-based", info.method.taxonomy.architecture.lower()]
    formats = {e.get("format", "onnx") for e in info.exports}
    tags += [f for f in ("onnx", "openvino") if f in formats]
    if is_noncommercial(info.license):
        tags.append("non-commercial")
    return list(dict.fromkeys(tags + list(info.extra_tags)))


def _datasets(info: CardInfo) -> list[str] | None:
    ref = info.variant.reference if info.variant else None
    key = ref.pretrain_data.lower() if ref else None
    return [_DATASETS[key]] if key in _DATASETS else None


def _body(info: CardInfo) -> list[str | None]:
    name = info.repo_id.split("/")[1]
    return [
        f"# {name}\n",
        _license_notice(info.license),
        _summary(info),
        "## Model\n",
        _model_table(info),
        _evaluation(info),
        _exports(info),
        _task_models(info),
        _usage(info),
        _citation(info),
        f"\n---\nPublished with [mimzoo](https://pypi.org/project/mimzoo/) {__version__}. "
        "`config.json` holds the timm configuration and, under `mimzoo`, the method, taxonomy and provenance.\n",
    ]


def _license_notice(license_id: str) -> str | None:
    link = _LICENSE_LINKS.get(license_id)
    named = f"[{license_id.upper()}]({link})" if link else f"`{license_id}`"
    if is_noncommercial(license_id):
        return (
            f"> **License: {named}: non-commercial use only.** These weights are released by their authors "
            "under a license that forbids commercial use. Check the terms before you use them, or anything "
            "fine-tuned from them, in a product.\n"
        )
    return None


def _summary(info: CardInfo) -> str:
    if info.variant is not None and info.variant.description:
        what = f"{info.variant.description}, as in the zoo model `{info.variant.name}`"
    elif info.method is not None:
        what = f"A {info.method.title} encoder (`{info.arch}`)"
    else:
        what = f"A `{info.arch}` image encoder"
    p = info.preprocess
    if getattr(p, "num_frames", None) is not None:
        return (f"{what}. It maps a clip of {p.num_frames} frames (every {_nth(p.frame_stride)} frame of a video) to a "
                f"{info.num_features}-d embedding (`encoder(x)`, the mean of its tokens) or to tokens.\n")
    return f"{what}. It maps an image to a {info.num_features}-d embedding (`encoder(x)`) or to tokens.\n"


def _nth(k: int) -> str:
    return {1: "", 2: "2nd", 3: "3rd"}.get(k, f"{k}th") or "successive"


def _model_table(info: CardInfo) -> str:
    p, m = info.preprocess, info.method
    rows = []
    if m is not None:
        t = info.variant.taxonomy_for(m) if info.variant else m.taxonomy  # how these weights were trained
        ratio = f" ({t.mask_ratio:.0%})" if t.mask_ratio is not None else ""
        rows += [
            ("Method", f"{m.title}: *{m.paper.title}* ({m.paper.authors}, {m.paper.year}), [arXiv {m.paper.arxiv}]({m.paper.url})"),
            ("Family", f"{m.family}-based masked image modeling"),
            ("Masking / target / objective", f"{t.masking}{ratio} / {t.target} / {t.objective}; encoder sees {t.encoder_input} tokens"),
        ]
    rows += [
        ("Encoder", f"{_builder(info)} `{info.arch}`{_resized(info)}, {_millions(info.params_m)} M parameters, embedding {info.num_features}-d, pooling `{info.pooling}`"),
        ("Input", f"{p.input_size[0]}x{p.input_size[1]}x{p.input_size[2]}, mean {list(p.mean)}, std {list(p.std)}, "
                  f"{p.interpolation} resize, crop_pct {p.crop_pct} ({p.crop_mode})" + _clip_input(p)),
        ("Weights", f"`{info.weights_source or 'unknown'}`" + (f", sha256 `{info.weights_sha256}`" if info.weights_sha256 else "")),
        ("License", info.license),
    ]
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def _is_video(info: CardInfo) -> bool:
    return getattr(info.preprocess, "num_frames", None) is not None


def _builder(info: CardInfo) -> str:
    """Who builds the architecture: timm, or mimzoo itself (its video ViT)."""
    from .folder import OWN_ARCHS

    return "mimzoo" if info.arch in OWN_ARCHS else "timm"


def _clip_input(p: Preprocess) -> str:
    """The video part of the Input row: frames per clip, frame stride, the input layout."""
    if getattr(p, "num_frames", None) is None:
        return ""
    return (f"; clips of {p.num_frames} frames, frame stride {p.frame_stride} (centred), input "
            f"[N, {p.input_size[0]}, {p.num_frames}, {p.input_size[1]}, {p.input_size[2]}]")


def _resized(info: CardInfo) -> str:
    """' as vit (patch 4, 96-d, depth 6)' when the zoo variant's kwargs resize the timm architecture."""
    label = info.variant.arch_label() if info.variant else info.arch
    return f" built as {label}" if label != info.arch else ""


def _millions(m: float) -> str:
    return f"{m:.1f}" if m >= 1 else f"{m:.3f}"


def _evaluation(info: CardInfo) -> str | None:
    ref = info.variant.reference if info.variant else None
    lines = []
    if info.eval_records:
        classify = [r for r in info.eval_records if r["task"] != "seg-linear"]
        segment = [r for r in info.eval_records if r["task"] == "seg-linear"]
        if classify:
            lines += ["| task | dataset | split | top-1 (%) | top-5 (%) |", "|---|---|---|---:|---:|"]
        for r in classify:
            top5 = r["metrics"].get("top5")
            lines.append(f"| {TASKS[r['task']]} | {r['dataset']} | {r.get('split', 'val')} | "
                         f"{r['metrics']['top1']:.2f} | {'-' if top5 is None else f'{top5:.2f}'} |")
        if segment:
            lines += ([""] if classify else []) + ["| task | dataset | split | mIoU (%) | pixel acc. (%) |",
                                                      "|---|---|---|---:|---:|"]
        for r in segment:
            acc = r["metrics"].get("pixel_acc")
            lines.append(f"| {TASKS[r['task']]} | {r['dataset']} | {r.get('split', 'val')} | "
                         f"{r['metrics']['miou']:.2f} | {'-' if acc is None else f'{acc:.2f}'} |")
        lines.append("\nMeasured with `mimzoo eval` on these weights.")
    if ref is not None and (ref.finetune_top1 or ref.linear_top1 or ref.knn_top1):
        knn = f", k-NN top-1 {ref.knn_top1}" if ref.knn_top1 else ""
        lines.append(f"\nPaper reference on {ref.dataset}: fine-tune top-1 {ref.finetune_top1 or '-'}, linear probe "
                     f"top-1 {ref.linear_top1 or '-'}{knn} ({f'{ref.epochs} pretraining epochs' if ref.epochs else ''}"
                     f"{'; ' if ref.epochs else ''}pretrained on {ref.pretrain_data}; {ref.source}).")
    return "\n## Evaluation\n\n" + "\n".join(lines) + "\n" if lines else None


def _exports(info: CardInfo) -> str | None:
    if not info.exports:
        return None
    lines = ["| file | precision | opset | batch | max abs error | min cosine | re-checked cosine |",
             "|---|---|---:|---|---:|---:|---:|"]
    for e in info.exports:
        v = e.get("verification", {})
        lines.append(f"| `{e['path']}` | {e['precision']} | {e.get('opset', '-')} | {e.get('batch', '-')} | "
                     f"{v.get('max_abs', '-')} | {v.get('cosine_min', '-')} | {e.get('recheck_cosine', 0):.6f} |")
    heading = "ONNX" if all(e.get("format", "onnx") == "onnx" for e in info.exports) else "Exports (ONNX, OpenVINO)"
    return (f"\n## {heading}\n\nEach export passed `mimzoo verify` against PyTorch (`export.json` beside it holds the full "
            "report) and was run again against these weights when published.\n\n" + "\n".join(lines) + "\n")


def _task_models(info: CardInfo) -> str | None:
    """Exports of this backbone plus a trained head: the task, its labels, the head's eval and the export's check."""
    tasks = [e for e in info.exports if e.get("task")]
    if not tasks:
        return None
    parts = ["\n## Task models\n\nThis backbone with a trained head, exported as one model (`mimzoo export MODEL "
             "--head DIR`) and verified against PyTorch on predictions too. The head's files are in `head/` beside it.\n\n"]
    for e in tasks:
        t, v = e["task"], e.get("verification", {})
        labels = [str(x) for x in t.get("labels") or []]
        shown = ", ".join(f"`{x}`" for x in labels[:20]) + (f" and {len(labels) - 20} more" if len(labels) > 20 else "")
        metrics = ", ".join(f"{k} {val:.2f}" for k, val in (t.get("metrics") or {}).items()) or "-"
        out = "`logits` [N, K, H, W] and `mask` [N, H, W]" if t["task"] == "segmentation" else "`logits` [N, K]"
        agree = next((f"{name} {v[key]:.4f}" for key, name in (("top1_agreement", "top-1 agreement"),
                                                               ("pixel_agreement", "pixel agreement")) if v.get(key) is not None), "")
        folder = e["path"].rsplit("/", 1)[0]
        parts.append(f"- `{folder}` ({e['format']} {e['precision']}): {t['task']} ({t['kind']} head"
                     f"{', fine-tuned backbone' if t.get('includes_backbone') else ''}) trained on {t.get('dataset') or '?'}; "
                     f"outputs {out}; {len(labels)} labels: {shown}; head eval: {metrics}"
                     + (f"; export vs PyTorch: {agree}" if agree else "") + "\n")
    e = tasks[0]
    folder = e["path"].rsplit("/", 1)[0]
    parts.append(f"""
```python
from huggingface_hub import snapshot_download
from mimzoo.exporters.runtime import load_export  # onnxruntime or openvino, numpy and PIL: no torch
from PIL import Image

folder = snapshot_download("{info.repo_id}", allow_patterns=["{folder}/*"])
model = load_export(f"{{folder}}/{folder}")
out = model.predict([Image.open("image.jpg")])
{_task_print(e["task"]["task"])}
```
""")
    return "".join(parts)


def _task_print(task: str) -> str:
    if task == "segmentation":
        return 'mask = out["mask"][0]  # [H, W] class ids at the input size; model.labels[i] names class i'
    return 'print(model.labels[int(out["logits"][0].argmax())])  # the predicted class'


def _usage(info: CardInfo) -> str:
    repo, p = info.repo_id, info.preprocess
    size = f"{p.input_size[1]}, {p.input_size[2]}"
    if getattr(p, "num_frames", None) is not None:
        return _video_usage(info)
    text = f"""
## Usage

With mimzoo (`pip install mimzoo`):

```python
import mimzoo
from PIL import Image

encoder = mimzoo.load("hf-hub:{repo}")
x = encoder.transform(Image.open("image.jpg")).unsqueeze(0)  # [1, 3, {size}]
embedding = encoder(x)  # [1, {info.num_features}]
tokens = encoder.forward_features(x)
```

With timm alone:

```python
import timm
from PIL import Image

model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config({{}}, model=model))
embedding = model(transform(Image.open("image.jpg").convert("RGB")).unsqueeze(0))  # [1, {info.num_features}]
```
"""
    onnx_exports = [e for e in info.exports if e.get("format", "onnx") == "onnx" and not e.get("task")]
    if onnx_exports:
        e = onnx_exports[0]
        folder = e["path"].rsplit("/", 1)[0]
        text += f"""
With onnxruntime (`{e['path']}`, {e['precision']}):

```python
import onnxruntime as ort
from huggingface_hub import snapshot_download

folder = snapshot_download("{repo}", allow_patterns=["{folder}/*"])
session = ort.InferenceSession(f"{{folder}}/{e['path']}")
# pixel_values: float32 [N, 3, {size}], resized, cropped and normalised as in the table above
(embedding,) = session.run(["embedding"], {{"pixel_values": pixel_values}})
```
"""
    for e in (e for e in info.exports if e.get("format") == "openvino" and not e.get("task")):
        folder = e["path"].rsplit("/", 1)[0]
        text += f"""
With OpenVINO (`{folder}`, {e['precision']}; `pip install openvino`; mimzoo's torch-free runtime applies the
inference precision recorded in its `export.json`):

```python
from huggingface_hub import snapshot_download
from mimzoo.exporters.runtime import load_export

folder = snapshot_download("{repo}", allow_patterns=["{folder}/*"])
embedding = load_export(f"{{folder}}/{folder}").embed([Image.open("image.jpg")])  # [1, {info.num_features}]
```
"""
        break
    return text


def _video_usage(info: CardInfo) -> str:
    p = info.preprocess
    return f"""
## Usage

With mimzoo (`pip install 'mimzoo[video]'`; PyAV reads the video):

```python
import mimzoo
from mimzoo.data.video_folder import read_video

encoder = mimzoo.load("hf-hub:{info.repo_id}")
frames = read_video("clip.mp4")  # RGB PIL frames; a list of frames or a uint8 [T, H, W, 3] array works too
x = encoder.transform(frames).unsqueeze(0)  # [1, 3, {p.num_frames}, {p.input_size[1]}, {p.input_size[2]}]: {p.num_frames} centred frames, stride {p.frame_stride}
embedding = encoder(x)  # [1, {info.num_features}]
tokens = encoder.forward_features(x)
```
"""


def _citation(info: CardInfo) -> str | None:
    paper = info.method.paper if info.method else None
    if paper is None:
        return None
    cite = paper.bibtex or f"{paper.authors}. {paper.title}. {paper.year}. {paper.url}"
    return f"\n## Citation\n\n```bibtex\n{cite}\n```\n"
