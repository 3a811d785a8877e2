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
.venv/bin/portal db upgrade
.venv/bin/portal demo
if .venv/bin/portal routes 2>/dev/null | grep -q "agent_api"; then
  .venv/bin/portal demo-agent --url "http://$HOST:$PORT" &
  AGENT_PID=$!
  trap 'kill $AGENT_PID 2>/dev/null || true' EXIT
fi
echo "portal: http://$HOST:$PORT/"
exec_cmd=(.venv/bin/portal run --host "$HOST" --port "$PORT")
"${exec_cmd[@]}"
