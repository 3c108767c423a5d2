#!/usr/bin/env bash
# Create ./.venv with everything the project needs (CPU torch pinned and installed first).
# Idempotent: a second run only checks that the pins are satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# 1. torch first, pinned: an unpinned torch requirement resolved first pulls a multi-GB CUDA build.
if ! python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "[setup] installing torch==$TORCH_VERSION"
  pip install -q "torch==$TORCH_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
fi
# 2. the project with every extra and the test tools (boto3 pin stops a long resolver backtrack).
echo "[setup] installing the project and its extras"
pip install -q -e ".[all,test]" "torch==$TORCH_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, kronos_core; print('[setup] ok: torch', torch.__version__)"
