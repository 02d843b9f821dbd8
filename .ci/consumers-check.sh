#!/usr/bin/env bash
# Runs the example consumers (examples/consumers/python and node) against a live bridge: starts it
# in embedded mode, posts the seed payloads, every docs/examples payload and the consumers' edge
# cases (values to print quoted) the way Qikchat does,
# then runs each consumer to completion and checks it printed exactly the expected lines
# (examples/consumers/expected-output.txt). Twice: with the default (no compression), and with LZ4,
# which an operator may turn on and which kafkajs reads only with a codec (the Node example
# registers one). Installs the consumers' dependencies itself: Python's
# in a venv under the cache directory, Node's with `npm ci`. Run from the repository root.
set -euo pipefail
bin=${1:-target/debug/qikchat-bridge}
here=$(pwd)
examples=examples/consumers
expected=$examples/expected-output.txt
[ -x "$bin" ] || { echo "no bridge binary at $bin (build it first)" >&2; exit 1; }

# --- dependencies ------------------------------------------------------------------------------
cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/qikchat-bridge
mkdir -p "$cache"
req=$examples/python/requirements.txt
venv=$cache/consumers-venv-$(sha256sum "$req" | cut -c1-12)
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's own python3 keeps venv (and ensurepip) in a package of its own.
    rm -rf "$venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
  touch "$venv/.installed"
fi
if ! command -v curl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends curl >/dev/null
fi
command -v npm >/dev/null || { echo "npm is missing (Node 20 with npm is expected)" >&2; exit 1; }
(cd $examples/node && npm ci --no-audit --no-fund --loglevel=error)

# --- the bridge --------------------------------------------------------------------------------
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
source .ci/lib/ports.sh

# --- the consumers ---------------------------------------------------------------------------
check_output() { # name file
  local name=$1 out=$2 missing=0
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    if ! grep -Fxq -- "$line" "$out"; then
      echo "$name did not print: $line" >&2
      missing=1
    fi
  done <"$expected"
  if [ "$missing" = 1 ] || ! diff <(sort "$expected") <(sort "$out") >"$work/diff"; then
    echo "$name's output differs from $expected:" >&2
    cat "$work/diff" >&2 || true
    echo "--- $name printed:" >&2
    cat "$out" >&2
    echo "--- $name's stderr:" >&2
    cat "$work/$name.err" >&2
    return 1
  fi
  echo "$name printed the $(wc -l <"$out") expected lines"
}

run_consumer() { # name command...
  local name=$1
  shift
  local rc=0
  KAFKA_BOOTSTRAP_SERVERS=$bootstrap MAX_RECORDS=$posted KAFKA_GROUP_ID="consumers-check-$name-$compression" \
    timeout 90 "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null || rc=$?
  if [ "$rc" != 0 ]; then
    echo "$name exited $rc (124: did not read $posted records within 90 s); stdout:" >&2
    cat "$work/$name.out" >&2
    echo "--- stderr:" >&2
    cat "$work/$name.err" >&2
    return 1
  fi
  check_output "$name" "$work/$name.out"
}

# --- one round: a bridge with this compression, every payload posted, both consumers -----------
round() { # compression.type
  compression=$1
  # RUST_LOG pinned: the start-up line that names the ports is at info.
  RUST_LOG=info "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json \
    -X "compression.type=$compression" \
    >"$work/bridge.log" 2>&1 </dev/null &
  pid=$!
  if ! ports=$(bridge_ports "$work/bridge.log" "$pid"); then
    echo "the bridge did not start serving; its log:" >&2
    cat "$work/bridge.log" >&2
    exit 1
  fi
  read -r port admin <<<"$ports"
  ready=
  for _ in $(seq 1 150); do
    if curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    echo "the bridge did not become ready; its log:" >&2
    cat "$work/bridge.log" >&2
    exit 1
  fi
  bootstrap=$(grep -o 'bootstrap\.servers=[^" ,]*' "$work/bridge.log" | head -n1 | cut -d= -f2)
  [ -n "$bootstrap" ] || { echo "no bootstrap.servers=HOST:PORT in the bridge's log" >&2; cat "$work/bridge.log" >&2; exit 1; }
  echo "bridge on 127.0.0.1:$port (compression.type=$compression), embedded Kafka at $bootstrap"

  # Every payload posted, the way Qikchat does.
  posted=0
  for f in tests/fixtures/*.json docs/examples/*.json $examples/edge-cases/*.json; do
    code=$(curl -s -o "$work/answer" -w '%{http_code}' -u testuser:testpass \
      -H 'content-type: application/json' --data-binary "@$f" "http://127.0.0.1:$port/webhook")
    if [ "$code" != 200 ]; then
      echo "POST $f answered $code: $(cat "$work/answer")" >&2
      exit 1
    fi
    posted=$((posted + 1))
  done
  echo "posted $posted payloads"
  # Every posted body is a message or a status, and each gives one line.
  [ "$(grep -c . "$expected")" -eq "$posted" ] ||
    { echo "$expected has $(grep -c . "$expected") lines for $posted posted payloads" >&2; exit 1; }

  run_consumer python "$venv/bin/python" "$here/$examples/python/consumer.py"
  run_consumer node node "$here/$examples/node/consumer.js"
  echo "both example consumers printed the expected lines (compression.type=$compression)"
  kill -TERM "$pid"
  if ! wait "$pid"; then
    echo "the bridge did not exit 0 at SIGTERM; its log:" >&2
    cat "$work/bridge.log" >&2
    exit 1
  fi
  pid=
}

for compression in none lz4; do
  round "$compression"
done
