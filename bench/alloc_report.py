"""Heap allocations per webhook from bench/allocations.sh's files: by thread group (perf stat's
per-thread counts of the allocator uprobes), or with --sites by call site (recorded stacks).

Usage: alloc_report.py OUT_DIR SERVER SITES(0|1)
"""

import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attribute import samples, thread_group  # noqa: E402

# Frames that are the allocator or the standard library's way to it, not who asked for memory.
PLUMBING = ("malloc", "calloc", "realloc", "mallocx", "imalloc", "__rust_", "alloc::", "<alloc::",
            "core::", "<core::", "rd_malloc", "rd_calloc", "rd_realloc", "tikv_jemalloc")
INLINED = " (inlined)"


def per_thread(lines):
    """{thread group: allocations} from `perf stat -x, --per-thread` output."""
    groups = Counter()
    for line in lines:
        fields = line.strip().split(",")
        if len(fields) < 4 or not fields[1].strip().isdigit():
            continue
        # "tokio-rt-worker-12345": the name, then the tid.
        comm = fields[0].rsplit("-", 1)[0].strip()
        groups[thread_group(comm)] += int(fields[1])
    return groups


def site(frames):
    """The first frame that is neither allocator plumbing nor an inlined helper, with its
    caller: where the allocation was asked for."""
    own = [f for f in frames if not f.startswith(PLUMBING) and not f.endswith(INLINED)]
    return " <- ".join(f[:90] for f in own[:2]) or "?"


def sites(lines):
    """{(thread group, call site): allocations} from `perf script -F comm,tid,ip,sym`."""
    found = Counter()
    for comm, frames in samples(lines):
        found[(thread_group(comm), site(frames))] += 1
    return found


def main(argv):
    out, server, with_sites = argv[1], argv[2], argv[3] == "1"
    with open(os.path.join(out, "run.json")) as f:
        webhooks = json.load(f)["ok"]
    if not webhooks:
        sys.exit("no webhook was answered 200")
    if with_sites:
        with open(os.path.join(out, "stacks.txt")) as f:
            found = sites(f)
        print(f"{server}: heap allocations per webhook by call site ({webhooks} webhooks)")
        for (group, where), n in found.most_common(30):
            print(f"  {n / webhooks:6.2f}  {group:10s}  {where}")
        return
    with open(os.path.join(out, "stat.txt")) as f:
        groups = per_thread(f)
    total = sum(groups.values())
    print(f"{server}: heap allocations per webhook ({webhooks} webhooks)")
    for group, n in groups.most_common():
        print(f"  {n / webhooks:6.2f}  {group} threads")
    print(f"  {total / webhooks:6.2f}  all")


if __name__ == "__main__":
    main(sys.argv)
