#!/usr/bin/env bash
# User-space instructions per request of the ceiling, the bridge without Kafka and the bridge,
# counted by valgrind's callgrind: the same for the same binaries and load whatever else the
# machine does, so a request-path change shows here when bench/ab.sh's rounds drown it in noise.
# See bench/README.md ("Instructions"). Usage:
#   bench/instructions.sh [--rate R] [--seconds S] [--bridge PATH] [--nokafka PATH] [--out DIR]
# Each server runs under callgrind twice at the same fixed rate (open loop, 16 connections): for
# 2 s and for 2 + S s (default 6); the difference of the two runs' totals over the difference of
# their answers is the cost of one request, start-up and shutdown taken out. Prints a table and
# writes DIR/instructions.csv. Kernel time (the sockets) is not counted: it is most of the
# ceiling's CPU, so these ratios are far above bench/run.sh's CPU ratios. Needs valgrind.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/common.sh
. "$here/common.sh"
rate=500 seconds=6 bridge= nokafka= out=$here/out/instructions

while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --bridge) bridge=${2:?}; shift ;;
    --nokafka) nokafka=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

command -v valgrind >/dev/null || die "valgrind is not installed (Debian: apt-get install valgrind)"
loadgen=$bench_release/loadgen
[ -x "$loadgen" ] || die "$loadgen is missing: run bench/run.sh once"
ceiling=$(server_bin ceiling) || die "no ceiling binary"
bridge=${bridge:-$(server_bin bridge)} || die "no bridge binary"
nokafka=${nokafka:-$(server_bin nokafka)} || die "no bridge_without_kafka binary"
mkdir -p "$out"

pids=()
trap stop_pids EXIT
start_dev_kafka "$bridge" "$out" || die "dev-kafka did not start"
pids+=("$kafka_pid")

# count NAME BIN SECONDS: one run under callgrind; prints "instructions sha256 answers", or fails
# (it runs in a command substitution, where `set -e` does not reach: each step is checked).
count() {
  local name=$1 bin=$2 secs=$3 listen admin ready vg_pid
  read -r listen admin <<<"$(free_ports 2)"
  listen=127.0.0.1:$listen admin=127.0.0.1:$admin
  if [ "$name" = ceiling ]; then
    cmd=("$bin" --listen "$listen") ready=http://$listen/readyz
  else
    bridge_cmd "$bin" "$brokers" "$listen" "$admin"
    # valgrind would count `env`, not the server: the environment is set here instead.
    cmd=("${cmd[@]:2}") ready=http://$admin/readyz
  fi
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out/$name-$secs.callgrind" \
    "${cmd[@]}" >"$out/$name-$secs.log" 2>&1 &
  vg_pid=$!
  # Stopped before any failure is told: it is no child of the script's, so its trap cannot.
  if ! "$loadgen" ready --url "$ready" --timeout 120 >/dev/null; then
    kill "$vg_pid"; wait "$vg_pid" || true
    tail -5 "$out/$name-$secs.log" >&2
    die "$name did not become ready under valgrind"
  fi
  local loaded=0
  # send_webhooks reads this function's `listen`.
  send_webhooks --connections 16 --rate "$rate" --duration "$secs" >"$out/$name-$secs.json" \
    || loaded=$?
  kill -TERM "$vg_pid"
  wait "$vg_pid" || true
  [ "$loaded" = 0 ] || die "loadgen failed against $name (exit $loaded)"
  python3 - "$out/$name-$secs.json" "$out/$name-$secs.callgrind" <<'PY'
import json, re, subprocess, sys
run = json.load(open(sys.argv[1]))
if run["errors"] or run["non_200"]:
    sys.exit(f"{sys.argv[1]}: {run['errors']} errors, {run['non_200']} answers not 200")
total = next(int(m.group(1)) for m in map(re.compile(r"^summary: (\d+)").match, open(sys.argv[2])) if m)
# The sha2 crate's own functions (self cost): see the note printed below.
functions = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", sys.argv[2]],
                           capture_output=True, text=True, check=True).stdout
sha = sum(int(m.group(1).replace(",", "")) for m in
          map(re.compile(r"^\s*([\d,]+) .*sha2::").match, functions.splitlines()) if m)
print(total, sha, run["ok"])
PY
}

printf 'server,instructions_per_request,sha256_per_request,requests\n' >"$out/instructions.csv"
declare -A per sha
for name in ceiling nokafka bridge; do
  bin_var=$name
  short=$(count "$name" "${!bin_var}" 2) || die "$name: its 2 s run failed (above)"
  long=$(count "$name" "${!bin_var}" $((2 + seconds))) || die "$name: its $((2 + seconds)) s run failed (above)"
  read -r i1 s1 n1 <<<"$short"
  read -r i2 s2 n2 <<<"$long"
  for v in "$i1" "$s1" "$n1" "$i2" "$s2" "$n2"; do
    [[ $v =~ ^[0-9]+$ ]] || die "$name: a run printed \"$short\" and \"$long\", not three counts each"
  done
  expected=$((rate * seconds))
  # A server that cannot keep up under valgrind would be measured at another rate than the rest.
  [ $((n2 - n1)) -ge $((expected * 95 / 100)) ] \
    || die "$name answered $((n2 - n1)) of $expected requests under valgrind: lower --rate"
  per[$name]=$(((i2 - i1) / (n2 - n1))) sha[$name]=$(((s2 - s1) / (n2 - n1)))
  printf '%s,%s,%s,%s\n' "$name" "${per[$name]}" "${sha[$name]}" $((n2 - n1)) >>"$out/instructions.csv"
done

echo "user-space instructions per request (callgrind, $rate req/s, 16 connections, $seconds s difference)"
printf '%-10s %12s %8s %12s %14s\n' server instructions x_ceiling of_sha256 x_ceiling_rest
for name in ceiling nokafka bridge; do
  printf '%-10s %12s %8s %12s %14s\n' "$name" "${per[$name]}" \
    "$(awk -v a="${per[$name]}" -v c="${per[ceiling]}" 'BEGIN { printf "%.2f", a / c }')" "${sha[$name]}" \
    "$(awk -v a="${per[$name]}" -v s="${sha[$name]}" -v c="${per[ceiling]}" 'BEGIN { printf "%.2f", (a - s) / c }')"
done
echo "of_sha256: the SHA-256 of the body (the body-sha256 header) and of the credential. valgrind"
echo "hides the CPU's SHA instructions, so they run in software here, at several times their native"
echo "cost; x_ceiling_rest leaves them out. Functions: callgrind_annotate $out/nokafka-$((2 + seconds)).callgrind"
echo "csv: $out/instructions.csv"
