#!/usr/bin/env bash
# Two bridge settings (or two builds) against each other: both run at once on one dev-kafka and
# take turns under the same load, so the host's noise falls on both alike. See bench/README.md
# ("A/B"). Usage:
#   bench/ab.sh [--a "FLAGS"] [--b "FLAGS"] [--a-bin PATH] [--b-bin PATH] [--rounds N]
#               [--seconds S] [--connections N] [--rate R] [--out DIR]
# FLAGS are the bridge's own (e.g. --b "-X acks=1"); by default both are the release build
# bench/run.sh makes, with no extra flags. Each round runs A then B, the next B then A. Prints each
# round, then B/A as the median of the rounds' paired ratios: throughput, CPU per request and (with
# --rate) latency percentiles. Writes DIR/rounds.csv.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/common.sh
. "$here/common.sh"
flags_a= flags_b= bin_a= bin_b= rounds=6 seconds=5 connections=256 rate= out=$here/out/ab

while [ $# -gt 0 ]; do
  case "$1" in
    --a) flags_a=${2?}; shift ;;
    --b) flags_b=${2?}; shift ;;
    --a-bin) bin_a=${2:?}; shift ;;
    --b-bin) bin_b=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --connections) connections=${2:?}; shift ;;
    --rate) rate=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

loadgen=$bench_release/loadgen
[ -x "$loadgen" ] || die "$loadgen is missing: run bench/run.sh once"
if [ -z "$bin_a" ] || [ -z "$bin_b" ]; then
  bridge=$(server_bin bridge) || die "no bridge binary"
  bin_a=${bin_a:-$bridge} bin_b=${bin_b:-$bridge}
fi
mkdir -p "$out"
rm -f "$out"/round-*.json

pids=()
trap stop_pids EXIT
start_dev_kafka "$bin_a" "$out" || die "dev-kafka did not start"
pids+=("$kafka_pid")
declare -A addr pid
for side in a b; do
  bin_var=bin_$side flags_var=flags_$side
  read -r listen admin <<<"$(free_ports 2)"
  listen=127.0.0.1:$listen admin=127.0.0.1:$admin
  bridge_cmd "${!bin_var}" "$brokers" "$listen" "$admin"
  # Word splitting of FLAGS is wanted: it is a list of arguments.
  # shellcheck disable=SC2086
  "${cmd[@]}" ${!flags_var} >"$out/$side.log" 2>&1 &
  pid[$side]=$!
  pids+=("${pid[$side]}")
  "$loadgen" ready --url "http://$admin/readyz" --timeout 30 >/dev/null \
    || { tail -20 "$out/$side.log" >&2; die "bridge $side did not become ready"; }
  addr[$side]=$listen
  # Warm-up: connections, the producer's id and batches, the allocator's caches.
  send_webhooks --connections 64 --duration 2 >/dev/null 2>&1 || true
done

for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
  for side in $order; do
    listen=${addr[$side]}
    send_webhooks --connections "$connections" ${rate:+--rate "$rate"} --duration "$seconds" \
      --watch "bridge=${pid[$side]}" >"$out/round-$r-$side.json" 2>"$out/round-$r-$side.err" \
      || die "loadgen failed: $(cat "$out/round-$r-$side.err")"
  done
done
python3 "$here/ab_report.py" "$out" "$rounds" "A: ${flags_a:-no flags} ($bin_a)" "B: ${flags_b:-no flags} ($bin_b)"
