#!/usr/bin/env bash
# bench-scale.sh — one worker with --threads 1 vs 2 vs the default (no flag: the cores, capped
# by the 2 source streams), and 1 vs 2 worker processes (--partition),
# copying a 2-master Redis 6.2 cluster into a standalone Valkey 8 (TLS). Loopback only.
#
#   FERRY_BENCH_KEYS  keys (200000, ~100-byte strings and small hashes)
#   FERRY_BENCH_REPS  repetitions, median reported (3)
#   FERRY_BENCH_PORT  first port (27100): masters PORT, PORT+1; target PORT+2
#
# Prints one line per configuration: median wall seconds, keys/s, ferry's CPU seconds (user+sys,
# all its processes). Every server runs on this machine: read docs/benchmarks.md for what a
# figure on a shared 2-core box can and cannot say.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${FERRY_BENCH_KEYS:-200000}
REPS=${FERRY_BENCH_REPS:-3}
P=${FERRY_BENCH_PORT:-27100}
SERVERS="$ROOT/scripts/test-servers.sh"
eval "$(bash "$SERVERS" env)"
BIN="$FERRY_SERVERS/bin/6.2"
PY=${FERRY_BENCH_PY:-$HOME/.cache/ferry-bench/venv/bin/python}
FERRY=${FERRY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry}
PASS=ferry-test-pass
WORK=$(mktemp -d /tmp/ferry-bench-scale.XXXX)
export FERRY_RUN=$WORK/servers
trap 'for p in $P $((P + 1)); do "$BIN/redis-cli" -p $p shutdown nosave >/dev/null 2>&1 || true; done; bash "$SERVERS" stop-all >/dev/null; rm -rf "$WORK"' EXIT

# Two cluster masters by hand (redis-cli --cluster create wants three).
for p in $P $((P + 1)); do
  mkdir -p "$WORK/$p"
  "$BIN/redis-server" --port $p --bind 127.0.0.1 --dir "$WORK/$p" --daemonize yes --save '' --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --logfile "$WORK/$p/log" >/dev/null
done
sleep 0.5
"$BIN/redis-cli" -p $P cluster addslots $(seq 0 8191) >/dev/null
"$BIN/redis-cli" -p $((P + 1)) cluster addslots $(seq 8192 16383) >/dev/null
"$BIN/redis-cli" -p $P cluster meet 127.0.0.1 $((P + 1)) >/dev/null
until [ "$("$BIN/redis-cli" -p $P cluster info | tr -d '\r' | awk -F: '/cluster_state/ {print $2}')" = ok ] &&
  [ "$("$BIN/redis-cli" -p $((P + 1)) cluster info | tr -d '\r' | awk -F: '/cluster_state/ {print $2}')" = ok ]; do sleep 0.2; done
bash "$SERVERS" start-standalone valkey8 $((P + 2)) --tls --password "$PASS" >/dev/null

"$PY" - "$P" "$KEYS" <<'PY'
import sys
from redis.cluster import RedisCluster
port, n = int(sys.argv[1]), int(sys.argv[2])
rc = RedisCluster(host="127.0.0.1", port=port)
for start in range(0, n, 5000):
    p = rc.pipeline()
    for i in range(start, min(n, start + 5000)):
        if i % 4 == 3:
            p.hset(f"h:{i}", mapping={"a": i, "b": "x" * 40})
        else:
            p.set(f"k:{i}", "v" * 100)
    p.execute()
PY
log() { echo "bench-scale: $*" >&2; }
log "source: 2 masters, $("$BIN/redis-cli" -p $P dbsize) + $("$BIN/redis-cli" -p $((P + 1)) dbsize) keys; target Valkey 8 TLS; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

target_flush() { "$FERRY_SERVERS/bin/valkey8/redis-cli" -p $((P + 2)) --tls --cacert "$FERRY_TEST_CA" -a "$PASS" --no-auth-warning flushall >/dev/null; }
COMMON=(migrate --source redis://127.0.0.1:$P --target rediss://:$PASS@127.0.0.1:$((P + 2))
  --target-cacert "$FERRY_TEST_CA" --no-verify --fresh --progress none)

one() { # NAME WORKERS THREADS -> "wall cpu" of one rep
  local workers=$2 threads=$3 t0 t1 i cpu=0
  target_flush
  t0=$(date +%s.%N)
  for ((i = 0; i < workers; i++)); do
    local part=()
    [ "$workers" -gt 1 ] && part=(--partition "$i/$workers")
    local th=(--threads "$threads")
    [ "$threads" = default ] && th=()
    /usr/bin/time -f "%U %S" -o "$WORK/time.$i" "$FERRY" "${COMMON[@]}" "${part[@]}" "${th[@]}" \
      --checkpoint "$WORK/cp.$i.json" 2>"$WORK/err.$i" &
  done
  for ((i = 0; i < workers; i++)); do
    wait -n || { cat "$WORK"/err.* >&2; exit 1; }
  done
  t1=$(date +%s.%N)
  local copied
  copied=$("$FERRY_SERVERS/bin/valkey8/redis-cli" -p $((P + 2)) --tls --cacert "$FERRY_TEST_CA" -a "$PASS" --no-auth-warning dbsize)
  [ "$copied" = "$KEYS" ] || { log "the target holds $copied keys, not $KEYS"; cat "$WORK"/err.* >&2; exit 1; }
  for ((i = 0; i < workers; i++)); do
    cpu=$(awk -v c="$cpu" '{print c + $1 + $2}' "$WORK/time.$i")
  done
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') $cpu"
}

# Configurations alternate run by run (1 1, 1 2, …, then again), so that a burst of load from
# elsewhere on the machine hits them alike instead of all runs of one configuration.
CFGS=("1 1" "1 2" "1 default" "2 1")
declare -A WALLS CPUS
for ((r = 0; r < REPS; r++)); do
  for cfg in "${CFGS[@]}"; do
    read -r workers threads <<<"$cfg"
    read -r w c < <(one x "$workers" "$threads")
    WALLS[$cfg]+="$w " CPUS[$cfg]+="$c "
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | sed -n "$(((REPS + 1) / 2))p"; }
for cfg in "${CFGS[@]}"; do
  read -r workers threads <<<"$cfg"
  mw=$(median <<<"${WALLS[$cfg]}")
  mc=$(median <<<"${CPUS[$cfg]}")
  printf 'workers %s, --threads %s: median %ss (%s), %.0f keys/s, ferry CPU median %ss (%s)\n' "$workers" \
    "$threads" "$mw" "${WALLS[$cfg]% }" "$(awk -v n="$KEYS" -v w="$mw" 'BEGIN {print n / w}')" "$mc" "${CPUS[$cfg]% }"
done
