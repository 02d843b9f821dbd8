#!/usr/bin/env bash
# Keeps the benchmark (bench/) from rotting: runs bench/run.sh --smoke (a few seconds a phase) and
# checks that every figure was produced, numeric and above zero, for both servers, that no request
# of any phase failed, and that the plot exists. Never asserts an absolute time, rate or ratio
# beyond that: CI machines are shared and noisy.
# Usage: .ci/bench-smoke.sh [BRIDGE_BINARY]   (default: bench/run.sh builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."

# The harness's own unit tests (its /proc parsing), in the release profile run.sh builds anyway,
# and those of profile.sh's stack attribution (perf itself is not needed for them).
(cd bench && cargo test --release --locked --quiet)
python3 -m unittest discover -s bench -p 'test_*.py'

unset BENCH_RATES BENCH_DURATION BENCH_BROKERS BENCH_REPEAT  # the figures checked below are the defaults
# bench/run.sh prefers these to what it builds: one left in the environment would be measured
# instead of this commit's binaries.
unset BRIDGE_BIN NOKAFKA_BIN
out=${BENCH_OUT:-bench/out}
# Two repeats of the peak phases, so the median path of the report runs too.
args=(--smoke --repeat 2 --out "$out")
[ $# -gt 0 ] && args+=(--bridge-bin "$1")
bash bench/run.sh "${args[@]}"

python3 - "$out" <<'EOF'
import csv, glob, json, math, os, sys

out = sys.argv[1]
rates = (1000, 5000, 10000)
expected = ["ready time", "peak throughput 64 conns", "peak throughput 256 conns"]
expected += [f"{q} latency at {r} req/s" for r in rates for q in ("p50", "p99", "p99.9")]
expected += ["CPU time per request 64 conns", "CPU time per request 256 conns", "peak RSS"]

failures = []


def check_numbers(where, row, cols, positive=True):
    """Each of `cols` in `row` must be a finite number: above zero, or at least zero when a part
    may be empty (a thread group the server does not have)."""
    for col in cols:
        try:
            v = float(row[col])
            ok = math.isfinite(v) and (v > 0 if positive else v >= 0)
        except ValueError:
            ok = False
        if not ok:
            failures.append(f"{where}: {col} is {row[col]!r}, not a number {'above' if positive else 'at least'} zero")


with open(os.path.join(out, "results.csv"), newline="") as f:
    reader = csv.DictReader(f)
    if reader.fieldnames != ["figure", "unit", "ceiling", "bridge", "ratio"]:
        failures.append(f"results.csv columns are {reader.fieldnames}")
    rows = {r["figure"]: r for r in reader}
for fig in expected:
    row = rows.get(fig)
    if row is None:
        failures.append(f"missing figure: {fig}")
        continue
    check_numbers(fig, row, ("ceiling", "bridge", "ratio"))
    if not row["unit"]:
        failures.append(f"{fig}: no unit")

with open(os.path.join(out, "phases.csv"), newline="") as f:
    phase_rows = list(csv.DictReader(f))
phases = {(r["phase"], r["server"]) for r in phase_rows}
wanted = [(f"peak-c{c}-r{i}", s) for c in (64, 256) for i in (1, 2)
          for s in ("ceiling", "bridge") + (("nokafka",) if c == 256 else ())]
wanted += [(f"rate-{r}-r{i}", s) for r in rates for i in (1, 2) for s in ("ceiling", "bridge")]
wanted += [("equal-rate", "nokafka")]
for name, s in wanted:
    if (name, s) not in phases:
        failures.append(f"phases.csv has no {name} row for the {s}")
# A figure of failed requests is no figure: every phase of every server answered 200 throughout.
for r in phase_rows:
    bad = {k: r[k] for k in ("non_200", "errors", "unsent") if r[k] != "0"}
    if bad or int(r["ok"]) == 0:
        failures.append(f"phases.csv {r['phase']} {r['server']}: {r['ok']} answered 200, {bad}")

# The decomposition: the three servers at 256 connections, each with a rate, its CPU by thread group,
# the load generator's CPU and the machine's idle share.
path = os.path.join(out, "decomposition.csv")
if not os.path.exists(path):
    failures.append("decomposition.csv was not written")
else:
    with open(path, newline="") as f:
        rows = {r["server"]: r for r in csv.DictReader(f)}
    for s in ("ceiling", "nokafka", "bridge"):
        row = rows.get(s)
        if row is None:
            failures.append(f"decomposition.csv has no {s} row")
            continue
        check_numbers(f"decomposition.csv {s}", row, (
            "ok_rate", "ratio_to_ceiling", "cpu_us_per_req", "runtime_us_per_req", "loadgen_cpu_us_per_req",
            "machine_ctxt_per_s"))
        check_numbers(f"decomposition.csv {s}", row, (
            "librdkafka_us_per_req", "other_us_per_req", "server_switches_per_s", "machine_idle_pct"),
            positive=False)
    # Only the bridge has Kafka client threads; finding CPU in them proves the grouping read them.
    try:
        bridge_librdkafka = float(rows["bridge"]["librdkafka_us_per_req"]) if "bridge" in rows else None
    except ValueError:
        bridge_librdkafka = 0.0
    if bridge_librdkafka is not None and not bridge_librdkafka > 0:
        failures.append("decomposition.csv: no CPU found in the bridge's librdkafka threads")
    # The bridge without Kafka again, open loop at the bridge's peak rate.
    row = rows.get("nokafka_at_bridge_rate")
    if row is None:
        failures.append("decomposition.csv has no nokafka_at_bridge_rate row")
    else:
        check_numbers("decomposition.csv nokafka_at_bridge_rate", row, ("ok_rate", "cpu_us_per_req"))
    # The Kafka client alone (examples/kafka_floor.rs) on the same dev-kafka.
    row = rows.get("kafka_floor")
    if row is None:
        failures.append("decomposition.csv has no kafka_floor row")
    else:
        check_numbers("decomposition.csv kafka_floor", row, (
            "ok_rate", "cpu_us_per_req", "kafka_cpu_us_per_req", "runtime_us_per_req", "librdkafka_us_per_req"))
    floors = glob.glob(os.path.join(out, "peak-c256-r*-floor.json"))
    if len(floors) != 2:  # one per repeat of the peak phases (--repeat 2)
        failures.append(f"{len(floors)} peak-c256-r*-floor.json files, not 2: the Kafka floor's runs were not checked")
    for path in floors:
        if json.load(open(path)).get("failed") != 0:
            failures.append(f"{os.path.basename(path)}: records failed in the measured window")

svg = os.path.join(out, "latency.svg")
if not os.path.exists(svg) or os.path.getsize(svg) == 0:
    failures.append("latency.svg was not drawn")
else:
    text = open(svg).read()
    if "<svg" not in text or text.count("<polyline") < 2:
        failures.append("latency.svg has no curves")

if failures:
    print("bench smoke: FAILED", *failures, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"bench smoke: {len(expected)} figures for both servers, the decomposition and the plot: all produced, "
      "above zero, and no request of any phase failed")
EOF

# bench/ab.sh: two short rounds, so its flags, start-up and report cannot rot either.
ab=(--rounds 2 --seconds 1 --connections 16 --b "-X acks=1" --out "$out/ab")
[ $# -gt 0 ] && ab+=(--a-bin "$1" --b-bin "$1")
bash bench/ab.sh "${ab[@]}"
python3 - "$out/ab/rounds.csv" <<'EOF'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
sides = sorted((r["round"], r["side"]) for r in rows)
ok = sides == [("1", "a"), ("1", "b"), ("2", "a"), ("2", "b")] and all(
    math.isfinite(float(r[c])) and float(r[c]) > 0 for r in rows for c in ("ok_rate", "cpu_us_per_req")) and all(
    r["failed"] == "0" for r in rows)
if not ok:
    sys.exit(f"bench smoke: bench/ab.sh's rounds.csv is incomplete: {rows}")
print("bench smoke: bench/ab.sh produced both sides of both rounds")
EOF

# bench/instructions.sh: each server under callgrind for a moment, so it cannot rot either.
instructions=(--rate 200 --seconds 2 --out "$out/instructions")
[ $# -gt 0 ] && instructions+=(--bridge "$1")
bash bench/instructions.sh "${instructions[@]}"
python3 - "$out/instructions/instructions.csv" <<'EOF'
import csv, sys
rows = {r["server"]: r for r in csv.DictReader(open(sys.argv[1]))}
ok = sorted(rows) == ["bridge", "ceiling", "nokafka"] and all(
    int(r["instructions_per_request"]) > 0 and int(r["requests"]) > 0 for r in rows.values()) and all(
    int(rows[s]["sha256_per_request"]) > 0 for s in ("bridge", "nokafka"))
if not ok:
    sys.exit(f"bench smoke: bench/instructions.sh's instructions.csv is incomplete: {list(rows.values())}")
print("bench smoke: bench/instructions.sh counted all three servers")
EOF
