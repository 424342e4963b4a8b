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
#      and `pip install --no-deps --no-build-isolation --no-index -e .` (no network needed);
#   4. python3 itself; gpu_acceptance.py then puts this checkout on PYTHONPATH.
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
    if python3 -m venv --system-site-packages .venv-gpu >/dev/null 2>&1 \
        && .venv-gpu/bin/python -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1; then
        PY=.venv-gpu/bin/python
    else
        echo "note: could not install mimzoo into .venv-gpu; running from this checkout with python3" >&2
        PY=python3
    fi
fi
if [ -z "$PY" ]; then
    echo "error: no Python with torch found; set MIMZOO_PYTHON=/path/to/python (one that imports torch)" >&2
    exit 2
fi
exec "$PY" benchmarks/gpu_acceptance.py "$@"
