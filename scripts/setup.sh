#!/usr/bin/env bash
# Create ./.venv with everything the project needs, from the lock file: torch pinned and installed FIRST
# (requirements/torch.txt), then every dependency at its locked version (requirements/lock.txt), then the
# project itself without resolving anything again, then `pip check`. Idempotent: a second run verifies.
# Any failed step stops here with pip's own output and a non-zero exit, never a half-installed "ok".
# Refresh the lock after changing pyproject.toml's dependencies: bash scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

run() {  # run a step quietly; on failure print its full output and stop
  local what=$1 log
  shift
  log=$(mktemp)
  echo "[setup] $what"
  if ! "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location .* is ignored" "$log" >&2 || true
    echo "[setup] FAILED: $what ($*)" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}

if [ ! -x .venv/bin/python ]; then
  run "creating .venv with $($PY --version 2>&1)" "$PY" -m venv .venv
fi
. .venv/bin/activate
TORCH_PIN=$(grep -E '^torch==' requirements/torch.txt)
if ! python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '${TORCH_PIN#torch==}')" 2>/dev/null; then
  run "installing $TORCH_PIN first (requirements/torch.txt)" pip install -r requirements/torch.txt
fi
run "installing the locked dependencies (requirements/lock.txt)" \
  pip install -r requirements/lock.txt -c requirements/torch.txt
run "installing the project (no dependency resolution)" pip install --no-deps -e .
run "checking the environment (pip check)" pip check
python - <<'PY'
import importlib
import torch

for name in ("kronos_core", "pipeline", "flows", "serving", "ray", "prefect", "kronos_finance"):
    importlib.import_module(name)
print(f"[setup] ok: torch {torch.__version__}, every package imports")
PY
