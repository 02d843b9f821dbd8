# Shared by bench/run.sh, bench/profile.sh and bench/ready.sh (sourced, not run): a free loopback
# port, dev-kafka (librdkafka's mock cluster) started in a process of its own, and a server forked
# with its time to ready measured.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
