#!/usr/bin/env bash
# Creates .venv (if needed) and installs the project with the given extras.
# Usage: scripts/venv.sh EXTRAS   e.g. scripts/venv.sh sane  or  scripts/venv.sh dev,sane
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$1
if [[ ! -f $stamp || setup.cfg -nt $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[$1]"
  touch "$stamp"
fi
