"""Unit tests of bench/alloc_report.py (run by .ci/bench-smoke.sh: python3 -m unittest)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alloc_report  # noqa: E402

# `perf stat -x, --per-thread` lines: thread-tid, count, unit, event, ...
PERF_STAT = """\
# started on Tue Nov 24 19:10:00 2026

tokio-rt-worker-101,30000,,qballoc:malloc,3000000,100.00,,
tokio-rt-worker-102,29000,,qballoc:malloc,3000000,100.00,,
rdk:broker1-103,5500,,qballoc:calloc,3000000,100.00,,
producer pollin-104,1200,,qballoc:malloc,3000000,100.00,,
tokio-rt-worker-101,<not counted>,,qballoc:realloc,0,100.00,,
"""

# Two allocations as `perf script -F comm,tid,ip,sym` prints them: leaf frame first.
PERF_SCRIPT = """\
tokio-rt-worker 101 
\t          629f20 malloc
\t          629f20 __rust_alloc (inlined)
\t          629f20 alloc::raw_vec::RawVecInner<A>::finish_grow
\t          2a3fb9 deserialize_any<serde_json::read::SliceRead> (inlined)
\t          2a3fb9 qikchat_bridge::classify::classify
\t          14f5fb qikchat_bridge::webhook::Webhook::process

rdk:broker1 103 
\t          629f20 malloc
\t          7a0000 rd_malloc (inlined)
\t          7a1000 rd_kafka_buf_new0
\t          7a2000 rd_kafka_ProduceRequest
"""


class PerThread(unittest.TestCase):
    def test_counts_add_up_per_thread_group_and_uncounted_lines_are_skipped(self):
        groups = alloc_report.per_thread(PERF_STAT.splitlines())
        self.assertEqual(groups, {"runtime": 59000, "librdkafka": 6700})


class Sites(unittest.TestCase):
    def test_the_site_is_the_first_own_frame_past_the_allocator_and_inlined_helpers(self):
        found = alloc_report.sites(PERF_SCRIPT.splitlines())
        self.assertEqual(found, {
            ("runtime", "qikchat_bridge::classify::classify <- qikchat_bridge::webhook::Webhook::process"): 1,
            ("librdkafka", "rd_kafka_buf_new0 <- rd_kafka_ProduceRequest"): 1,
        })


if __name__ == "__main__":
    unittest.main()
