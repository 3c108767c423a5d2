#!/usr/bin/env bash
# Start everything locally: a Prefect server on 127.0.0.1:<port> (default 4200) and the served deployments
# (nightly, backtest, finetune, maintenance) on a generated demo market. Open the UI, pick
# "nightly-forecast / nightly", "Run" -> "Custom run". Ctrl-C stops both.
# Usage: scripts/start_local.sh [port]   (env: KRONOS_DATA_DIR, KRONOS_INPUT_URL, KRONOS_OUTPUT_URL,
# KRONOS_REGISTRY, PREFECT_HOME; PAUSED=1 registers the cron schedules inactive)
# - Prefect home: $PREFECT_HOME, default <data dir>/prefect_home (<data dir> = $KRONOS_DATA_DIR or
#   ./demo_data): the same folder kronos-nightly records its runs in, so they show up in this UI too.
# - The UI calls the API on the port it was started on (PREFECT_SERVER_UI_API_URL; Prefect's own default is
#   built from PREFECT_SERVER_API_PORT, 4200, whatever --port says).
# - The UI bundle Prefect copies on first start goes to $PREFECT_HOME/ui_build
#   (PREFECT_SERVER_UI_STATIC_DIRECTORY), not into the virtualenv's site-packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-4200}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
PREFECT="$(dirname "$PY")/prefect"; [ -x "$PREFECT" ] || PREFECT=prefect
DATA="${KRONOS_DATA_DIR:-$PWD/demo_data}"
export KRONOS_INPUT_URL="${KRONOS_INPUT_URL:-$DATA/market}"
export KRONOS_OUTPUT_URL="${KRONOS_OUTPUT_URL:-$DATA/output}"
export KRONOS_REGISTRY="${KRONOS_REGISTRY:-$DATA/models/kronos-demo}"
export PREFECT_HOME="${PREFECT_HOME:-$DATA/prefect_home}"
PREFECT_HOME="$(mkdir -p "$PREFECT_HOME" && cd "$PREFECT_HOME" && pwd)"  # absolute
export PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"

# a demo market ending at the last completed session, so the default as_of (last session) has data
if [ "$KRONOS_INPUT_URL" = "$DATA/market" ]; then
  "$PY" -m flows.cli --data-dir "$DATA" --prepare-only --refresh-stale
fi

# the UI's API URL and the bundle folder are server settings: without them the UI on any port but 4200 calls
# http://127.0.0.1:4200/api, and the bundle is copied into site-packages
UI_STATIC="${PREFECT_SERVER_UI_STATIC_DIRECTORY:-${PREFECT_UI_STATIC_DIRECTORY:-$PREFECT_HOME/ui_build}}"
env -u PREFECT_API_URL -u PREFECT_UI_API_URL -u PREFECT_SERVER_UI_API_URL \
  PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$PORT" \
  PREFECT_SERVER_UI_API_URL="$PREFECT_API_URL" PREFECT_SERVER_UI_STATIC_DIRECTORY="$UI_STATIC" \
  "$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$PREFECT_HOME/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER ${SERVE:-} 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 120); do
  curl -sf "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { echo "server exited; see $PREFECT_HOME/server.log"; exit 1; }
  sleep 0.5
done
echo "Prefect UI:  http://127.0.0.1:$PORT   (server log: $PREFECT_HOME/server.log)"
echo "Prefect home: $PREFECT_HOME (kronos-nightly --data-dir $DATA records its runs here too)"
echo "Market:      $KRONOS_INPUT_URL"
echo "Output:      $KRONOS_OUTPUT_URL"
echo "Registry:    $KRONOS_REGISTRY (finetune promotes here; the nightly forecasts with its current model)"
echo "Deployments: nightly-forecast/nightly (cron 17:30 America/New_York Mon-Fri), walk-forward-backtest/backtest,"
echo "             finetune/finetune (weekly, paused until you turn it on), table-maintenance/maintenance (weekly)"
echo "CLI trigger: $PREFECT deployment run 'nightly-forecast/nightly' --watch"
"$PY" -m flows.deploy --input-url "$KRONOS_INPUT_URL" --output-url "$KRONOS_OUTPUT_URL" \
  --registry "$KRONOS_REGISTRY" ${PAUSED:+--paused} &
SERVE=$!
wait $SERVE
