#!/usr/bin/env bash
# Heap allocations per webhook, by thread group: uprobes on the allocator's entry points (malloc,
# calloc, realloc, mallocx of the jemalloc linked into the binary, which librdkafka uses too),
# counted with `perf stat` over a fixed-rate phase. Usage:
#   bench/allocations.sh [--server bridge|nokafka] [--rate R] [--seconds S] [--out DIR] [--sites]
# Needs perf and uprobes (root), and the binaries bench/run.sh builds. --sites also records each
# allocation's call stack (a shorter, slower phase) and prints the call sites per webhook.
# tests/allocations.rs is the check CI runs; this is the measurement.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/common.sh
. "$here/common.sh"
server=bridge rate=2000 seconds=3 out=$here/out/allocations sites=0

while [ $# -gt 0 ]; do
  case "$1" in
    --server) server=${2:?}; shift ;;
    --rate) rate=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --sites) sites=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

need_perf
loadgen=$bench_release/loadgen
case "$server" in
  bridge|nokafka) bin=$(server_bin "$server") || die "cannot start --server $server" ;;
  *) die "--server is bridge or nokafka" ;;
esac
mkdir -p "$out"

pids=()
cleanup() {
  stop_pids
  perf probe -q -d 'qballoc:*' 2>/dev/null || true
}
trap cleanup EXIT
perf probe -q -d 'qballoc:*' 2>/dev/null || true
# --no-inlines: otherwise perf also plants probes where Rust's allocator shims were inlined.
for f in malloc calloc realloc mallocx; do
  perf probe -q --no-inlines -x "$bin" -a "qballoc:$f=$f" 2>"$out/probe.err" \
    || die "cannot place a uprobe on $f: $(cat "$out/probe.err")"
done

start_server "$server" "$out" || die "$server did not start"

# Warm-up: lazily built state (metric children, connection buffers, librdkafka's topic handles)
# is not what a webhook costs.
send_webhooks --connections 64 --rate "$rate" --duration 1 >/dev/null 2>&1

if [ "$sites" = 1 ]; then
  perf record -q -e 'qballoc:*' --call-graph dwarf,16384 -p "$server_pid" -o "$out/perf.data" \
    2>"$out/perf.err" &
  rate=$((rate < 300 ? rate : 300))
else
  perf stat -x, -e 'qballoc:*' --per-thread -p "$server_pid" -o "$out/stat.txt" &
fi
counter=$!
sleep 0.5
send_webhooks --connections 64 --rate "$rate" --duration "$seconds" >"$out/run.json" 2>"$out/run.err" \
  || die "loadgen failed: $(cat "$out/run.err")"
sleep 0.3
kill -INT "$counter"; wait "$counter" || true

if [ "$sites" = 1 ]; then
  perf script -i "$out/perf.data" -F comm,tid,ip,sym >"$out/stacks.txt" 2>/dev/null
fi
python3 "$here/alloc_report.py" "$out" "$server" "$sites"
