#!/usr/bin/env bash
# The bridge against a bare hyper server (the ceiling), in one run on this machine.
# See bench/README.md. Usage:
#   bench/run.sh [--smoke] [--duration SECS] [--brokers HOST:PORT] [--rates "1000 5000 10000"]
#                [--repeat N] [--bridge-bin PATH] [--out DIR] [--no-build] [-- EXTRA BRIDGE FLAGS...]
# Environment twins: BENCH_DURATION, BENCH_BROKERS, BENCH_RATES, BENCH_REPEAT, BRIDGE_BIN, BENCH_OUT.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/common.sh
. "$here/common.sh"

smoke=0
build=1
duration=${BENCH_DURATION:-}
brokers=${BENCH_BROKERS:-}
rates=${BENCH_RATES:-"1000 5000 10000"}
repeat=${BENCH_REPEAT:-}
bridge_bin=${BRIDGE_BIN:-}
out=${BENCH_OUT:-$here/out}
bridge_extra=()
peak_conns="64 256"
rate_conns=64

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "bench: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --duration) duration=${2:?--duration SECS}; shift ;;
    --brokers) brokers=${2:?--brokers HOST:PORT}; shift ;;
    --rates) rates=${2:?--rates \"R1 R2 ...\"}; shift ;;
    --repeat) repeat=${2:?--repeat N}; shift ;;
    --bridge-bin) bridge_bin=${2:?--bridge-bin PATH}; shift ;;
    --out) out=${2:?--out DIR}; shift ;;
    --no-build) build=0 ;;
    --) shift; bridge_extra=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

# Phase lengths: --duration wins; smoke mode is about a second a phase.
if [ -z "$duration" ]; then
  if [ "$smoke" = 1 ]; then duration=1.5; else duration=10; fi
fi
warmup=$(awk -v d="$duration" 'BEGIN { w = d * 0.3; if (w < 0.5) w = 0.5; if (w > 3) w = 3; print w }')
# Peak phases run this many times, the two servers alternating, and the report takes medians:
# on a shared machine one pair of runs can land in a noisy second and swing the ratio by 0.1.
if [ -z "$repeat" ]; then
  if [ "$smoke" = 1 ]; then repeat=1; else repeat=3; fi
fi
case "$repeat" in ''|*[!0-9]*|0) die "--repeat wants a positive integer, not '$repeat'" ;; esac
pause=$(awk -v s="$smoke" 'BEGIN { print (s == 1) ? 0.2 : 1 }')

# Only this machine is ever a target (loopback addresses), the broker included.
if [ -n "$brokers" ]; then
  IFS=',' read -r -a list <<<"$brokers"
  for b in "${list[@]}"; do
    host=${b%:*}; host=${host#[}; host=${host%]}
    case "$host" in
      127.*|localhost|::1) ;;
      *) die "--brokers $b: only a broker on this machine (127.0.0.0/8, localhost, ::1) may be benchmarked" ;;
    esac
  done
fi

section() { printf '\n== %s\n' "$*" >&2; }

need_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    section "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# librdkafka (built by the root crate) needs a C toolchain, zlib, OpenSSL and libcurl headers; the report
# is drawn by python3's standard library.
if [ "$build" = 1 ]; then
  need_apt build-essential make pkg-config zlib1g-dev libssl-dev libcurl4-openssl-dev python3
else
  need_apt python3
fi

if [ "$build" = 1 ]; then
  if [ -z "$bridge_bin" ]; then
    section "cargo build --release (the bridge)"
    (cd "$root" && cargo build --release --locked --bin qikchat-bridge)
  fi
  # The decomposition's third server: the bridge with its sink answering at once (an example of
  # the root crate, never part of the binary).
  # And the Kafka client without HTTP (examples/kafka_floor.rs), for the same decomposition.
  section "cargo build --release --example bridge_without_kafka --example kafka_floor"
  (cd "$root" && cargo build --release --locked --example bridge_without_kafka --example kafka_floor)
  section "cargo build --release (bench: ceiling, loadgen)"
  (cd "$here" && cargo build --release --locked)
fi
bridge_bin=${bridge_bin:-$bridge_release/qikchat-bridge}
nokafka_bin=${NOKAFKA_BIN:-$bridge_release/examples/bridge_without_kafka}
floor_bin=$bridge_release/examples/kafka_floor
ceiling_bin=$bench_release/ceiling
loadgen=$bench_release/loadgen
for b in "$bridge_bin" "$ceiling_bin" "$loadgen"; do
  [ -x "$b" ] || die "$b is missing (build it, or drop --no-build)"
done
decompose=1
if [ ! -x "$nokafka_bin" ]; then
  decompose=0
  echo "bench: $nokafka_bin is missing: no decomposition of the peak figure (drop --no-build to build it)" >&2
fi

mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.log "$out"/*.txt "$out"/*.csv "$out"/*.svg "$out"/*.out

# --- processes, and their clean-up on any exit -------------------------------------------------
pids=()
cleanup() { # newest first: the servers stop before the Kafka they produce to
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[$i]}
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r load1 _ </proc/loadavg
busy_note=""
if awk -v l="$load1" 'BEGIN { exit !(l > 0.7) }'; then
  busy_note="load average was $load1 at start: other work on this machine makes the figures noisy"
  echo "bench: WARNING $busy_note" >&2
fi

# --- the Kafka --------------------------------------------------------------------------------
kafka_pid=""
if [ -z "$brokers" ]; then
  section "starting qikchat-bridge dev-kafka (a separate process)"
  start_dev_kafka "$bridge_bin" "$out" || die "dev-kafka did not start"
  pids+=("$kafka_pid")
  kafka_kind="dev-kafka (librdkafka mock cluster, separate process)"
else
  kafka_kind="broker(s) at $brokers"
fi
echo "bench: Kafka: $kafka_kind" >&2

# --- the servers, with their time to ready ----------------------------------------------------
# start NAME READY_URL CMD...: forks the server and measures its time to ready (see
# fork_until_ready in common.sh); writes OUT/ready-NAME.json and sets NAME_pid.
start() {
  local name=$1 url=$2; shift 2
  local ready=1
  fork_until_ready "$loadgen" "$url" "$out/ready-$name.txt" "$out/$name.log" "$@" || ready=0
  pids+=("$server_pid")
  if [ "$ready" = 0 ]; then
    tail -20 "$out/$name.log" >&2
    die "$name did not become ready"
  fi
  kill -0 "$server_pid" 2>/dev/null || die "$name exited"
  echo "{\"ready_ms\": $ready_ms}" >"$out/ready-$name.json"
  eval "${name}_pid=$server_pid"
}

read -r ceiling_port bridge_port admin_port nokafka_port nokafka_admin_port <<<"$(free_ports 5)"

section "starting the ceiling (bare hyper) on 127.0.0.1:$ceiling_port"
start ceiling "http://127.0.0.1:$ceiling_port/readyz" "$ceiling_bin" --listen "127.0.0.1:$ceiling_port"

section "starting the bridge on 127.0.0.1:$bridge_port (admin $admin_port)"
bridge_cmd "$bridge_bin" "$brokers" "127.0.0.1:$bridge_port" "127.0.0.1:$admin_port"
start bridge "http://127.0.0.1:$admin_port/readyz" "${cmd[@]}" ${bridge_extra[@]+"${bridge_extra[@]}"}
if [ "$decompose" = 1 ]; then
  section "starting the bridge without Kafka on 127.0.0.1:$nokafka_port (for the decomposition)"
  bridge_cmd "$nokafka_bin" "$brokers" "127.0.0.1:$nokafka_port" "127.0.0.1:$nokafka_admin_port"
  start nokafka "http://127.0.0.1:$nokafka_admin_port/readyz" "${cmd[@]}" \
    ${bridge_extra[@]+"${bridge_extra[@]}"}
fi
# shellcheck disable=SC2154 # set by start()
echo "bench: ready in $(sed 's/.*: //; s/}//' "$out/ready-ceiling.json") ms (ceiling), $(sed 's/.*: //; s/}//' "$out/ready-bridge.json") ms (bridge; includes its first metadata round trip to Kafka)" >&2

# --- the load phases, each against both servers in turn ----------------------------------------
# shellcheck disable=SC2154
url_ceiling="http://127.0.0.1:$ceiling_port/webhook"
url_bridge="http://127.0.0.1:$bridge_port/webhook"
url_nokafka="http://127.0.0.1:$nokafka_port/webhook"
servers_alive() {
  local p
  for p in "$ceiling_pid" "$bridge_pid" ${nokafka_pid:+"$nokafka_pid"} ${kafka_pid:+"$kafka_pid"}; do
    kill -0 "$p" 2>/dev/null || die "a server or dev-kafka died (see $out/*.log)"
  done
}

load() { # PHASE SERVER loadgen-args...
  local phase=$1 server=$2; shift 2
  local url watch=()
  case "$server" in
    ceiling) url=$url_ceiling; watch=(--watch "ceiling=$ceiling_pid") ;;
    nokafka) url=$url_nokafka; watch=(--watch "nokafka=$nokafka_pid") ;;
    *)
      url=$url_bridge; watch=(--watch "bridge=$bridge_pid")
      [ -n "$kafka_pid" ] && watch+=(--watch "kafka=$kafka_pid")
      ;;
  esac
  servers_alive
  printf 'bench: %-14s %-8s ' "$phase" "$server" >&2
  "$loadgen" run --url "$url" --fixtures "$root/tests/fixtures" --auth testuser:testpass \
    "${watch[@]}" "$@" >"$out/$phase-$server.json" 2>"$out/$phase-$server.err" \
    || { cat "$out/$phase-$server.err" >&2; die "loadgen failed in $phase against $server"; }
  python3 - "$out/$phase-$server.json" >&2 <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
bad = f"  !! {r['non_200']} non-200 {r['by_status']}, {r['errors']} errors, {r['unsent']} unsent" if (r["non_200"] or r["errors"] or r["unsent"]) else ""
print(f"{r['ok_rate']:9.0f} ok/s  p50 {l['p50']} ms  p99 {l['p99']} ms  p99.9 {l['p999']} ms{bad}")
EOF
  sleep "$pause"
}

# The Kafka client alone: the bridge's KafkaSink with C sends in flight and no HTTP, on the same
# dev-kafka, with dev-kafka's CPU over the same window.
floor() { # PHASE CONNECTIONS
  [ -x "$floor_bin" ] || return 0
  servers_alive
  printf 'bench: %-14s %-8s ' "$1" "floor" >&2
  "$floor_bin" "$brokers" "$2" "$duration" ${kafka_pid:+"$kafka_pid"} >"$out/$1-floor.json" 2>"$out/$1-floor.err" \
    || { cat "$out/$1-floor.err" >&2; die "kafka_floor failed in $1"; }
  python3 - "$out/$1-floor.json" >&2 <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['ok_rate']:9.0f} records/s  {r['cpu_us_per_record']} us CPU/record (no HTTP)")
EOF
  sleep "$pause"
}

section "load phases (${duration} s each, warm-up ${warmup} s)"
for server in ceiling bridge ${nokafka_pid:+nokafka}; do
  load warmup "$server" --connections 64 --duration "$warmup"
done
# At 256 connections the bridge without Kafka runs too, alternating with the other two.
decompose_conns=256
for c in $peak_conns; do
  servers="ceiling bridge"
  [ "$decompose" = 1 ] && [ "$c" = "$decompose_conns" ] && servers="ceiling nokafka bridge"
  for i in $(seq 1 "$repeat"); do
    for server in $servers; do
      load "peak-c$c-r$i" "$server" --connections "$c" --duration "$duration"
    done
    [ "$decompose" = 1 ] && [ "$c" = "$decompose_conns" ] && floor "peak-c$c-r$i" "$c"
  done
done
# The bridge without Kafka once more, open loop at the bridge's median peak rate: CPU per request
# depends on the rate (fewer requests share each wake-up), so the Kafka share is also read at
# equal rates.
if [ "$decompose" = 1 ]; then
  bridge_rate=$(python3 - "$out" "$decompose_conns" "$repeat" <<'EOF'
import json, sys
out, c, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rates = sorted(json.load(open(f"{out}/peak-c{c}-r{i}-bridge.json"))["ok_rate"] for i in range(1, n + 1))
print(max(1, int(rates[(n - 1) // 2])))
EOF
)
  load "equal-rate" nokafka --connections "$decompose_conns" --duration "$duration" --rate "$bridge_rate"
fi
# Fixed rates repeat too: one run's p99 swings with a single host stall, and the report gives the
# median run and how many runs met the target.
for r in $rates; do
  for i in $(seq 1 "$repeat"); do
    for server in ceiling bridge; do
      load "rate-$r-r$i" "$server" --connections "$rate_conns" --duration "$duration" --rate "$r"
    done
  done
done

# --- memory, metrics, and the report ----------------------------------------------------------
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo null; }
printf '{"ceiling_vm_hwm_kib": %s, "bridge_vm_hwm_kib": %s, "kafka_vm_hwm_kib": %s}\n' \
  "$(hwm "$ceiling_pid")" "$(hwm "$bridge_pid")" "$([ -n "$kafka_pid" ] && hwm "$kafka_pid" || echo null)" >"$out/memory.json"
python3 - "$admin_port" >"$out/bridge-metrics.txt" <<'EOF' || true
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())
EOF

# The build that ran says which commit it is (build_info); the work tree may have moved on since.
commit=$(sed -n 's/^qikchat_bridge_build_info{.*commit="\([^"]*\)".*/\1/p' "$out/bridge-metrics.txt" | head -1)
dirty=""
if [ -z "$commit" ]; then
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | head -1)
fi
read -r load1_end _ </proc/loadavg
python3 - "$out/meta.json" ${bridge_extra[@]+"${bridge_extra[@]}"} <<EOF
import json, sys
json.dump({
  "mode": "smoke" if $smoke else "full",
  "phase_s": $duration, "warmup_s": $warmup,
  "rates": [int(r) for r in "$rates".split()],
  "peak_connections": [int(c) for c in "$peak_conns".split()],
  "peak_repeats": $repeat, "rate_repeats": $repeat,
  "decomposition_connections": $decompose_conns if $decompose else None,
  "rate_connections": $rate_conns,
  "kafka": "$kafka_kind",
  "bridge_commit": "$commit" + ("+dirty" if "$dirty" else ""),
  "cpus": $(nproc),
  "load_average_start": $load1, "load_average_end": $load1_end,
  "busy_note": "$busy_note",
  "bridge_extra_flags": sys.argv[2:],
}, open(sys.argv[1], "w"), indent=1)
EOF

section "report"
python3 "$here/report.py" "$out"
