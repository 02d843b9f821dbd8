#!/usr/bin/env bash
# Webhook latency at a fixed rate while replay drains a full spool, against the same bridge with
# an empty one: what live traffic pays while a backlog from an outage is sent. See bench/README.md
# ("Replay drain"). Usage:
#   bench/drain.sh [--bin PATH] [--records N] [--rate R] [--seconds S] [--rounds K] [--paced P]
# Each round starts the bridge twice on one dev-kafka: on an empty spool, then on a spool of N
# records of the load generator's mix (made by examples/replay_throughput), and drives it at R
# requests/s over 64 connections from the moment it is ready; with --paced, a third time on a
# full spool with --replay-max-rate P. Prints, per run, the spool's records before and after the
# window and loadgen's latency percentiles. Not run by CI.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/common.sh
. "$here/common.sh"
bin=$bridge_release/qikchat-bridge records=600000 rate=5000 seconds=5 rounds=2 paced=

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=${2:?}; shift ;;
    --records) records=${2:?}; shift ;;
    --rate) rate=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --paced) paced=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

(cd "$root" && cargo build --release --locked --bin qikchat-bridge --example replay_throughput -q)
(cd "$here" && cargo build --release --locked -q)
loadgen=$bench_release/loadgen
fill=$bridge_release/examples/replay_throughput
work=$(mktemp -d)
pids=()
trap 'stop_pids; rm -rf "$work"' EXIT
start_dev_kafka "$bin" "$work" || die "dev-kafka did not start"
pids+=("$kafka_pid")

spooled() {
  curl -fsS "http://$admin/metrics" | awk '/^qikchat_bridge_spool_records /{print $2}'
}

for round in $(seq 1 "$rounds"); do
  for spool in empty full ${paced:+paced}; do
    dir=$work/spool-$round-$spool
    mkdir -p "$dir"
    [ "$spool" != empty ] && REPLAY_SPOOL_DIR=$dir "$fill" "$records" >/dev/null
    pace=()
    [ "$spool" = paced ] && pace=(--replay-max-rate "$paced")
    read -r port admin_port < <(free_ports 2)
    admin=127.0.0.1:$admin_port
    bridge_cmd "$bin" "$brokers" "127.0.0.1:$port" "$admin"
    "${cmd[@]}" --spool-dir "$dir" --spool-max-bytes 8000000000 "${pace[@]}" >"$work/bridge.log" 2>&1 &
    bridge=$!
    pids+=("$bridge")
    "$loadgen" ready --url "http://$admin/readyz" --timeout 30 >/dev/null || die "the bridge was not ready"
    before=$(spooled)
    result=$("$loadgen" run --url "http://127.0.0.1:$port/webhook" --connections 64 \
      --duration "$seconds" --rate "$rate" --fixtures "$root/tests/fixtures") || true  # non-200s are reported below
    after=$(spooled)
    kill "$bridge"; wait "$bridge" 2>/dev/null || true
    rm -rf "$dir"
    python3 - "$round" "$spool" "$before" "$after" "$result" <<'EOF'
import json, sys
round_, spool, before, after, result = sys.argv[1:]
d = json.loads(result)
lat = d["latency_ms"]
print(f"round {round_} {spool:5}: spool {before} -> {after} records; {d['ok']} ok, "
      f"{d['non_200']} not 200, {d['errors']} errors, {d['unsent']} not sent in time; latency ms p50 {lat['p50']} "
      f"p99 {lat['p99']} p99.9 {lat['p999']} max {lat['max']}")
EOF
  done
done
