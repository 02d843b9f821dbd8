"""bench/ab.sh's report: each round's figures for A and B, and B/A as the median of paired ratios.

Pairing each round's B with its own A cancels what the host did during that round; the median
keeps one disturbed round from moving the answer.
"""
import csv
import json
import os
import statistics
import sys

FIGURES = [  # (column, unit, where in loadgen's JSON)
    ("ok_rate", "req/s", lambda r: r["ok_rate"]),
    ("cpu_us_per_req", "us", lambda r: r["cpu_us_per_req"]["bridge"]),
    ("p50_ms", "ms", lambda r: r["latency_ms"]["p50"]),
    ("p99_ms", "ms", lambda r: r["latency_ms"]["p99"]),
]


def figures(run):
    """A round's figures; a latency of a round with no 200 is NaN."""
    return {name: float("nan") if get(run) is None else float(get(run)) for name, _, get in FIGURES}


def failed(run):
    """Requests of a round that did not get a 200: its figures then do not compare with the other
    side's (throughput counts 200s only, latency is of 200s only)."""
    return run["non_200"] + run["errors"] + run["unsent"]


def paired_ratios(rounds):
    """rounds: [(a, b)] of figure dicts → {figure: median of b/a over the rounds}."""
    out = {}
    for name, _, _ in FIGURES:
        ratios = [b[name] / a[name] for a, b in rounds if a[name] > 0]
        out[name] = statistics.median(ratios) if ratios else float("nan")
    return out


def main(out, n, label_a, label_b):
    rounds, failures = [], {}
    for r in range(1, n + 1):
        pair = []
        for side in "ab":
            with open(os.path.join(out, f"round-{r}-{side}.json")) as f:
                run = json.load(f)
            pair.append(figures(run))
            failures[(r, side)] = failed(run)
        rounds.append(tuple(pair))
    with open(os.path.join(out, "rounds.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["round", "side"] + [name for name, _, _ in FIGURES] + ["failed"])
        for r, (a, b) in enumerate(rounds, 1):
            for side, fig in (("a", a), ("b", b)):
                w.writerow([r, side] + [f"{fig[name]:.4g}" for name, _, _ in FIGURES] + [failures[(r, side)]])
    print(label_a)
    print(label_b)
    print(f"{'round':>5}  " + "  ".join(f"{name + ' A':>16} {name + ' B':>16}" for name, _, _ in FIGURES))
    for r, (a, b) in enumerate(rounds, 1):
        print(f"{r:>5}  " + "  ".join(f"{a[name]:>16.4g} {b[name]:>16.4g}" for name, _, _ in FIGURES))
    # A round where either side had failed requests compares nothing: left out of the medians.
    clean = [pair for r, pair in enumerate(rounds, 1) if not failures[(r, "a")] and not failures[(r, "b")]]
    ratios = paired_ratios(clean)
    print(f"B/A, median of {len(clean)} paired rounds"
          + (f" ({n - len(clean)} left out for failed requests)" if len(clean) < n else "") + ": " + ", ".join(
        f"{name} {ratios[name]:.3f}" for name, _, _ in FIGURES))
    for (r, side), k in sorted(failures.items()):
        if k:
            print(f"!! round {r} {side.upper()}: {k} requests failed; its figures do not compare with the other side's")
    print(f"written: {os.path.join(out, 'rounds.csv')}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
