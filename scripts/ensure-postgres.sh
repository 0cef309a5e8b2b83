#!/usr/bin/env bash
# Prints a PostgreSQL URL for the test suite, starting (and, as root, installing) a local
# server when needed. Prints nothing when no PostgreSQL can be had: those tests then skip.
# GATEWAY_TEST_POSTGRES_URL, when already set, is printed unchanged.
set -euo pipefail
if [ -n "${GATEWAY_TEST_POSTGRES_URL:-}" ]; then echo "$GATEWAY_TEST_POSTGRES_URL"; exit 0; fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi; }
if ! command -v pg_lsclusters >/dev/null; then
  { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql; } >&2 || exit 0
fi
cluster=$(pg_lsclusters -h | head -n1)
[ -n "$cluster" ] || exit 0
read -r ver name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then as_root pg_ctlcluster "$ver" "$name" start >&2 || exit 0; fi
psql_pg() { as_root runuser -u postgres -- psql -p "$port" -qtAX "$@"; }
psql_pg -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='gateway') THEN CREATE ROLE gateway LOGIN PASSWORD 'gateway'; END IF; END\$\$;" >&2 || exit 0
[ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname='gateway_test'")" = 1 ] || psql_pg -c "CREATE DATABASE gateway_test OWNER gateway" >&2
echo "postgresql+psycopg://gateway:gateway@127.0.0.1:${port}/gateway_test"
