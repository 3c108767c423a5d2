#!/usr/bin/env bash
# Create a kubernetes work pool (needs prefect-kubernetes installed); IMAGE has the project installed.
set -euo pipefail
POOL="${POOL:-kronos-k8s}"
IMAGE="${IMAGE:?set IMAGE to an image with kronos-batch[all] installed}"
prefect work-pool inspect "$POOL" >/dev/null 2>&1 || prefect work-pool create "$POOL" --type kubernetes
prefect work-pool get-default-base-job-template --type kubernetes >/tmp/k8s-template.json
python - "$IMAGE" <<'PY'
import json, sys
t = json.load(open("/tmp/k8s-template.json"))
t["variables"]["properties"]["image"]["default"] = sys.argv[1]
json.dump(t, open("/tmp/k8s-template.json", "w"))
PY
prefect work-pool update "$POOL" --base-job-template /tmp/k8s-template.json
echo "pool $POOL ready; run a worker in the cluster: prefect worker start --pool $POOL"
echo "and in prefect.yaml use work_pool.name: $POOL"
