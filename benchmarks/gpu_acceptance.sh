#!/usr/bin/env bash
# GPU acceptance run (issue 12): doctor, export --trt fp32/fp16/int8 + verify, throughput (torch eager,
# torch.compile fp16/bf16, onnxruntime-CUDA, TensorRT) at batch 1 and 32, fp16 and bf16 pretraining
# steps and a k-NN eval, all on one NVIDIA GPU in at most 10 minutes. Steps that cannot run here are
# reported as "skipped: <why>"; the exit code is 1 only when a step that could run failed.
# Writes benchmarks/gpu_<device>.md (see benchmarks/gpu_acceptance.py for the options).
#
# Python, first that works:
#   1. $MIMZOO_PYTHON;
#   2. ./.venv/bin/python (the project's venv, if it imports torch);
#   3. ./.venv-gpu/bin/python, made here with --system-site-packages (the machine's torch/timm/onnx)
#      and `pip install --no-deps --no-build-isolation --no-index -e .` (no network needed); when that
#      install cannot run, gpu_acceptance.py puts this checkout and its plugins on PYTHONPATH;
#   4. python3 itself, the same way.
#
# On a GPU machine without network, from a fresh clone:
#   bash benchmarks/gpu_acceptance.sh            # or: MIMZOO_PYTHON=python3 bash benchmarks/gpu_acceptance.sh
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

has_torch() { "$1" -c "import torch" >/dev/null 2>&1; }

PY="${MIMZOO_PYTHON:-}"
if [ -z "$PY" ] && [ -x .venv/bin/python ] && has_torch .venv/bin/python; then
    PY=.venv/bin/python
fi
if [ -z "$PY" ] && [ -x .venv-gpu/bin/python ] && has_torch .venv-gpu/bin/python; then
    PY=.venv-gpu/bin/python
fi
if [ -z "$PY" ] && command -v python3 >/dev/null && has_torch python3; then
    if [ -x .venv-gpu/bin/python ] || python3 -m venv --system-site-packages .venv-gpu >/dev/null 2>&1; then
        PY=.venv-gpu/bin/python
        # without setuptools/wheel on the machine this fails; gpu_acceptance.py then uses PYTHONPATH
        "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
            || echo "note: mimzoo not installed into .venv-gpu; running this checkout through PYTHONPATH" >&2
    else
        PY=python3
    fi
fi
if [ -z "$PY" ]; then
    echo "error: no Python with torch found; set MIMZOO_PYTHON=/path/to/python (one that imports torch)" >&2
    exit 2
fi
# Packages the machine lacks (e.g. click, scikit-learn): download their wheels on a connected machine
# (pip download --no-deps -d wheels click scikit-learn), carry wheels/, and set MIMZOO_WHEELS=wheels.
if [ -n "${MIMZOO_WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps "$MIMZOO_WHEELS"/*.whl \
        || echo "warning: could not install the wheels in $MIMZOO_WHEELS; steps that need them are skipped" >&2
fi
exec "$PY" benchmarks/gpu_acceptance.py "$@"
