#!/usr/bin/env bash
# bench.sh — end-to-end benchmark of ferry against real servers (loopback only).
#
#   scripts/bench.sh [SHAPES]        SHAPES: small (default), mixed, large, all (those three),
#                                    bigkeys, or a comma list
#
# Starts a Redis 6.2 source (plain TCP) and a Valkey 8.0 target (TLS + password), seeds each
# dataset shape, then measures in one run, alternating the order every repetition:
#   live      ferry migrate --source … (SCAN/PTTL/DUMP → RESTORE ABSTTL)
#   rdb       ferry migrate --rdb <the source's own SAVE file>          ("n/a" if unsupported)
#   limit     the same RESTORE commands, generated beforehand, replayed with redis-cli --pipe:
#             what the target can ingest at best
#   baseline  a pipelined redis-py SCAN/DUMP/RESTORE script (benches/e2e/baseline.py)
# plus ferry's CPU seconds and peak RSS (/usr/bin/time -v), and peak RSS again at 4x the data.
# `bigkeys` (issue #14's big keys: 1M-field hash, 1M list, 500k zset and set, 40 MB string, 200k
# stream with groups) runs live and limit only, and also measures how long the source is blocked
# (benches/e2e/latency.py: worst PING, slowest command in the SLOWLOG) during ferry's run and
# during the DUMPs that write the RESTORE file (what a DUMP-based copy costs the source).
# Prints a table of medians and ratios and writes it as JSON (target/bench/e2e.json).
# Docs: docs/benchmarks.md.
#
# Environment:
#   FERRY_BENCH_KEYS   keys of `small` (1000000); mixed = KEYS/10, large = KEYS/100 (10-100 KB)
#   FERRY_BENCH_REPS   repetitions, median reported (3)
#   FERRY_BENCH_4X     shapes re-run at 4x the keys for the memory check (small; "" for none)
#   FERRY_BENCH_SKIP   methods to leave out, comma list (e.g. baseline)
#   FERRY_BENCH_ARGS   extra flags for both ferry runs (e.g. "--writers 8 --batch-keys 500")
#   FERRY_BIN          ferry binary to test (default: cargo build --release, CARGO_TARGET_DIR honoured)
#   FERRY_BIN_BEFORE   an older ferry binary: also measured in the same run, as methods `live-before`
#                      and `rdb-before` in the same rotation (a before/after table on the same load)
#   FERRY_BENCH_OUT    where e2e.json goes (target/bench); FERRY_BENCH_WORK: data files (/tmp/ferry-bench)
#   FERRY_BENCH_PORT   source port (26379); the target is PORT+1
#   FERRY_BENCH_PERF   "live" or "rdb": record that run under `perf record -g` (rep 1) into WORK
#   FERRY_BENCH_KEEP   1: leave the servers running at exit and reuse them (and the seeded 1x
#                      data) next time, for quick before/after runs while tuning
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
esac
SHAPES=${1:-small}
[ "$SHAPES" = all ] && SHAPES=small,mixed,large
KEYS=${FERRY_BENCH_KEYS:-1000000}
REPS=${FERRY_BENCH_REPS:-3}
X4=${FERRY_BENCH_4X-small}
SKIP=,${FERRY_BENCH_SKIP:-},
OUT=${FERRY_BENCH_OUT:-$ROOT/target/bench}
WORK=${FERRY_BENCH_WORK:-/tmp/ferry-bench}
SRC=${FERRY_BENCH_PORT:-26379}
DST=$((SRC + 1))
PASS=ferry-bench-pass
read -r -a EXTRA <<<"${FERRY_BENCH_ARGS:-}"
# Our own run dir: the test suite's `test-servers.sh stop-all` must not stop our servers, nor us theirs.
export FERRY_RUN=${FERRY_BENCH_RUN:-/tmp/ferry-bench-servers}
SERVERS=$ROOT/scripts/test-servers.sh
CACHE=$(realpath -m "${FERRY_SERVERS:-$HOME/.cache/ferry-servers}")
CLI=$CACHE/bin/7.0/redis-cli
CA=$CACHE/tls/ca.crt
VENV=${FERRY_BENCH_VENV:-$HOME/.cache/ferry-bench/venv}
E2E=$ROOT/benches/e2e

log() { echo "bench: $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
src_cli() { "$CLI" -h 127.0.0.1 -p "$SRC" "$@"; }
dst_cli() { "$CLI" -h 127.0.0.1 -p "$DST" --tls --cacert "$CA" -a "$PASS" --no-auth-warning "$@"; }
skipped() { [[ $SKIP == *",$1,"* ]]; }
cpu_of() { # PORT -> user+sys CPU seconds of the server on PORT so far
  local pid st
  pid=$(cat "$FERRY_RUN/$1/redis.pid")
  st=$(cat "/proc/$pid/stat")
  st=${st##*) }
  awk -v t="$(getconf CLK_TCK)" '{printf "%.3f", ($12 + $13) / t}' <<<"$st"
}

# ------------------------------------------------------------------ tools
setup() {
  command -v bc >/dev/null && [ -x /usr/bin/time ] || {
    log "installing bc and time (apt)"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bc time >/dev/null
  }
  "$SERVERS" install
  if ! "$VENV/bin/python" -c 'import redis' 2>/dev/null; then
    log "creating $VENV with redis-py"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q redis
  fi
  if [ -z "${FERRY_BIN:-}" ]; then
    log "building ferry (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin ferry)
    FERRY_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry
  fi
  [ -x "$FERRY_BIN" ] || die "no ferry binary at $FERRY_BIN"
  [ -z "${FERRY_BIN_BEFORE:-}" ] || [ -x "$FERRY_BIN_BEFORE" ] || die "no ferry binary at FERRY_BIN_BEFORE=$FERRY_BIN_BEFORE"
  mkdir -p "$WORK" "$OUT"
  HAVE_NO_VERIFY=0
  "$FERRY_BIN" migrate --help | grep -q -- '--no-verify' && HAVE_NO_VERIFY=1
}

start_servers() {
  if [ "${FERRY_BENCH_KEEP:-0}" = 1 ] && src_cli ping >/dev/null 2>&1 && dst_cli ping >/dev/null 2>&1; then
    log "reusing the servers left running by FERRY_BENCH_KEEP=1"
  else
    "$SERVERS" stop-all >/dev/null # leftovers of an interrupted run (only our run dir)
    "$SERVERS" start-standalone 6.2 "$SRC" >/dev/null
    "$SERVERS" start-standalone valkey8 "$DST" --tls --password "$PASS" >/dev/null
  fi
  [ "${FERRY_BENCH_KEEP:-0}" = 1 ] || trap '"$SERVERS" stop-all >/dev/null' EXIT
  SRC_VER=$(src_cli info server | tr -d '\r' | awk -F: '/^redis_version/ {print $2}')
  DST_VER=$(dst_cli info server | tr -d '\r' | awk -F: '/^(valkey|redis)_version/ {v=$2} END {print v}')
  log "source: Redis $SRC_VER on 127.0.0.1:$SRC (plain); target: Valkey $DST_VER on 127.0.0.1:$DST (TLS, password)"
}

# ------------------------------------------------------------------ data
shape_keys() { # SHAPE -> key count at 1x
  case $1 in
    small) echo "$KEYS" ;;
    mixed) echo $((KEYS / 10)) ;;
    large) echo $((KEYS / 100)) ;;
    bigkeys) echo 1006 ;; # 6 big keys and 1000 small ones, whatever KEYS
    *) die "unknown shape $1 (small, mixed, large, bigkeys)" ;;
  esac
}

seed() { # SHAPE COUNT FIRST: add COUNT keys numbered from FIRST to the source
  local out
  out=$(python3 "$E2E/seed.py" "$1" "$2" --first "$3" | src_cli --pipe 2>&1) || die "seeding failed: $out"
  grep -q 'errors: 0' <<<"$out" || die "seeding reported errors: $out"
}

prepare() { # SHAPE SCALE: source holds the dataset; RDB file and RESTORE file are written
  local shape=$1 scale=$2 n t0
  n=$(shape_keys "$shape")
  t0=$(now)
  local mark="$shape $n $(stat -c %s "$WORK/$shape.restore.resp" 2>/dev/null || echo none)"
  if [ "$scale" = 1 ] && [ "${FERRY_BENCH_KEEP:-0}" = 1 ] && [ "$(cat "$WORK/$shape.prepared" 2>/dev/null)" = "$mark" ] &&
    [ "$(src_cli dbsize)" = "$n" ]; then
    WANT=$n
    read -r GEN_KEYS GEN_BYTES <"$WORK/$shape.gen"
    log "$shape x1: reusing the seeded source and $WORK/$shape.* (FERRY_BENCH_KEEP=1)"
    return
  fi
  rm -f "$WORK/$shape.prepared"
  if [ "$scale" = 1 ]; then
    src_cli flushall sync >/dev/null
    seed "$shape" "$n" 0
  else
    seed "$shape" $((n * (scale - 1))) "$n" # grow the 1x dataset to Nx
  fi
  WANT=$(src_cli dbsize)
  src_cli save >/dev/null
  cp "$FERRY_RUN/$SRC/dump.rdb" "$WORK/$shape.rdb"
  if [ "$scale" = 1 ]; then
    local t1
    t1=$(now)
    [ "$shape" = bigkeys ] && latency_start
    read -r GEN_KEYS GEN_BYTES < <("$VENV/bin/python" "$E2E/gen_restore.py" --source-port "$SRC" --out "$WORK/$shape.restore.resp")
    if [ "$shape" = bigkeys ]; then
      # The reference's source latency: DUMPs of every key, as a DUMP-based copy reads them.
      latency_stop
      printf '%s\t1\tdumps\t1\t%s\t\t\t%s\t%s\t\t\tok\t%s\n' "$shape" "$(since "$t1")" "$GEN_KEYS" "$GEN_BYTES" "$LATENCY" >>"$ROWS"
    fi
    [ "$GEN_KEYS" = "$WANT" ] || die "the RESTORE file has $GEN_KEYS keys, the source $WANT"
    echo "$GEN_KEYS $GEN_BYTES" >"$WORK/$shape.gen"
    echo "$shape $n $(stat -c %s "$WORK/$shape.restore.resp")" >"$WORK/$shape.prepared"
  fi
  log "$shape x$scale: $WANT keys, $((GEN_BYTES / 1000000)) MB of key+payload at 1x, RDB $(($(stat -c %s "$WORK/$shape.rdb") / 1000000)) MB (prepared in $(printf %.0f "$(since "$t0")") s)"
}

# ------------------------------------------------------------------ source latency (bigkeys)
latency_start() { # starts latency.py on the source (its slowlog settings: ours to change)
  rm -f "$WORK/latency.txt"
  "$VENV/bin/python" "$E2E/latency.py" --port "$SRC" --out "$WORK/latency.txt" &
  LATENCY_PID=$!
  sleep 1 # it has configured and emptied the slowlog
}

latency_stop() { # -> LATENCY: "worst-ping-ms<TAB>slowest-command-us<TAB>slowest command"
  local ping us pings what
  kill -TERM "$LATENCY_PID" && wait "$LATENCY_PID" || true
  read -r ping us pings what <"$WORK/latency.txt" || die "latency.py wrote nothing"
  LATENCY=$(printf '%s\t%s\t%s' "$ping" "$us" "$what")
  log "source latency: worst PING $ping ms ($pings PINGs), slowest command $us us ($what)"
}

# ------------------------------------------------------------------ one measured run
# Each prints nothing; run_method appends a row to $ROWS.
ferry_run() { # KIND(live|rdb) REP [BIN] -> sets STATUS WALL CPU RSS
  local kind=$1 rep=$2 bin=${3:-$FERRY_BIN} src_args err=$WORK/ferry.err tv=$WORK/time.txt rc=0 t0
  if [ "$kind" = live ]; then src_args=(--source "redis://127.0.0.1:$SRC"); else src_args=(--rdb "$WORK/$SHAPE.rdb"); fi
  local args=(migrate "${src_args[@]}" --target "rediss://127.0.0.1:$DST" --target-cacert "$CA"
    --progress none --fresh --checkpoint "$WORK/$kind.checkpoint.json" --report "$WORK/$kind.report.json")
  [ "$HAVE_NO_VERIFY" = 1 ] && args+=(--no-verify)
  args+=("${EXTRA[@]}")
  local pre=()
  if [ "${FERRY_BENCH_PERF:-}" = "$kind" ] && [ "$rep" = 1 ] && [ "$SCALE" = 1 ] && [ "$bin" = "$FERRY_BIN" ]; then
    pre=(perf record -F 999 -e cpu-clock -g -o "$WORK/perf-$SHAPE-$kind.data" --)
  fi
  [ "$SHAPE" = bigkeys ] && [ "$kind" = live ] && latency_start
  t0=$(now)
  FERRY_TARGET_PASSWORD=$PASS /usr/bin/time -v -o "$tv" "${pre[@]}" "$bin" "${args[@]}" >/dev/null 2>"$err" || rc=$?
  WALL=$(since "$t0")
  [ "$SHAPE" = bigkeys ] && [ "$kind" = live ] && latency_stop
  if [ "$rc" != 0 ]; then
    if grep -qiE 'not available|unexpected argument|unrecognized' "$err"; then
      STATUS=n/a
    else
      STATUS="error(exit $rc)"
      log "ferry $kind failed (exit $rc):"
      tail -5 "$err" >&2
    fi
    CPU="" RSS=""
    return
  fi
  STATUS=ok
  CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.3f", u + s}' "$tv")
  RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")
}

run_method() { # METHOD REP
  local m=$1 rep=$2 t0 out s0 d0
  STATUS=ok WALL="" CPU="" RSS="" LATENCY=""
  # SYNC: Valkey 8 frees a FLUSHALL lazily by default, on a background thread that would
  # compete with the measured run for the two cores.
  dst_cli flushall sync >/dev/null
  s0=$(cpu_of "$SRC") d0=$(cpu_of "$DST")
  case $m in
    live | rdb)
      if [ "$m" = rdb ] && [ "${RDB_NA:-0}" = 1 ]; then STATUS=n/a; fi
      [ "$STATUS" = n/a ] || ferry_run "$m" "$rep"
      [ "$m" = rdb ] && [ "$STATUS" = n/a ] && RDB_NA=1
      ;;
    live-before | rdb-before)
      ferry_run "${m%-before}" "$rep" "$FERRY_BIN_BEFORE"
      ;;
    limit)
      t0=$(now)
      out=$(dst_cli --pipe <"$WORK/$SHAPE.restore.resp" 2>&1) || STATUS=error
      WALL=$(since "$t0")
      grep -q 'errors: 0' <<<"$out" || {
        STATUS=error
        log "redis-cli --pipe: $out"
      }
      ;;
    baseline)
      t0=$(now)
      FERRY_TARGET_PASSWORD=$PASS "$VENV/bin/python" "$E2E/baseline.py" --source-port "$SRC" \
        --target-port "$DST" --cacert "$CA" >/dev/null || STATUS=error
      WALL=$(since "$t0")
      ;;
  esac
  local got s1 d1
  s1=$(cpu_of "$SRC") d1=$(cpu_of "$DST")
  if [ "$STATUS" = ok ]; then
    got=$(dst_cli dbsize)
    if [ "$got" != "$WANT" ]; then
      log "$m rep $rep: the target has $got keys, the source $WANT"
      STATUS="error(wrong key count)"
    fi
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SHAPE" "$SCALE" "$m" "$rep" "$WALL" "$CPU" "$RSS" \
    "$WANT" "$GEN_BYTES" "$(echo "$s1 - $s0" | bc)" "$(echo "$d1 - $d0" | bc)" "$STATUS" "$LATENCY" >>"$ROWS"
  if [ "$STATUS" = ok ]; then
    log "$(printf '%-6s x%s %-8s rep %s: %7.2f s%s' "$SHAPE" "$SCALE" "$m" "$rep" "$WALL" \
      "${CPU:+, ferry CPU $CPU s, peak RSS $((RSS / 1024)) MB}")"
  else
    log "$(printf '%-6s x%s %-8s rep %s: %s' "$SHAPE" "$SCALE" "$m" "$rep" "$STATUS")"
  fi
}

# ------------------------------------------------------------------ main
setup
start_servers
ROWS=$WORK/results.tsv
: >"$ROWS"
T_START=$(now)
IFS=, read -r -a SHAPE_LIST <<<"$SHAPES"
ALL_METHODS=()
for m in live rdb limit baseline; do
  skipped "$m" || ALL_METHODS+=("$m")
  # The older binary's runs sit beside the newer's in the rotation.
  if [ -n "${FERRY_BIN_BEFORE:-}" ] && [[ $m == live || $m == rdb ]]; then skipped "$m" || ALL_METHODS+=("$m-before"); fi
done
for SHAPE in "${SHAPE_LIST[@]}"; do
  METHODS=("${ALL_METHODS[@]}")
  # Big keys: ferry live against the RESTORE replay; --rdb and the Python baseline hold whole values.
  [ "$SHAPE" = bigkeys ] && METHODS=(live limit)
  SCALE=1
  RDB_NA=0
  prepare "$SHAPE" 1
  for rep in $(seq "$REPS"); do
    # Alternate: each repetition starts with the next method, so no method always runs first.
    for i in "${!METHODS[@]}"; do
      run_method "${METHODS[$(((i + rep - 1) % ${#METHODS[@]}))]}" "$rep"
    done
  done
  if [[ ",$X4," == *",$SHAPE,"* ]]; then
    SCALE=4
    prepare "$SHAPE" 4
    # As many runs as at 1x: peak RSS is a maximum, so both scales get the same number of tries.
    for rep in $(seq "$REPS"); do
      for m in live rdb; do skipped "$m" || run_method "$m" "$rep"; done
    done
    src_cli flushall sync >/dev/null # 4x of `small` holds ~1 GB on each server: free it
    dst_cli flushall sync >/dev/null
  fi
done

cat >"$WORK/meta.json" <<EOF
{"ferry_version": "$("$FERRY_BIN" --version | awk '{print $2}')",
 "ferry_commit": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo +dirty)",
 "ferry_args": "${FERRY_BENCH_ARGS:-}",
 "ferry_before": "${FERRY_BIN_BEFORE:+$("$FERRY_BIN_BEFORE" --version | awk '{print $2}') ($FERRY_BIN_BEFORE)}",
 "source": "Redis $SRC_VER (plain TCP)", "target": "Valkey $DST_VER (TLS, password)",
 "cores": $(nproc), "reps": $REPS, "small_keys": $KEYS,
 "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "duration_s": $(printf %.0f "$(since "$T_START")")}
EOF
python3 "$E2E/report.py" "$ROWS" "$WORK/meta.json" "$OUT/e2e.json"
cp "$ROWS" "$OUT/e2e-runs.tsv"
