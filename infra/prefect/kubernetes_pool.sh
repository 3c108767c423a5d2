#!/usr/bin/env bash
# Create (or update) the Kubernetes work pool `kronos-k8s` with infra/prefect/base-job-template.json: flow-run
# pods from the kronos-flows image, under the `kronos` service account, credentials from the kronos-s3 and
# kronos-catalog Secrets (envFrom, never parameters). IMAGE / NAMESPACE override the template's defaults.
# Needs prefect (and prefect-kubernetes where the worker runs). Then:
#   prefect deploy --all --prefect-file infra/prefect/prefect.yaml
#   prefect worker start --pool kronos-k8s      # in the cluster, image with prefect-kubernetes
set -euo pipefail
cd "$(dirname "$0")/../.."
POOL="${POOL:-kronos-k8s}"
TEMPLATE=infra/prefect/base-job-template.json
if [ -n "${IMAGE:-}${NAMESPACE:-}" ]; then
  TEMPLATE=$(mktemp)
  python - "$TEMPLATE" <<'PY'
import json, os, sys
t = json.load(open("infra/prefect/base-job-template.json"))
props = t["variables"]["properties"]
for var, env in (("image", "IMAGE"), ("namespace", "NAMESPACE")):
    if os.environ.get(env):
        props[var]["default"] = os.environ[env]
json.dump(t, open(sys.argv[1], "w"), indent=2)
PY
fi
if prefect work-pool inspect "$POOL" >/dev/null 2>&1; then
  prefect work-pool update "$POOL" --base-job-template "$TEMPLATE"
else
  prefect work-pool create "$POOL" --type kubernetes --base-job-template "$TEMPLATE"
fi
prefect work-pool set-concurrency-limit "$POOL" 2
echo "pool $POOL ready; run a worker in the cluster: prefect worker start --pool $POOL"
echo "deploy: prefect deploy --all --prefect-file infra/prefect/prefect.yaml"
