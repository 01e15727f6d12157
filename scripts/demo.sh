#!/usr/bin/env bash
# demo.sh — a real ferry migration, end to end, on this machine.
#
# Installs the test servers (cached after the first run), builds ferry, starts an old plain-TCP
# Redis 6.2 with sample data and a new Redis 7.0 with TLS and a password, migrates, verifies,
# prints the summary, and stops both servers.
#   DEMO_SOURCE_PORT (default 26379), DEMO_TARGET_PORT (default 26380)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC_PORT=${DEMO_SOURCE_PORT:-26379}
DST_PORT=${DEMO_TARGET_PORT:-26380}
PASS=demo-target-pass
export FERRY_SERVERS=${FERRY_SERVERS:-$HOME/.cache/ferry-servers}
export FERRY_RUN=${FERRY_RUN:-/tmp/ferry-demo}

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

say "installing test servers (cached after the first run)"
bash scripts/test-servers.sh install
say "building ferry (release)"
cargo build --release --quiet
FERRY=${CARGO_TARGET_DIR:-target}/release/ferry # cargo honours CARGO_TARGET_DIR
CLI=$FERRY_SERVERS/bin/7.0/redis-cli
CA=$FERRY_SERVERS/tls/ca.crt

cleanup() { bash scripts/test-servers.sh stop-all >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

say "starting an old Redis 6.2 (plain TCP) on :$SRC_PORT and a new Redis 7.0 (TLS + password) on :$DST_PORT"
bash scripts/test-servers.sh start-standalone 6.2 "$SRC_PORT"
bash scripts/test-servers.sh start-standalone 7.0 "$DST_PORT" --tls --password "$PASS"

say "filling the source: 100 000 strings, every other type, TTLs, two databases"
src() { "$CLI" -h 127.0.0.1 -p "$SRC_PORT" "$@" >/dev/null; }
src DEBUG POPULATE 100000 session 64
for i in $(seq 1 200); do echo "SET cache:$i value-$i PX $((60000 + i * 1000))"; done | "$CLI" -p "$SRC_PORT" >/dev/null
src RPUSH queue:jobs job1 job2 job3
src HSET user:1 name Ada email ada@example.com
src SADD tags redis tls migration
src ZADD leaderboard 100 alice 250 bob +inf carol
src XADD events '*' type signup user 1
src -n 3 SET other-db yes
"$CLI" -p "$SRC_PORT" INFO keyspace | grep '^db' >&2

say "ferry migrate"
FERRY_TARGET_PASSWORD=$PASS "$FERRY" migrate \
  --source "redis://127.0.0.1:$SRC_PORT" \
  --target "rediss://127.0.0.1:$DST_PORT" --target-cacert "$CA" \
  --checkpoint "${TMPDIR:-/tmp}/ferry-demo.checkpoint.json" --fresh \
  --report "${TMPDIR:-/tmp}/ferry-demo-report.json"

say "the target now holds"
"$CLI" --tls --cacert "$CA" -a "$PASS" --no-auth-warning -p "$DST_PORT" INFO keyspace | grep '^db' >&2
echo "TTL of cache:200 on the target: $("$CLI" --tls --cacert "$CA" -a "$PASS" --no-auth-warning -p "$DST_PORT" PTTL cache:200) ms" >&2
say "report: ${TMPDIR:-/tmp}/ferry-demo-report.json"
cat "${TMPDIR:-/tmp}/ferry-demo-report.json"
