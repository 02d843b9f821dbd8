#!/usr/bin/env python3
"""Compares a /metrics scrape of the running bridge with metric_names.py and the README.

usage: exported_metrics.py SCRAPE README

Every qikchat_bridge_* family the bridge exported must be known to the alert and dashboard checks
(metric_names.METRICS) and documented in the README's metrics table, and every family those
checks accept, or that table documents, must really be exported; the process_* families must be
there too. The scrape comes from a bridge with a spool and librdkafka's statistics on
(.ci/metrics-check.sh), the configuration in which every documented family exists.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metric_names import METRICS, PROCESS_METRICS  # noqa: E402


def main(scrape, readme):
    with open(scrape, encoding="utf-8") as f:
        families = set(re.findall(r"^# TYPE (\S+) ", f.read(), re.M))
    with open(readme, encoding="utf-8") as f:
        documented = metrics_table_names(f.read())
    if not documented:
        print("  - no metrics table found under the README's '### Metrics' heading")
        return 1
    ours = {n for n in families if n.startswith("qikchat_bridge_")}
    errors = []
    for name in sorted(ours - METRICS):
        errors.append(f"{name} is exported but unknown to .ci/lib/metric_names.py")
    for name in sorted(METRICS - ours):
        errors.append(f"{name} is in .ci/lib/metric_names.py but the bridge did not export it")
    for name in sorted(PROCESS_METRICS - families):
        errors.append(f"{name} was not exported")
    for name in sorted(ours):
        if name.removeprefix("qikchat_bridge_") not in documented:
            errors.append(f"{name} is not in the README's metrics table")
    # The table names the standard process_* families without the prefix the others carry.
    exported = {n.removeprefix("qikchat_bridge_") for n in ours} | {
        n for n in families if n.startswith("process_")
    }
    for name in sorted(documented - exported):
        errors.append(f"{name} is in the README's metrics table but the bridge did not export it")
    if errors:
        print("\n".join("  - " + e for e in errors))
        return 1
    print(
        f"{len(ours)} qikchat_bridge_* families exported, all known to the checks and documented, "
        "and every documented one exported"
    )
    return 0


def metrics_table_names(readme):
    """The names in the first column of the table under '### Metrics' (a row may name several):
    a name written in backticks anywhere else in the README does not count as documented."""
    names = set()
    lines = iter(readme.splitlines())
    for line in lines:
        if line.strip() == "### Metrics":
            break
    in_table = False
    for line in lines:
        if line.startswith("|"):
            in_table = True
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([a-z0-9_]+)`", first_cell))
        elif in_table or line.startswith("#"):
            break
    return names


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
