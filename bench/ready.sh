#!/usr/bin/env bash
# Time to ready over repeated starts of the bridge: exec to the first 200 on /readyz (which needs a
# broker's answer to a metadata request), against one dev-kafka kept running. Usage:
#   bench/ready.sh [--starts N] [-- EXTRA BRIDGE FLAGS...]     e.g. -- -X reconnect.backoff.ms=100
# Needs the binaries bench/run.sh builds. Prints each start's time, then the median and the max:
# one start in bench/run.sh is a single sample of a distribution with a tail.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/common.sh
. "$here/common.sh"
starts=15 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --starts) starts=${2:?--starts N}; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
case "$starts" in ''|*[!0-9]*|0) die "--starts wants a positive integer" ;; esac
bridge=$bridge_release/qikchat-bridge loadgen=$bench_release/loadgen
for b in "$bridge" "$loadgen"; do [ -x "$b" ] || die "$b is missing: run bench/run.sh once"; done

tmp=$(mktemp -d)
pids=()
trap 'stop_pids; rm -rf "$tmp"' EXIT

start_dev_kafka "$bridge" "$tmp" || die "dev-kafka did not start"
pids+=("$kafka_pid")

times=()
for i in $(seq "$starts"); do
  read -r listen admin <<<"$(free_ports 2)"
  listen=127.0.0.1:$listen admin=127.0.0.1:$admin
  bridge_cmd "$bridge" "$brokers" "$listen" "$admin"
  if ! fork_until_ready "$loadgen" "http://$admin/readyz" "$tmp/ready" "$tmp/bridge.log" \
    "${cmd[@]}" ${extra[@]+"${extra[@]}"}; then
    kill "$server_pid" 2>/dev/null || true
    cat "$tmp/bridge.log" >&2
    die "start $i did not become ready"
  fi
  ms=$(printf '%.1f' "$ready_ms")
  times+=("$ms")
  echo "start $i: ready in $ms ms"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  printf "ready: median %.1f ms, max %.1f ms over %d starts\n", v[int((NR + 1) / 2)], v[NR], NR }'
