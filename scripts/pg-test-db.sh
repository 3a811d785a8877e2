#!/usr/bin/env bash
# Sourced by scripts/test.sh: start the local PostgreSQL 15 server if needed and create a
# throwaway database (dropped on exit). Sets PG_TEST_URL.
PG_TEST_DB="ebike_test_$$"
_pg() { if [[ $(id -u) -eq 0 ]]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi; }
pg_test_db_create() {
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $4}' | grep -q online; then
    if [[ -z "$(pg_lsclusters -h 2>/dev/null)" ]]; then
      _pg "true"; pg_createcluster 15 main >/dev/null
    fi
    pg_ctlcluster 15 main start
  fi
  for _ in $(seq 1 30); do _pg "pg_isready -q" && break; sleep 1; done
  _pg "psql -q -v ON_ERROR_STOP=1 -c \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='ebike_test') THEN CREATE ROLE ebike_test LOGIN SUPERUSER PASSWORD 'ebike_test'; END IF; END\\\$\\\$;\""
  _pg "createdb -O ebike_test $PG_TEST_DB"
  PG_TEST_URL="postgresql+psycopg://ebike_test:ebike_test@127.0.0.1:5432/$PG_TEST_DB"
  export PG_TEST_URL
}
pg_test_db_drop() {
  _pg "psql -q -c 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname LIKE '\''$PG_TEST_DB%'\'' AND pid <> pg_backend_pid()'" >/dev/null 2>&1 || true
  for db in $(_pg "psql -Atq -c \"SELECT datname FROM pg_database WHERE datname LIKE '$PG_TEST_DB%'\""); do
    _pg "dropdb --if-exists $db" || true
  done
}
