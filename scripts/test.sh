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

echo "scripts/test.sh: cargo test --release $* (FERRY_SERVERS=$FERRY_SERVERS)" >&2
cargo test --release "$@"
echo "scripts/test.sh: all tests passed" >&2
