"""`mimzoo.export` and `mimzoo.verify`: deployable, verified exports of any model `mimzoo.load` accepts.

The work lives in :mod:`mimzoo.exporters`; these are the thin public entry points.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._lock import output_lock
from ..exporters.pipeline import ExportResult, Source, VerifyData, check_output, run_export, verify_folder
from ..exporters.spec import DEFAULT_OPSET, ExportSpec, VerificationError

log = logging.getLogger(__name__)

__all__ = ["ExportResult", "VerificationError", "bench", "default_output", "export", "export_target", "verify"]


def export(
    model: Any,
    output: str | Path | None = None,
    *,
    format: str = "onnx",  # noqa: A002 - the CLI's --format
    precision: str = "fp32",
    batch: int | str = "dynamic",
    img_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    tokens: bool = False,
    pretrained: bool = True,
    weights: str | Path | None = None,
    seed: int = 0,
    data: str | Path | None = "digits",
    images: int | None = None,
    calibration_images: int = 64,
    tolerances: Mapping[str, float] | None = None,
    int8_method: str = "auto",
    min_frames: int | None = None,
    max_batch: int = 64,
    opt_batch: int = 8,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    head: str | Path | None = None,
) -> ExportResult:
    """Export a model to ONNX (fp32, fp16, INT8), a TensorRT engine or OpenVINO IR (fp32, bf16, INT8), and
    verify it against PyTorch.

    The export is written into a temporary folder and renamed to `output` only once verification
    passed; otherwise a :class:`~mimzoo.exporters.spec.VerificationError` is raised and nothing is left.

    Args:
        model: a zoo name, model folder or ``hf-hub:`` repo (as :func:`mimzoo.load` takes), or an encoder.
        output: folder to write (default ``<name>-<onnx|trt>-<precision>`` in the working directory).
        format: ``"onnx"``, ``"tensorrt"`` (needs TensorRT and a GPU) or ``"openvino"`` (``mimzoo[openvino]``).
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` (OpenVINO) or ``"int8"`` (OpenVINO: NNCF, calibrated).
        batch: ``"dynamic"`` or a fixed batch size.
        img_size: export at this input size instead of the model's own.
        opset: ONNX opset (17..23).
        tokens: also output the ``[N, L, D]`` tokens.
        pretrained: load the default pretrained weights (False: random init seeded with `seed`).
        weights: checkpoint file or weight-source tag (as :func:`mimzoo.load` takes).
        seed: seed of a random-init model, the verification images and the random batches.
        data: real images for verification and calibration: ``"digits"`` (offline), an image folder, or None.
        images: how many real images to compare (default 128; 512 for INT8, whose k-NN gate needs them).
        calibration_images: extra, disjoint images for static INT8 / TensorRT INT8 calibration.
        tolerances: override the gate, e.g. ``{"max_abs": 1e-3, "cosine_min": 0.9999}``.
        int8_method: ``"dynamic"``, ``"static"`` (QDQ, calibrated) or ``"auto"`` (dynamic plans first).
        min_frames: video encoders: also accept clips of `min_frames` up to the model's T frames (a multiple of
            the tubelet size): the T axis becomes dynamic, is verified at both ends, and bounds the TensorRT profile.
        max_batch: largest batch a dynamic TensorRT engine accepts; opt_batch: the one it is tuned for.
        overwrite: replace an existing `output` folder (only after the new export passed).
        cache_dir: TensorRT timing/calibration caches (default ``~/.cache/mimzoo/tensorrt``).
        progress: called with one line per step (the CLI prints them on stderr).
        head: a head folder (``mimzoo eval --save-head DIR``): export `model` plus that head as one task
            model giving ``logits`` (classification) or ``logits`` and ``mask`` (segmentation), verified on
            predictions too (see :mod:`mimzoo.exporters.task`); `model` must be the backbone it was trained on.

    Returns:
        An :class:`~mimzoo.exporters.pipeline.ExportResult` (``.path``, ``.meta``, ``.verification``).

    >>> r = mimzoo.export("mae-vit-test", "out/tiny", pretrained=False)  # doctest: +SKIP
    >>> r.verification["passed"], r.verification["max_abs"] < 1e-4  # doctest: +SKIP
    (True, True)
    """
    spec = ExportSpec(format=format, precision=precision, batch=batch, img_size=img_size, opset=opset, tokens=tokens,
                      max_batch=max_batch, opt_batch=opt_batch, int8_method=int8_method, min_frames=min_frames)
    if head is not None:  # a bad head folder fails in a second, before loading anything
        _check_head(head, tokens)
    if spec.format == "tensorrt":  # fail in a second, before loading anything
        from ..exporters.tensorrt import require_tensorrt

        require_tensorrt(_name_of(model), spec, _input_size(model, img_size))
    if spec.format == "openvino":  # fail in a second, with the one line that installs it
        from ..exporters.openvino import require_openvino

        require_openvino(spec.precision)
    out = Path(output) if output is not None else default_output(_name_of(model) if head is None else
                                                                  f"{_name_of(model)}-{Path(head).name}", spec)
    vdata = VerifyData(data=None if data is None else str(data), images=images,
                       calibration_images=calibration_images, seed=seed)
    with output_lock(out):  # a second export to the same folder fails here, before loading anything
        check_output(out, overwrite)
        src = _source(model, pretrained=pretrained, weights=weights, seed=seed, img_size=img_size)
        if head is not None:
            src = _with_head(src, Path(head), spec.format)
        return run_export(src, out, spec, tolerances=dict(tolerances or {}), data=vdata, overwrite=overwrite,
                          say=progress or log.info, cache_dir=Path(cache_dir) if cache_dir else None)


def export_target(
    model: Any,
    output: str | Path | None = None,
    *,
    target: str = "cpu",
    batch: int | str = "dynamic",
    img_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    tokens: bool = False,
    pretrained: bool = True,
    weights: str | Path | None = None,
    seed: int = 0,
    data: str | Path | None = "digits",
    images: int | None = None,
    calibration_images: int = 64,
    tolerances: Mapping[str, float] | None = None,
    threads: int | None = None,
    time_batch: int = 8,
    iters: int = 5,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Export every backend and precision `target` supports here, keep the fastest that passes its gate.

    CPU: onnxruntime fp32/int8 and OpenVINO fp32/bf16/int8 (where installed and the CPU has the units).
    Each is verified with mimzoo's gate for its precision (`tolerances` override every gate alike), then
    the passing ones are timed side by side (`threads` each, `iters` interleaved rounds at `time_batch`
    images); only the fastest is written to `output` (default ``<name>-<target>``), the others are removed.

    Returns:
        A :class:`~mimzoo.exporters.target.TargetResult`: ``.path``, ``.meta`` (the winner's export.json),
        ``.candidates`` (each with status, min cosine, img/s and why it was kept or dropped).

    >>> r = mimzoo.api.export.export_target("mae-vit-test", "out/best", pretrained=False)  # doctest: +SKIP
    >>> r.winner.backend  # doctest: +SKIP
    'openvino-bf16'
    """
    from ..exporters.target import TargetTiming, candidates_for, run_target

    spec = ExportSpec(batch=batch, img_size=img_size, opset=opset, tokens=tokens)
    candidates_for(target)  # an unknown target, or --target cuda with nothing to run on, fails here in a second
    out = Path(output) if output is not None else Path(f"{default_output(_name_of(model), spec).name.rsplit('-onnx-', 1)[0]}-{target}")
    vdata = VerifyData(data=None if data is None else str(data), images=images,
                       calibration_images=calibration_images, seed=seed)
    say = progress or log.info

    def export_one(src: Source, folder: Path, one: ExportSpec) -> ExportResult:
        return run_export(src, folder, one, tolerances=dict(tolerances or {}), data=vdata, say=lambda s: say(f"  {s}"))

    with output_lock(out):
        check_output(out, overwrite)
        src = _source(model, pretrained=pretrained, weights=weights, seed=seed, img_size=img_size)
        return run_target(src, out, target, spec, timing=TargetTiming(batch=time_batch, iters=iters, threads=threads),
                          export_one=export_one, say=say)


def verify(
    path: str | Path,
    model: Any = None,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    seed: int = 0,
    data: str | Path | None = "digits",
    images: int | None = None,
    tolerances: Mapping[str, float] | None = None,
    raise_on_failure: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Check an export folder against PyTorch again (random and real images, k-NN when labelled).

    Args:
        path: an export folder written by :func:`mimzoo.export`.
        model: the PyTorch model to compare with (name or encoder); default: rebuilt from the folder's
            provenance, refused if its weights digest differs from the exported one.
        pretrained, weights, seed: how to load `model` when it is a name (as in :func:`export`).
        data, images: real images to compare on (as in :func:`export`).
        tolerances: override mimzoo's gate for the export's precision (the limits export.json records are
            never used: the figures it records are re-checked against the gate too).
        raise_on_failure: raise VerificationError when a tolerance is broken (else just report it).
        progress: called with one line per step.

    Returns:
        The verification report (``passed``, ``max_abs``, ``max_rel``, ``cosine_min``, k-NN figures, ...).
        A corrupt or mismatched folder raises :class:`~mimzoo.exporters.metadata.CorruptExportError`.

    >>> mimzoo.verify("out/tiny")["passed"]  # doctest: +SKIP
    True
    """
    encoder = None
    if model is not None:
        encoder = _source(model, pretrained=pretrained, weights=weights, seed=seed, img_size=None).encoder
    vdata = VerifyData(data=None if data is None else str(data), images=images, seed=seed)
    rep = verify_folder(Path(path), encoder=encoder, tolerances=dict(tolerances or {}), data=vdata,
                        say=progress or log.info)
    if raise_on_failure and not rep["passed"]:
        raise VerificationError(f"{path} fails verification: {'; '.join(rep['failures'])}", rep)
    return rep


def _source(model: Any, *, pretrained: bool, weights: Any, seed: int, img_size: int | None) -> Source:
    """The encoder to export (on the CPU, float32) and how to rebuild it."""
    if not isinstance(model, str):
        return Source(_cpu_float(model), model=str(getattr(model.info, "name", "model")))
    import torch

    from .load import load

    random_init = not pretrained and weights is None
    with torch.random.fork_rng(devices=[]):  # seeding must not disturb the caller's random state
        torch.manual_seed(seed)
        encoder = load(model, pretrained=pretrained, weights=weights, img_size=img_size)
    is_tag = isinstance(weights, str) and not any(c in weights for c in "/\\.") and not Path(weights).exists()
    tag = str(weights) if is_tag else None
    return Source(encoder, model=model, init_seed=seed if random_init else None, weights_tag=tag, img_size=img_size)


def _check_head(head: str | Path, tokens: bool) -> None:
    from ..exporters.spec import ExportError
    from ..tasks import read_spec

    if tokens:
        raise ExportError("--tokens exports a backbone's tokens; a task model (--head) gives logits or a mask: "
                          "drop --tokens or --head")
    read_spec(head)


def _with_head(src: Source, head: Path, fmt: str) -> Source:
    """`src` as a task export: the backbone plus the head folder, as one model (mimzoo.exporters.task)."""
    import dataclasses

    from ..exporters.task import load_task_model

    return dataclasses.replace(src, encoder=load_task_model(src.encoder, head, fmt), backbone=src.encoder,
                               head_dir=head)


def _cpu_float(encoder: Any) -> Any:
    import torch

    p = next(encoder.parameters())
    if p.device.type == "cpu" and p.dtype == torch.float32:
        return encoder.eval()
    return copy.deepcopy(encoder).to(device="cpu", dtype=torch.float32).eval()


def _name_of(model: Any) -> str:
    return model if isinstance(model, str) else str(getattr(getattr(model, "info", None), "name", "model"))


def _input_size(model: Any, img_size: int | None) -> tuple[int, ...]:
    """Input size known without building the model (registry or encoder), for the trtexec hint:
    ``(C, H, W)``, or ``(C, T, H, W)`` for a video encoder."""
    if not isinstance(model, str):
        return tuple(model.preprocess.with_size(img_size).batch_shape(1)[1:])
    from ..registry import get_registry

    try:
        return tuple(get_registry().model(model).variant.preprocess.with_size(img_size).batch_shape(1)[1:])
    except Exception:  # a folder or Hub name: the common default
        return (3, img_size or 224, img_size or 224)


def default_output(model: str, spec: ExportSpec) -> Path:
    """``<name>-<onnx|trt|openvino>-<precision>`` in the working directory.

    >>> default_output("hf-hub:acme/my-mae", ExportSpec(precision="int8")).name
    'my-mae-onnx-int8'
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model.split(":", 1)[-1].split("@")[0]).name or "model")
    return Path(f"{name}-{'trt' if spec.format == 'tensorrt' else spec.format}-{spec.precision}")



def bench(
    model: Any,
    *,
    backends: Sequence[str] = ("torch", "torch-compile", "onnxruntime", "onnxruntime-int8", "tensorrt"),
    batches: Sequence[int] = (1, 8, 32),
    iters: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    device: str = "cpu",
    pretrained: bool = True,
    weights: str | Path | None = None,
    seed: int = 0,
    img_size: int | None = None,
    exports: Mapping[str, str | Path] | None = None,
    workdir: str | Path | None = None,
    data: str | Path | None = "digits",
    images: int | None = None,
    memory: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Benchmark a model on several backends side by side (what ``mimzoo bench`` runs).

    Args:
        model: a zoo name, model folder, ``hf-hub:`` repo, or an encoder.
        backends: any of torch, torch-fp16, torch-compile, onnxruntime, onnxruntime-fp16, onnxruntime-int8,
            tensorrt; speedups are against ``torch`` at the same batch size.
        batches: batch sizes; iters: timed rounds (each runs every backend once); warmup: untimed calls first.
        threads: intra-op threads, the same for every backend (torch.set_num_threads, onnxruntime
            intra_op_num_threads; default every usable core); device: ``"cpu"`` or ``"cuda"``.
        pretrained, weights, seed, img_size: how to load `model` (as in :func:`export`).
        exports: backend -> an existing verified export folder to run instead of exporting again.
        workdir: where the exports are built and kept (default: a temporary folder, removed after).
        data, images: the images the exports are verified on (as in :func:`export`).
        memory: measure each backend's peak memory, alone in a child interpreter (slower).
        progress: called with one line per step.

    Returns:
        One dict per (backend, batch): status, throughput (images/s), p50_ms with q1_ms/q3_ms/min_ms/max_ms
        (``iqr_ms`` as text), p95_ms, peak_mib, speedup with the quartiles of its per-round ratios
        (``speedup_iqr``), threads (as the runtime reports them), note. The header that belongs with them
        (command, machine, load): :func:`mimzoo.exporters.bench_machine.bench_header`.

    >>> rows = mimzoo.api.export.bench("mae-vit-test", pretrained=False, backends=["torch", "onnxruntime"])  # doctest: +SKIP
    """
    import tempfile

    from ..exporters.bench import BenchConfig, run_bench

    say = progress or log.info
    load_opts = {"pretrained": pretrained, "weights": weights, "seed": seed, "img_size": img_size}
    src = _source(model, **load_opts)
    cfg = BenchConfig(backends=tuple(backends), batches=tuple(int(b) for b in batches), iters=iters, warmup=warmup,
                      threads=threads, device=device, exports={k: str(v) for k, v in (exports or {}).items()},
                      export_options={**(load_opts if isinstance(model, str) else {}), "data": data, "images": images},
                      memory=memory)
    with tempfile.TemporaryDirectory(prefix="mimzoo-bench-") as tmp:
        folder = Path(workdir) if workdir else Path(tmp)
        rows = run_bench(src.encoder, model, cfg, folder, say)
    return [r.to_dict() for r in rows]
