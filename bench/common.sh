# Shared by the bench scripts (sourced, not run): a free loopback port, dev-kafka (librdkafka's mock
# cluster) started in a process of its own, a server forked with its time to ready measured, and
# (for profile.sh and allocations.sh) one named server started with its Kafka and sent webhooks.

# Bash writes $EPOCHREALTIME with the locale's decimal separator; the ready time needs a dot.
export LC_ALL=C

# Where cargo puts the release builds: under CARGO_TARGET_DIR when it is set (both crates then
# share it; a relative one is taken from where the script started, as the scripts build from two
# directories), else in each crate's own target/. Needs root and here set.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR ;; esac
  export CARGO_TARGET_DIR
fi
bridge_release=${CARGO_TARGET_DIR:-$root/target}/release
bench_release=${CARGO_TARGET_DIR:-$here/target}/release

# die MESSAGE: the script's name and MESSAGE on stderr, then exit 1.
die() { echo "$(basename "$0" .sh): $*" >&2; exit 1; }
# usage: the script's header comment, from its second line to the first line that is not one.
usage() { sed -n '2,/^[^#]/p' "$0" | sed -n 's/^# \{0,1\}//p'; }

# stop_pids: kills every process in the caller's pids array and reaps them (for its EXIT trap).
stop_pids() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
# need_perf: profile.sh and allocations.sh stop here, with the package to install, without perf.
need_perf() { command -v perf >/dev/null || die "perf is not installed (Debian: apt-get install linux-perf)"; }

# bridge_cmd BIN BROKERS LISTEN ADMIN: sets the caller's cmd array to a bridge (or the bridge
# without Kafka) as every bench script starts it: warn-level JSON logs, loadgen's credential.
bridge_cmd() {
  cmd=(env RUST_LOG=warn "$1" --kafka-brokers "$2" --auth testuser:testpass --listen "$3"
       --admin-listen "$4" --log-format json)
}

# free_ports N: N distinct loopback ports free now, on one line. All are held until the last is
# found: asked one at a time, the kernel may hand out the same free port twice.
free_ports() {
  python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))' "$1"
}

# start_dev_kafka BRIDGE_BIN DIR: runs `BRIDGE_BIN dev-kafka` in the background, its output in
# DIR/dev-kafka.out and .log, and waits for its address. Sets kafka_pid and brokers; returns 1
# with the reason on stderr if it exits or prints no address.
start_dev_kafka() {
  local bin=$1 dir=$2
  "$bin" dev-kafka >"$dir/dev-kafka.out" 2>"$dir/dev-kafka.log" &
  kafka_pid=$!
  for _ in $(seq 1 300); do
    if [ -s "$dir/dev-kafka.out" ] && head -1 "$dir/dev-kafka.out" | grep -q '^bootstrap.servers='; then break; fi
    kill -0 "$kafka_pid" 2>/dev/null || { cat "$dir/dev-kafka.log" >&2; echo "dev-kafka exited" >&2; return 1; }
    sleep 0.05
  done
  brokers=$(head -1 "$dir/dev-kafka.out" | sed -n 's/^bootstrap.servers=//p')
  [ -n "$brokers" ] || { echo "dev-kafka printed no bootstrap.servers line" >&2; return 1; }
}

# fork_until_ready LOADGEN URL STAMP LOG CMD...: the poller (`LOADGEN ready`, every 200 µs) runs
# first, since a refused connection costs nothing; then the clock starts and CMD is forked, its
# output in LOG. Sets server_pid and ready_ms (fork to the first 200 on URL; the poller's stamp
# is kept in STAMP); returns 1 if no 200 came within 30 s, or at once if CMD exits first (the
# caller shows LOG).
fork_until_ready() {
  local loadgen=$1 url=$2 stamp=$3 log=$4; shift 4
  "$loadgen" ready --url "$url" --timeout 30 >"$stamp" &
  local poller=$!
  sleep 0.2
  local t0=$EPOCHREALTIME
  "$@" >"$log" 2>&1 &
  server_pid=$!
  # The stamp, not this loop, times the start: the loop only notices a server that died.
  while kill -0 "$poller" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null || true
      echo "the server exited before it was ready" >&2
      return 1
    fi
    sleep 0.02
  done
  wait "$poller" || return 1
  ready_ms=$(awk -v r="$(cat "$stamp")" -v t="${t0/./}" 'BEGIN { printf "%.3f", (r - t) / 1000 }')
}

# server_bin NAME: the binary of the server called NAME (bridge, nokafka or ceiling) as bench/run.sh
# builds it; needs root and here set. Returns 1 for another name or a binary not built yet.
server_bin() {
  local bin
  case "$1" in
    bridge) bin=$bridge_release/qikchat-bridge ;;
    nokafka) bin=$bridge_release/examples/bridge_without_kafka ;;
    ceiling) bin=$bench_release/ceiling ;;
    *) echo "no server named $1 (bridge, nokafka or ceiling)" >&2; return 1 ;;
  esac
  [ -x "$bin" ] || { echo "$bin is missing: run bench/run.sh once (it builds everything)" >&2; return 1; }
  echo "$bin"
}

# start_server NAME DIR: dev-kafka (not for the ceiling) and the server NAME, which is waited for
# until ready; logs in DIR. Needs root, here and loadgen set and a pids array, to which each
# process started is added for the caller's trap. Sets listen (the webhook address), server_pid
# and kafka_pid (empty for the ceiling); returns 1 with the reason on stderr.
start_server() {
  local name=$1 dir=$2 bin kafka_bin ready_url admin
  local -a cmd
  bin=$(server_bin "$name") || return 1
  [ -x "$loadgen" ] || { echo "$loadgen is missing: run bench/run.sh once" >&2; return 1; }
  local ports
  kafka_pid=
  if [ "$name" = ceiling ]; then
    read -r -a ports <<<"$(free_ports 1)"
    listen=127.0.0.1:${ports[0]}
    cmd=("$bin" --listen "$listen") ready_url=http://$listen/readyz
  else
    kafka_bin=$(server_bin bridge) || return 1
    start_dev_kafka "$kafka_bin" "$dir" || return 1
    pids+=("$kafka_pid")
    # After dev-kafka has bound its own ports, so that it cannot take one of these.
    read -r -a ports <<<"$(free_ports 2)"
    listen=127.0.0.1:${ports[0]} admin=127.0.0.1:${ports[1]}
    bridge_cmd "$bin" "$brokers" "$listen" "$admin"
    ready_url=http://$admin/readyz
  fi
  if ! fork_until_ready "$loadgen" "$ready_url" "$dir/ready.txt" "$dir/server.log" "${cmd[@]}"; then
    pids+=("$server_pid")
    tail -20 "$dir/server.log" >&2
    echo "$name did not become ready" >&2
    return 1
  fi
  pids+=("$server_pid")
}

# send_webhooks ARGS…: `loadgen run` with the seed payloads against the server start_server started.
send_webhooks() {
  "$loadgen" run --url "http://$listen/webhook" --fixtures "$root/tests/fixtures" \
    --auth testuser:testpass "$@"
}
