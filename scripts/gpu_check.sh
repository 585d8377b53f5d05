#!/usr/bin/env bash
# The GPU checks in one go, on a fresh NVIDIA GPU machine: the `cuda` tests (fp16/bf16 networks against
# fp32, the GPU and NV noise sources, --medvram / --lowvram images and peak memory, fp16 generation,
# interrupt), then the 512x512 txt2img benchmark on the card (ours next to diffusers). About 8 minutes
# on a machine with a network (most of it installing the pinned requirements into ./venv).
#
#   bash scripts/gpu_check.sh                       # installs what it needs through launch.py, then runs
#   PYTHON=python3 bash scripts/gpu_check.sh        # use a Python that already has CUDA torch and the app's
#                                                   # requirements (no install; e.g. a machine image)
#   WHEELS=.whl PYTHON=python3 bash scripts/gpu_check.sh   # ... first adding wheels from a folder (offline)
#
# Prints the card, the test results, the peak memory figures and the benchmark table; exits non-zero if a
# test fails. Put the figures in the README (Benchmarks) with the card's name.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

if [ -z "${PYTHON:-}" ]; then
    python3 launch.py --test -m cuda -rs -s -p no:cacheprovider   # creates ./venv, installs the locks, lints
    PY=venv/bin/python
else
    PY="$PYTHON"
    if [ -n "${WHEELS:-}" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site "$WHEELS"/*.whl
        export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
    "$PY" -m pytest -m cuda -rs -s -p no:cacheprovider tests/test_cuda.py
fi

"$PY" -m modules.benchmark generate --device cuda --sizes 512 --steps 20 --dir "${BENCH_DIR:-/tmp/sdbench-cuda}"
