"""Unit tests of bench/attribute.py (run by .ci/bench-smoke.sh: python3 -m unittest)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attribute  # noqa: E402

# Four samples as `perf script -F comm,tid,ip,sym` prints them: leaf frame first.
PERF_SCRIPT = """\
tokio-rt-worker 101 
\t          7bf39e rd_kafka_msg_partitioner
\t          7bf300 rd_kafka_producev
\t          4d5eed <qikchat_bridge::producer::KafkaSink as qikchat_bridge::producer::Sink>::send::{{closure}}
\t          44f17f hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_write

tokio-rt-worker 102 
\tffffffff82025e07 tcp_sendmsg
\t          46d33f __GI___writev
\t          44f17f hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_write

rdk:broker1 103 
\t          7a0000 rd_kafka_msgset_writer_write_msg_v2
\t          7a1000 rd_kafka_ProduceRequest
\t          7a2000 rd_kafka_broker_thread_main

producer pollin 104 
\t          710e42 rd_refcnt_sub0 (inlined)
\t          710e00 [unknown]
"""


class AttributeTest(unittest.TestCase):
    def test_samples_are_split_with_their_thread_names_even_when_names_hold_spaces(self):
        got = list(attribute.samples(PERF_SCRIPT.splitlines(True)))
        self.assertEqual([c for c, _ in got],
                         ["tokio-rt-worker", "tokio-rt-worker", "rdk:broker1", "producer pollin"])
        self.assertEqual(got[2][1][1], "rd_kafka_ProduceRequest")

    def test_each_sample_goes_to_the_most_specific_part_of_its_thread_group(self):
        table, total = attribute.attribute(PERF_SCRIPT.splitlines(True), 8.0)
        self.assertEqual(total, 4)
        runtime, rdk = table["runtime"], table["librdkafka"]
        producev = next(p for p in runtime if "rd_kafka_producev" in p)
        write = next(p for p in runtime if p.startswith("response write"))
        self.assertEqual(runtime[producev], 2.0)  # not the sink's send, nor hyper's write
        self.assertEqual(runtime[write], 2.0)
        self.assertEqual(rdk["broker thread: build produce requests"], 2.0)
        self.assertEqual(rdk[attribute.OTHER], 2.0)

    def test_the_parts_add_up_to_the_measured_cpu_per_request(self):
        table, _ = attribute.attribute(PERF_SCRIPT.splitlines(True), 8.0)
        self.assertAlmostEqual(sum(sum(p.values()) for p in table.values()), 8.0)

    def test_runtime_only_parts_never_claim_librdkafka_samples(self):
        frames = ["futex_wait", "wake_by_val", "KafkaSink as qikchat_bridge::producer::Sink>::send"]
        self.assertTrue(attribute.part_of("librdkafka", frames).startswith("delivery reports"))
        self.assertTrue(attribute.part_of("runtime", frames).startswith("Kafka: the rest"))

    def test_the_body_digest_is_found_without_its_inlined_frame_and_the_credential_stays_auth(self):
        body = ["sha2::sha256::x86::digest_blocks", "<D as digest::digest::Digest>::digest",
                "<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll"]
        self.assertEqual(attribute.part_of("runtime", body), "body SHA-256 header")
        credential = body[:2] + ["qikchat_bridge::auth::Credentials::check"] + body[2:]
        self.assertTrue(attribute.part_of("runtime", credential).startswith("Basic auth"))


if __name__ == "__main__":
    unittest.main()
