#!/usr/bin/env bash
# Where one server's CPU goes at peak: a system-wide `perf` profile of a closed-loop phase.
# See bench/README.md ("Profiling"). Usage:
#   bench/profile.sh [--server bridge|nokafka|ceiling] [--connections N] [--seconds S] [--out DIR]
#                    [--call-graph] [--rate R]
# --rate profiles an open-loop phase of R requests/s instead of the closed-loop peak.
# Needs perf (Debian: linux-perf) and the binaries bench/run.sh builds (run it once first).
# Prints loadgen's figures (CPU per request by thread group, the machine's idle share), and the
# server's runtime threads' kernel/user split and hottest functions. With --call-graph, perf also
# unwinds each sample's stack (DWARF), and bench/attribute.py splits the server's CPU per request
# into named parts (the Kafka send, the response write, classification, ...).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/common.sh
. "$here/common.sh"
server=bridge connections=256 seconds=6 out=$here/out/profile callgraph=0 rate=

while [ $# -gt 0 ]; do
  case "$1" in
    --server) server=${2:?}; shift ;;
    --connections) connections=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --call-graph) callgraph=1 ;;
    --rate) rate=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

need_perf
loadgen=$bench_release/loadgen
server_bin "$server" >/dev/null || die "cannot start --server $server"
mkdir -p "$out"

pids=()
trap stop_pids EXIT
start_server "$server" "$out" || die "$server did not start"
echo "$server_pid" >"$out/pid"
watch=()
[ -z "$kafka_pid" ] || watch+=(--watch "kafka=$kafka_pid")

send_webhooks --connections 64 --duration 3 >/dev/null 2>&1
# The profile covers the middle of the phase: two seconds of load before it and after it.
send_webhooks --connections "$connections" ${rate:+--rate "$rate"} --duration $((seconds + 4)) \
  --watch "$server=$server_pid" \
  "${watch[@]}" >"$out/run.json" 2>"$out/run.err" &
load=$!
sleep 2
# DWARF unwinding copies 16 KiB of stack per sample: fewer samples keep perf's own share small.
if [ "$callgraph" = 1 ]; then sampling=(-F 499 --call-graph dwarf,16384); else sampling=(-F 999 -g); fi
perf record -q -e cpu-clock "${sampling[@]}" -a -o "$out/perf.data" -- sleep "$seconds" 2>"$out/perf.err" \
  || die "perf record failed: $(cat "$out/perf.err")"
wait "$load" || die "loadgen failed: $(cat "$out/run.err")"

python3 - "$out/run.json" "$server" <<'EOF'
import json, sys
r, s = json.load(open(sys.argv[1])), sys.argv[2]
m = r.get("machine") or {}
print(f"{s}: {r['ok_rate']:.0f} ok/s at {r['connections']} connections; CPU per request: "
      f"{s} {r['cpu_us_per_req'].get(s):.2f} us, loadgen {r.get('loadgen_cpu_us_per_req') or 0:.2f} us"
      + (f", dev-kafka {r['cpu_us_per_req']['kafka']:.2f} us" if r["cpu_us_per_req"].get("kafka") else ""))
for proc, groups in r.get("threads", {}).items():
    print(f"  {proc:8s} " + "  ".join(f"{g} {v['cpu_us_per_req'] or 0:.2f} us/req, {v['switches_per_s']:.0f} switches/s"
                                      for g, v in groups.items()))
print(f"  machine: idle {m.get('idle_pct')} %, system {m.get('system_pct')} %, irq+softirq "
      f"{m.get('irq_softirq_pct')} %, {m.get('ctxt_per_s', 0):.0f} context switches/s")
EOF

# The server's own runtime threads: tids of its tokio workers.
tids=$(for t in /proc/"$server_pid"/task/*; do
  if [ "$(cat "$t/comm")" = tokio-rt-worker ]; then basename "$t"; fi; done | paste -sd, -)
[ -n "$tids" ] || die "no runtime threads found in $server"
report() { perf report -i "$out/perf.data" --stdio --no-children --percentage relative --tid "$tids" "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'; }
echo
echo "== the $server's runtime threads: kernel and user time"
report -g none --sort sym | awk '$2 == "[k]" { k += $1 } $2 == "[.]" { u += $1 }
  END { printf "  kernel %.1f %%, user %.1f %% (the kernel part is mostly TCP over loopback: it also does\n  the receiving side'"'"'s work and wakes it, so it is charged to whoever sends)\n", k, u }'
echo
if [ "$callgraph" = 1 ]; then
  echo "== their hottest functions (self time; the split by call stack is further down)"
else
  echo "== their hottest functions (self time; Rust is built without frame pointers, so -g's user"
  echo "   stacks are unreliable: --call-graph unwinds them from DWARF)"
fi
report -g none --sort dso,sym --percent-limit 1 | head -25
echo
echo "profile: $out/perf.data (perf report -i $out/perf.data), loadgen's figures in $out/run.json"
if [ "$callgraph" = 1 ]; then
  perf script -i "$out/perf.data" --pid "$server_pid" -F comm,tid,ip,sym >"$out/stacks.txt" 2>/dev/null \
    || die "perf script failed"
  us=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cpu_us_per_req"][sys.argv[2]])' \
    "$out/run.json" "$server")
  echo
  echo "== where the $server's CPU per request goes (call stacks; each sample counted once, in the"
  echo "   first part that matches, see bench/attribute.py)"
  python3 "$here/attribute.py" "$out/stacks.txt" "$us" | tee "$out/attribution.txt"
fi
