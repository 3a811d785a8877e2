#!/usr/bin/env bash
# Sets up and runs the whole test suite: lint, every test on SQLite, then every database test
# on a throwaway PostgreSQL database (the local PostgreSQL 15 server is started if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh test
scripts/venv.sh dev,sane
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .

# Browser tests run in their own, serial pytest process: Playwright's browser and event loop do
# not mix reliably with other tests' child processes inside one xdist worker.
echo "== tests on SQLite"
pytest -n 2 -q -m "not browser" "$@"
echo "== browser tests on SQLite"
pytest -q -m browser "$@"

echo "== database tests on PostgreSQL"
source scripts/pg-test-db.sh
trap pg_test_db_drop EXIT
pg_test_db_create
TEST_DATABASE_URL="$PG_TEST_URL" pytest -n 2 -q -m "db and not browser" "$@"
echo "== browser tests on PostgreSQL"
TEST_DATABASE_URL="$PG_TEST_URL" pytest -q -m "db and browser" "$@"
