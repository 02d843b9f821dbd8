#!/usr/bin/env python3
"""Where one server's CPU goes, per request: `perf script` call stacks sorted into named parts.

Used by bench/profile.sh --call-graph. Reads the output of
    perf script -i perf.data --pid PID -F comm,tid,ip,sym
(one header line `COMM TID` per sample, then its frames, leaf first) and prints, for each thread
group (the runtime's workers, librdkafka's threads), the microseconds of CPU per request that go to
each part. Each sample counts once, for the first part in PART_RULES whose pattern is in one of its
frames, so the parts add up to the group's total; samples are scaled by the CPU per request that
loadgen measured for the whole process (perf samples CPU time at a fixed frequency).

Usage: attribute.py PERF_SCRIPT_TXT CPU_US_PER_REQ [--json]
"""

import json
import sys
from collections import Counter

# Thread groups, as bench/src/bin/loadgen/procstat.rs names them.
def thread_group(comm):
    if comm == "tokio-rt-worker":
        return "runtime"
    if comm.startswith("rdk:") or comm.startswith("producer pol"):
        return "librdkafka"
    return "other"


# (groups, part, patterns): a sample of a thread in one of `groups` belongs to the first part one
# of whose patterns occurs in one of its frames. The more specific parts come first: librdkafka's
# producev runs inside the sink's send, which runs inside the connection task, which the runtime's
# worker loop polls.
RT, RDK = ("runtime",), ("librdkafka",)
PART_RULES = [
    (RT, "Kafka: rd_kafka_producev (enqueue, partitioner, broker wake-up)", ["rd_kafka_producev"]),
    (RT, "Kafka: record headers (rd_kafka_headers_new/add)", ["rd_kafka_header"]),
    (RT, "Kafka: the rest of the sink's send (delivery future, deadline timer, metrics)",
     ["KafkaSink as qikchat_bridge::producer::Sink>::send", "FutureProducer"]),
    (RT, "Basic auth (base64, SHA-256 of the credential)", ["qikchat_bridge::auth::"]),
    # The credential's digest is inside auth (above); sha256_hex is inlined into the handler and
    # leaves no frame of its own, so any other SHA-256 on a runtime thread is the body's.
    (RT, "body SHA-256 header", ["sha256_hex", "sha2::sha256::"]),
    (RT, "classify (JSON scan for event, key, depth)", ["qikchat_bridge::classify::"]),
    (RT, "response write: writev, loopback TCP incl. the client's receive and wake-up", ["writev"]),
    (RT, "request read: recv", ["__libc_recv", "recvfrom"]),
    (RDK, "broker thread: build produce requests", ["rd_kafka_ProduceRequest"]),
    (RDK, "broker thread: socket send/recv", ["rd_kafka_transport_socket_sendmsg",
                                              "rd_kafka_transport_socket_recvmsg", "rd_kafka_recv"]),
    (RDK, "broker thread: produce responses", ["rd_kafka_handle_Produce"]),
    (RDK, "delivery reports: waking the tasks", ["wake_by_val", "wake_by_ref"]),
    (RDK, "delivery reports: freeing records", ["rd_kafka_msg_destroy", "rd_kafka_op_destroy"]),
    (None, "waking another thread (futex wake)", ["futex_wake"]),
    (None, "waiting: epoll_wait, poll, futex wait, scheduler",
     ["epoll_wait", "do_sys_poll", "futex_wait", "__schedule"]),
]
OTHER = "everything else"
# What "everything else" mostly is, per group, for the printed table.
OTHER_NOTE = {
    "runtime": "hyper's parsing and encoding, tokio's scheduler, the allocator, routing, metrics",
    "librdkafka": "queues, locks and timers of librdkafka, the stack frames perf could not unwind",
}


def samples(lines):
    """Yields (comm, frames) per sample of `perf script -F comm,tid,ip,sym` output."""
    comm, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line[0] not in " \t":
            if comm is not None:
                yield comm, frames
            # "COMM TID": the name may hold spaces ("producer pollin"), the tid never does.
            comm, frames = line.strip().rsplit(None, 1)[0], []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            frames.append(parts[1])
    if comm is not None:
        yield comm, frames


def part_of(group, frames):
    for groups, part, patterns in PART_RULES:
        if groups is not None and group not in groups:
            continue
        if any(p in f for f in frames for p in patterns):
            return part
    return OTHER


def attribute(lines, us_per_req):
    """{group: {part: µs per request}} and the sample count, scaled so all groups sum to
    us_per_req."""
    counts = {}
    total = 0
    for comm, frames in samples(lines):
        group = thread_group(comm)
        counts.setdefault(group, Counter())[part_of(group, frames)] += 1
        total += 1
    scale = us_per_req / total if total else 0.0
    return {g: {p: n * scale for p, n in c.items()} for g, c in counts.items()}, total


def render(table, total, us_per_req):
    out = [f"{total} samples, scaled to the {us_per_req:.2f} us of CPU per request loadgen measured"]
    for group in sorted(table, key=lambda g: -sum(table[g].values())):
        parts = table[group]
        out.append(f"  {group} threads: {sum(parts.values()):.2f} us/req")
        for part, us in sorted(parts.items(), key=lambda kv: -kv[1]):
            note = f" ({OTHER_NOTE[group]})" if part == OTHER and group in OTHER_NOTE else ""
            out.append(f"    {us:6.2f}  {part}{note}")
    return "\n".join(out)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    us_per_req = float(argv[2])
    with open(argv[1], errors="replace") as f:
        table, total = attribute(f, us_per_req)
    if total == 0:
        sys.exit("attribute: no samples in " + argv[1])
    if "--json" in argv[3:]:
        print(json.dumps({"samples": total, "us_per_req": table}, indent=1))
    else:
        print(render(table, total, us_per_req))


if __name__ == "__main__":
    main(sys.argv)
