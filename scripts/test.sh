#!/usr/bin/env bash
# The project's test command (see README): installs the real test servers (cached in
# $FERRY_SERVERS, default ~/.cache/ferry-servers; < 1 s when already there), then runs every
# test in release mode against them. Extra arguments go to `cargo test`, e.g.
#   bash scripts/test.sh --test servers_smoke
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

trap 'echo "scripts/test.sh: FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

bash scripts/test-servers.sh install
eval "$(bash scripts/test-servers.sh env)" # exports FERRY_SERVERS, FERRY_TEST_CA, ...
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

echo "scripts/test.sh: cargo test --release --no-fail-fast $* (FERRY_SERVERS=$FERRY_SERVERS)" >&2
log=$(mktemp)
set +e
cargo test --release --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo's own last line is the doc-test run, which
# has no tests of its own).
tally=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;/) p += $(i-1); if ($(i) ~ /^failed;/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed", p, f }' "$log")
rm -f "$log"
if [ -n "${FERRY_TEST_SUMMARY:-}" ]; then echo "$tally" >"$FERRY_TEST_SUMMARY"; fi
if [ "$status" -ne 0 ]; then
  echo "scripts/test.sh: FAILED (cargo test exit $status)" >&2
else
  echo "scripts/test.sh: all tests passed" >&2
fi
echo "$tally"
exit "$status"
