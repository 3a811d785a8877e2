#!/usr/bin/env bash
# Sets up and serves the portal on its embedded default: SQLite, demo data, a demo scanner agent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh run
scripts/venv.sh sane
export PORTAL_INSTANCE_DIR=${PORTAL_INSTANCE_DIR:-$PWD/instance}
export PORTAL_DEMO=1
HOST=${PORTAL_HOST:-127.0.0.1}
PORT=${PORTAL_PORT:-5000}
URL="http://$HOST:$PORT"
PORTAL=.venv/bin/portal

$PORTAL db upgrade
$PORTAL demo

$PORTAL run --host "$HOST" --port "$PORT" &
PORTAL_PID=$!
trap 'kill $AGENT_PID $PORTAL_PID 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 60); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
# The demo scanner agent (demo driver) enrolled to window 1 of 浦东车管大队花木登记点.
$PORTAL demo-agent --url "$URL" >"$PORTAL_INSTANCE_DIR/demo-agent.log" 2>&1 &
AGENT_PID=$!
echo
echo "portal: $URL/   (demo agent log: $PORTAL_INSTANCE_DIR/demo-agent.log; Ctrl-C stops both)"
wait $PORTAL_PID
