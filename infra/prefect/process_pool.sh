#!/usr/bin/env bash
# Create the process work pool used by prefect.yaml (idempotent), then print the worker command.
set -euo pipefail
POOL="${POOL:-kronos-process}"
prefect work-pool inspect "$POOL" >/dev/null 2>&1 || prefect work-pool create "$POOL" --type process
prefect work-pool set-concurrency-limit "$POOL" 1
echo "pool $POOL ready. Start a worker where the repo and venv live:"
echo "  prefect worker start --pool $POOL --limit 1"
