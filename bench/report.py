#!/usr/bin/env python3
"""Turns bench/run.sh's raw results (OUT/*.json) into OUT/results.csv, OUT/phases.csv,
OUT/latency.svg and a table on stdout. Standard library only.

usage: report.py OUT_DIR
"""

import csv
import json
import math
import os
import sys
from collections import Counter


def load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fnum(x, digits=4):
    """A figure as CSV text: plain decimal, `digits` significant digits, never exponent form."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:.{decimals}f}"


def p99_of(r):
    """A run's p99 in ms; infinite when it has none (no request answered 200)."""
    v = r["latency_ms"]["p99"]
    return math.inf if v is None else v


def lower_median(values):
    """The middle of the sorted values, the lower middle one for an even count; None for none."""
    values = sorted(values)
    return values[(len(values) - 1) // 2] if values else None


def median_latency(runs):
    """Each latency percentile of a server's repeats at one fixed rate, the median of its own
    values across the runs (a run with no 200, which has none, counts as the slowest). Per
    percentile rather than all from the run with the median p99, which may be that run's best or
    worst p99.9; since every run has p50 <= p99 <= p99.9, so do these medians."""
    keys = {k for r in runs for k in r["latency_ms"]}
    out = {}
    for k in keys:
        v = lower_median(math.inf if r["latency_ms"].get(k) is None else r["latency_ms"][k] for r in runs)
        out[k] = None if v is None or math.isinf(v) else v
    return out


def ratio(c, b):
    """bridge / ceiling, or None when either is missing or the ceiling is 0."""
    if c is None or b is None or c == 0:
        return None
    return b / c


def trouble(r):
    """Why a phase's figures cannot be judged against a target (failed requests, or a fixed rate
    not kept), or None."""
    if r is None:
        return None
    failed = r["non_200"] + r["errors"] + r["unsent"]
    if failed:
        return f"{failed} of its requests failed"
    if r["mode"] == "open" and r["offered_rate"] and r["rate"] < 0.97 * r["offered_rate"]:
        return f"it sent {r['rate']:.0f} of the {r['offered_rate']:.0f} req/s offered"
    return None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")
    meta = load(out, "meta.json") or {}
    rates = meta.get("rates", [1000, 5000, 10000])
    peaks = meta.get("peak_connections", [64, 256])
    repeats = meta.get("peak_repeats", 1)
    rate_repeats = meta.get("rate_repeats", 1)
    servers = ("ceiling", "bridge")
    phase = {}
    for name in (["warmup"] + [f"peak-c{c}-r{i}" for c in peaks for i in range(1, repeats + 1)]
                 + [f"rate-{r}-r{i}" for r in rates for i in range(1, rate_repeats + 1)]):
        for s in servers:
            phase[(name, s)] = load(out, f"{name}-{s}.json")
    phase[("warmup", "nokafka")] = load(out, "warmup-nokafka.json")
    phase[("equal-rate", "nokafka")] = load(out, "equal-rate-nokafka.json")
    # The decomposition's third server (the bridge without Kafka) runs in one peak phase only.
    dc = meta.get("decomposition_connections")
    if dc is not None:
        for i in range(1, repeats + 1):
            phase[(f"peak-c{dc}-r{i}", "nokafka")] = load(out, f"peak-c{dc}-r{i}-nokafka.json")
    # Each peak figure is the run with the median throughput of its server's repeats (the runs
    # alternated between the servers), so a noisy second on the shared machine does not decide it.
    spreads = {}
    for c in peaks:
        for s in servers + (("nokafka",) if c == dc else ()):
            runs = [r for r in (phase.get((f"peak-c{c}-r{i}", s)) for i in range(1, repeats + 1)) if r]
            if runs:
                runs.sort(key=lambda r: r["ok_rate"])
                phase[(f"peak-c{c}", s)] = runs[(len(runs) - 1) // 2]
                spreads[(c, s)] = (runs[0]["ok_rate"], runs[-1]["ok_rate"], len(runs))
    # Each fixed-rate phase is the run with the median p99 of its server's repeats (its failures
    # and rate decide whether a target is judged), with each latency percentile the median of its
    # own across the repeats; the target's verdict also counts how many runs met it.
    rate_p99s = {}
    for r in rates:
        for s in servers:
            runs = [x for x in (phase.get((f"rate-{r}-r{i}", s)) for i in range(1, rate_repeats + 1)) if x]
            if runs:
                # A run with no 200 has no latency: it sorts last, as the slowest.
                runs.sort(key=lambda x: p99_of(x))
                phase[(f"rate-{r}", s)] = dict(runs[(len(runs) - 1) // 2], latency_ms=median_latency(runs))
                rate_p99s[(r, s)] = runs
    aliases = {f"peak-c{c}" for c in peaks} | {f"rate-{r}" for r in rates}
    ready = {s: (load(out, f"ready-{s}.json") or {}).get("ready_ms") for s in servers}
    mem = load(out, "memory.json") or {}

    def get(name, s, *path):
        v = phase.get((name, s))
        for p in path:
            if v is None:
                return None
            v = v.get(p)
        return v

    # (figure, unit, ceiling, bridge, target description, target check on (ceiling, bridge), the
    # bridge's phase the figure comes from)
    rows = []
    rows.append(("ready time", "ms", ready["ceiling"], ready["bridge"],
                 "< 200 ms", lambda c, b: b < 200, None))
    for c in peaks:
        rows.append((f"peak throughput {c} conns", "req/s",
                     get(f"peak-c{c}", "ceiling", "ok_rate"), get(f"peak-c{c}", "bridge", "ok_rate"),
                     ">= 0.8x ceiling" if c == 256 else "", (lambda c_, b: b >= 0.8 * c_) if c == 256 else None,
                     f"peak-c{c}"))
    for r in rates:
        for key, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            target = key == "p99" and r == 5000
            rows.append((f"{label} latency at {r} req/s", "ms",
                         get(f"rate-{r}", "ceiling", "latency_ms", key), get(f"rate-{r}", "bridge", "latency_ms", key),
                         "<= 2 ms" if target else "", (lambda c_, b: b <= 2.0) if target else None, f"rate-{r}"))
    for c in peaks:
        rows.append((f"CPU time per request {c} conns", "us",
                     get(f"peak-c{c}", "ceiling", "cpu_us_per_req", "ceiling"),
                     get(f"peak-c{c}", "bridge", "cpu_us_per_req", "bridge"), "", None, None))
    kib = lambda v: None if v is None else v / 1024.0
    rows.append(("peak RSS", "MiB", kib(mem.get("ceiling_vm_hwm_kib")), kib(mem.get("bridge_vm_hwm_kib")),
                 "<= 64 MiB", lambda c, b: b <= 64, None))

    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["figure", "unit", "ceiling", "bridge", "ratio"])
        for fig, unit, c, b, _, _, _ in rows:
            w.writerow([fig, unit, fnum(c), fnum(b), fnum(ratio(c, b))])

    cols = ["phase", "server", "mode", "connections", "offered_rate", "duration_s", "answers", "ok", "non_200",
            "errors", "unsent", "rate", "ok_rate", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
            "cpu_us_per_req", "kafka_cpu_us_per_req"]
    with open(os.path.join(out, "phases.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for (name, s), r in phase.items():
            if r is None or name in aliases:  # a copy of one repeat
                continue
            l = r["latency_ms"]
            w.writerow([name, s, r["mode"], r["connections"], r["offered_rate"] or "", r["duration_s"], r["answers"],
                        r["ok"], r["non_200"], r["errors"], r["unsent"], fnum(r["rate"]), fnum(r["ok_rate"]),
                        l["p50"], l["p90"], l["p99"], l["p999"], l["max"],
                        fnum(r["cpu_us_per_req"].get(s)), fnum(r["cpu_us_per_req"].get("kafka"))])

    draw_svg(os.path.join(out, "latency.svg"), rates, phase, meta)
    # The Kafka client alone ran beside the decomposition: its median run by rate, too.
    floors = sorted((r for r in (load(out, f"peak-c{dc}-r{i}-floor.json") for i in range(1, repeats + 1)) if r),
                    key=lambda r: r["ok_rate"])
    floor = floors[(len(floors) - 1) // 2] if floors else None
    decomposition = decompose(out, dc, get, floor, meta.get("cpus"))

    # --- the table ---
    smoke = meta.get("mode") == "smoke"
    print(f"qikchat-bridge vs bare hyper (ceiling): {meta.get('mode', '?')} run, {meta.get('phase_s')} s a phase, "
          f"{meta.get('cpus')} CPUs, bridge {meta.get('bridge_commit')}, Kafka: {meta.get('kafka')}"
          + (f", extra bridge flags: {' '.join(meta['bridge_extra_flags'])}" if meta.get("bridge_extra_flags") else ""))
    head = ["figure", "unit", "ceiling", "bridge", "bridge/ceiling", "target"]
    table = []
    for fig, unit, c, b, tdesc, tcheck, source in rows:
        verdict = ""
        why_not = trouble(phase.get((source, "bridge"))) if source else None
        if tcheck and why_not:
            verdict = f"{tdesc}: not judged, {why_not}"
        elif tcheck and c is not None and b is not None:
            verdict = f"{tdesc}: {'met' if tcheck(c, b) else 'MISSED'}"
        table.append([fig, unit, fnum(c) or "-", fnum(b) or "-", fnum(ratio(c, b), 3) or "-", verdict])
    widths = [max(len(str(x[i])) for x in table + [head]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(v).rjust(w) if 1 < i < 5 else str(v).ljust(w)
                                   for i, (v, w) in enumerate(zip(cells, widths))).rstrip()
    print(line(head))
    print(line(["-" * w for w in widths]))
    for t in table:
        print(line(t))

    notes = [
        "throughput counts 200 answers only; latency is from each request's intended send time "
        f"(open loop, {meta.get('rate_connections', 64)} connections); the bridge's ready time includes its "
        "first metadata round trip to Kafka; CPU is the server process alone (utime+stime)",
    ]
    if repeats > 1:
        notes.append(f"peak figures: the median of {repeats} runs per server (the lower middle one for an even count), the servers alternating; ranges: " + "; ".join(
            f"{c} conns {s} {fnum(lo, 3)}-{fnum(hi, 3)}" for (c, s), (lo, hi, _) in sorted(spreads.items())))
    if rate_repeats > 1:
        notes.append(f"fixed-rate figures: each percentile the median of its own across {rate_repeats} runs per server "
                     "(the lower middle one for an even count), the servers alternating")
    runs = rate_p99s.get((5000, "bridge"))
    if runs:
        met = sum(1 for x in runs if not trouble(x) and p99_of(x) <= 2.0)
        notes.append(f"p99 at 5000 req/s <= 2 ms in {met} of {len(runs)} runs of the bridge (p99 "
                     + ", ".join(f"{x['latency_ms']['p99']} ms" for x in runs) + "; the ceiling's "
                     + ", ".join(f"{x['latency_ms']['p99']} ms" for x in rate_p99s.get((5000, "ceiling"), [])) + ")")
    if smoke:
        notes.append("smoke run: phases too short for the figures to mean anything; it only proves every figure is produced")
    if meta.get("busy_note"):
        notes.append(meta["busy_note"])
    if meta.get("load_average_end", 0) > meta.get("cpus", 2) + 1.5:
        notes.append(f"load average {meta['load_average_end']} at the end: another process competed for the CPUs")
    for (name, s), r in phase.items():
        if name in aliases:
            continue  # a copy of one repeat, reported under its own name
        if r and (r["non_200"] or r["errors"] or r["unsent"]):
            notes.append(f"{name} {s}: {r['non_200']} non-200 answers {r['by_status']}, {r['errors']} connection "
                         f"errors, {r['unsent']} requests never sent" + (f" (last error: {r['last_error']})" if r["last_error"] else ""))
        if r and r["mode"] == "open" and r["offered_rate"] and r["rate"] < 0.97 * r["offered_rate"]:
            notes.append(f"{name} {s}: achieved {r['rate']:.0f} req/s of the {r['offered_rate']:.0f} offered")
    k = [get(f"peak-c{c}", "bridge", "cpu_us_per_req", "kafka") for c in peaks]
    if any(v is not None for v in k):
        notes.append("dev-kafka's own CPU per request at peak: " +
                     ", ".join(f"{c} conns {fnum(v, 3)} us" for c, v in zip(peaks, k) if v is not None) +
                     f"; its peak RSS {fnum(kib(mem.get('kafka_vm_hwm_kib')), 3)} MiB")
    log = os.path.join(out, "bridge.log")
    if os.path.exists(log):
        levels, msgs = Counter(), Counter()
        with open(log, errors="replace") as f:
            for ln in f:
                try:
                    rec = json.loads(ln)
                except ValueError:
                    continue
                levels[rec.get("level", "?")] += 1
                if rec.get("level") in ("WARN", "ERROR"):
                    msgs[str(rec.get("message", rec.get("fields", {}).get("message", "")))[:100]] += 1
        if msgs:
            notes.append("bridge log: " + ", ".join(f"{v} {k}" for k, v in sorted(levels.items())) +
                         "; most frequent: " + "; ".join(f"{n}x {m!r}" for m, n in msgs.most_common(3)))
    if decomposition:
        print(f"\nwhere the peak gap goes, {dc} connections (medians of the same alternating runs):")
        for line_ in decomposition:
            print(f"  {line_}".rstrip())
    print()
    for n in notes:
        print(f"* {n}")
    print(f"\nwritten: {os.path.join(out, 'results.csv')}, {os.path.join(out, 'phases.csv')}, "
          + (f"{os.path.join(out, 'decomposition.csv')}, " if decomposition else "")
          + f"{os.path.join(out, 'latency.svg')}")


def decompose(out, dc, get, floor=None, cpus=None):
    """The peak figure split in three servers: the ceiling (HTTP alone), the bridge without Kafka
    (its own request handling added) and the bridge (the Kafka client and broker added); and,
    when it ran, the Kafka client alone (examples/kafka_floor.rs, no HTTP) with the CPU budget
    that 0.8x the ceiling leaves. Writes OUT/decomposition.csv and returns the lines to print, or
    None when the third server did not run."""
    if dc is None:
        return None
    name = f"peak-c{dc}"
    rows = []
    for s, what in (("ceiling", "bare hyper: HTTP only"),
                    ("nokafka", "the bridge, its sink answering at once: + auth, classify, record, metrics"),
                    ("bridge", "the bridge: + librdkafka and the broker's acknowledgement")):
        rate = get(name, s, "ok_rate")
        cpu = get(name, s, "cpu_us_per_req", s)
        if rate is None:
            return None
        rows.append((s, what, rate, cpu))
    ceiling = rows[0][2]
    kafka_cpu = get(name, "bridge", "cpu_us_per_req", "kafka")
    # The bridge without Kafka again at the bridge's own rate (open loop), when it ran.
    equal_rate = get("equal-rate", "nokafka", "rate")
    equal_ok_rate = get("equal-rate", "nokafka", "ok_rate")
    equal_cpu = get("equal-rate", "nokafka", "cpu_us_per_req", "nokafka")

    def group(s, g):  # CPU per request of one thread group of server s, in its own run
        return get(name, s, "threads", s, g, "cpu_us_per_req")

    def switches(s):
        per = [v.get("switches_per_s") for v in (get(name, s, "threads", s) or {}).values()]
        return sum(per) if per and None not in per else None

    threads = {s: {"runtime": group(s, "runtime"), "librdkafka": group(s, "librdkafka") or 0.0,
                   "other": group(s, "other") or 0.0, "switches": switches(s),
                   "loadgen": get(name, s, "loadgen_cpu_us_per_req"),
                   "idle": get(name, s, "machine", "idle_pct"), "ctxt": get(name, s, "machine", "ctxt_per_s")}
               for s, _, _, _ in rows}
    with open(os.path.join(out, "decomposition.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["server", "connections", "ok_rate", "ratio_to_ceiling", "cpu_us_per_req", "kafka_cpu_us_per_req",
                    "runtime_us_per_req", "librdkafka_us_per_req", "other_us_per_req", "server_switches_per_s",
                    "loadgen_cpu_us_per_req", "machine_idle_pct", "machine_ctxt_per_s"])
        for s, _, rate, cpu in rows:
            t = threads[s]
            w.writerow([s, dc, fnum(rate), fnum(rate / ceiling if ceiling else None),
                        fnum(cpu), fnum(kafka_cpu) if s == "bridge" else "",
                        fnum(t["runtime"]), fnum(t["librdkafka"]), fnum(t["other"]), fnum(t["switches"]),
                        fnum(t["loadgen"]), fnum(t["idle"]), fnum(t["ctxt"])])
        if equal_cpu is not None:
            w.writerow(["nokafka_at_bridge_rate", dc, fnum(equal_ok_rate),
                        fnum(equal_ok_rate / ceiling if ceiling and equal_ok_rate is not None else None),
                        fnum(equal_cpu), "", fnum(get("equal-rate", "nokafka", "threads", "nokafka", "runtime",
                                                      "cpu_us_per_req")), "", "", "",
                        fnum(get("equal-rate", "nokafka", "loadgen_cpu_us_per_req")), "", ""])
        if floor:
            w.writerow(["kafka_floor", floor.get("concurrency"), fnum(floor.get("ok_rate")), "",
                        fnum(floor.get("cpu_us_per_record")), fnum(floor.get("broker_us")),
                        fnum(floor.get("runtime_us")), fnum(floor.get("librdkafka_us")),
                        fnum(floor.get("other_us")), "", "", "", ""])
    lines = [f"{s:8s} {fnum(rate, 3):>8s} ok/s  {fnum(rate / ceiling if ceiling else None, 3):>6s}x  "
             f"{fnum(cpu, 3) or '-':>6s} us CPU/req  {what}" for s, what, rate, cpu in rows]
    (_, _, r_c, c_c), (_, _, r_n, c_n), (_, _, r_b, c_b) = rows
    if None not in (c_c, c_n, c_b):
        lines.append(f"own request handling: +{fnum(c_n - c_c, 3)} us/req; the Kafka client in the bridge "
                     f"process: +{fnum(c_b - c_n, 3)} us/req"
                     + (f", and the broker process {fnum(kafka_cpu, 3)} us/req on the same CPUs" if kafka_cpu else ""))
    if None not in (equal_cpu, c_b):
        lines.append(f"at equal rates: the bridge without Kafka, open loop at the bridge's {fnum(equal_rate, 3)} req/s, "
                     f"{fnum(equal_cpu, 3)} us/req; the Kafka client in the bridge process then adds "
                     f"{'+' if c_b >= equal_cpu else ''}{fnum(c_b - equal_cpu, 3)} us/req")
    if None not in (c_c, c_b):
        # The throughput ratio is of two runs sharing the CPUs with the load generator, whose cost
        # per request is about the same in both: it pulls the ratio towards 1.
        server_cost = c_b + (kafka_cpu or 0)
        lines.append(f"CPU per request, which the load generator's share does not bend: the bridge with its broker "
                     f"{fnum(server_cost, 3)} us against the ceiling's {fnum(c_c, 3)}, "
                     f"{fnum(c_c / server_cost if server_cost else None, 3)}x (what the throughput ratio would tend to "
                     "with the load generator on other CPUs)")
    lines.append("")
    lines.append("by thread, same runs (us of CPU per request; switches are voluntary + involuntary, per second):")
    lines.append(f"{'':8s} {'runtime':>8s} {'librdkafka':>10s} {'other':>6s} {'switches':>9s} | {'loadgen':>7s} "
                 f"{'dev-kafka':>9s} | {'machine idle':>12s} {'switches':>9s}")
    for s, _, _, _ in rows:
        t = threads[s]
        k = fnum(kafka_cpu, 3) if s == "bridge" and kafka_cpu else "-"
        lines.append(f"{s:8s} {fnum(t['runtime'], 3) or '-':>8s} {fnum(t['librdkafka'], 3):>10s} "
                     f"{fnum(t['other'], 3):>6s} {fnum(t['switches'], 3) or '-':>9s} | {fnum(t['loadgen'], 3) or '-':>7s} "
                     f"{k:>9s} | {(fnum(t['idle'], 3) or '-') + ' %':>12s} {fnum(t['ctxt'], 3) or '-':>9s}")
    if floor:
        # At 0.8x the ceiling the load generator would be driving the bridge: its cost in that run.
        lines += floor_lines(floor, r_c, c_n, threads["bridge"]["loadgen"], cpus)
    return lines


def floor_lines(floor, ceiling_rate, nokafka_cpu, loadgen_cpu, cpus):
    """What the Kafka client costs without HTTP, and whether the bridge could reach 0.8x the
    ceiling if it cost nothing more inside the bridge than alone."""
    broker = floor.get("broker_us")
    alone = floor["cpu_us_per_record"] + (broker or 0)
    lines = ["",
             f"the Kafka client alone (examples/kafka_floor.rs: {floor['concurrency']} sends in flight through the "
             f"bridge's KafkaSink, no HTTP; median run): {fnum(floor['ok_rate'], 3)} records/s, "
             f"{fnum(floor['cpu_us_per_record'], 3)} us CPU/record (runtime {fnum(floor['runtime_us'], 3)}, "
             f"librdkafka {fnum(floor['librdkafka_us'], 3)})"
             + (f", dev-kafka {fnum(broker, 3)} us/record" if broker is not None else "")]
    if cpus and ceiling_rate and loadgen_cpu is not None and nokafka_cpu is not None:
        target = 0.8 * ceiling_rate
        budget = cpus * 1e6 / target - loadgen_cpu
        lines.append(f"0.8x the ceiling is {fnum(target, 3)} req/s: with all {cpus} CPUs busy and the load generator's "
                     f"{fnum(loadgen_cpu, 3)} us/req, the bridge and its broker may spend {fnum(budget, 3)} us/req; "
                     f"the bridge without Kafka takes {fnum(nokafka_cpu, 3)}, the Kafka client alone with its broker "
                     f"{fnum(alone, 3)} (together {fnum(nokafka_cpu + alone, 3)})")
    return lines


def draw_svg(path, rates, phase, meta):
    W, H = 780, 460
    L, R, T, B = 70, 210, 50, 60
    pw, ph = W - L - R, H - T - B
    series = []
    colors = {"ceiling": "#1f77b4", "bridge": "#d62728"}
    dashes = {"p50": "", "p99": "6,4", "p999": "2,3"}
    labels = {"p50": "p50", "p99": "p99", "p999": "p99.9"}
    for s in ("ceiling", "bridge"):
        for q in ("p50", "p99", "p999"):
            pts = []
            for r in rates:
                v = (phase.get((f"rate-{r}", s)) or {}).get("latency_ms", {}).get(q)
                if v is not None:
                    pts.append((r, max(v, 1e-3)))
            series.append((s, q, pts))
    vals = [v for _, _, pts in series for _, v in pts] or [0.1, 1]
    lo = 10 ** math.floor(math.log10(min(vals + [0.1])))
    hi = 10 ** math.ceil(math.log10(max(vals + [2.0]) * 1.01))
    xmax = max(rates) * 1.05 if rates else 1
    x = lambda r: L + pw * r / xmax
    y = lambda v: T + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L + pw / 2}" y="22" text-anchor="middle" font-size="15">Latency against offered load '
         f'(open loop, {meta.get("rate_connections", 64)} keep-alive connections)</text>',
         f'<text x="{L + pw / 2}" y="38" text-anchor="middle" fill="#555">qikchat-bridge (200 = Kafka acknowledged) '
         f'vs bare hyper; {meta.get("mode", "")} run, {meta.get("phase_s", "")} s a point</text>']
    # grid: decades and 2x/5x
    d = lo
    while d <= hi * 1.0001:
        for m in (1, 2, 5):
            v = d * m
            if v > hi * 1.0001:
                break
            yy = y(v)
            o.append(f'<line x1="{L}" x2="{L + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{"#ccc" if m == 1 else "#eee"}"/>')
            o.append(f'<text x="{L - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>')
        d *= 10
    step = 10 ** math.floor(math.log10(xmax)) if xmax > 0 else 1
    if xmax / step < 4:
        step /= 2
    t = 0.0
    while t <= xmax:
        xx = x(t)
        o.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{T}" y2="{T + ph}" stroke="#eee"/>')
        o.append(f'<text x="{xx:.1f}" y="{T + ph + 16}" text-anchor="middle">{t:g}</text>')
        t += step
    o.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{L + pw / 2}" y="{H - 18}" text-anchor="middle">offered load (requests/s)</text>')
    o.append(f'<text transform="translate(18,{T + ph / 2}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>')
    if lo <= 2 <= hi:
        o.append(f'<line x1="{L}" x2="{L + pw}" y1="{y(2):.1f}" y2="{y(2):.1f}" stroke="#2ca02c" stroke-dasharray="8,3"/>')
        ly = T + 10 + 6 * 20
        o.append(f'<line x1="{L + pw + 15}" x2="{L + pw + 45}" y1="{ly}" y2="{ly}" stroke="#2ca02c" stroke-dasharray="8,3"/>')
        o.append(f'<text x="{L + pw + 52}" y="{ly + 4}">target: p99 2 ms at 5k/s</text>')
    for i, (s, q, pts) in enumerate(series):
        if not pts:
            continue
        c = colors[s]
        dash = f' stroke-dasharray="{dashes[q]}"' if dashes[q] else ""
        o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="' +
                 " ".join(f"{x(r):.1f},{y(v):.1f}" for r, v in pts) + '"/>')
        for r, v in pts:
            o.append(f'<circle cx="{x(r):.1f}" cy="{y(v):.1f}" r="3" fill="{c}"><title>{s} {labels[q]} at {r}/s: {v} ms</title></circle>')
        ly = T + 10 + i * 20
        o.append(f'<line x1="{L + pw + 15}" x2="{L + pw + 45}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<text x="{L + pw + 52}" y="{ly + 4}">{s} {labels[q]}</text>')
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
