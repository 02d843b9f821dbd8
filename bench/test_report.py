"""Unit tests of bench/report.py: the decomposition lines and which phases a target may be judged on (run by .ci/bench-smoke.sh)."""
import unittest

import report

FLOOR = {"concurrency": 256, "ok_rate": 270000.0, "cpu_us_per_record": 5.2, "runtime_us": 2.7,
         "librdkafka_us": 2.5, "other_us": 0.0, "broker_us": 0.8}


class FloorLines(unittest.TestCase):
    def test_the_budget_is_what_all_cpus_give_at_the_target_rate_less_the_load_generator(self):
        lines = report.floor_lines(FLOOR, 100000.0, 7.7, 7.2, 2)
        # 2 CPUs at 80000 req/s: 25 us per request, 7.2 of them the load generator's.
        self.assertIn("may spend 17.8 us/req", lines[-1])
        self.assertIn("the Kafka client alone with its broker 6.00 (together 13.7)", lines[-1])
        self.assertIn("5.20 us CPU/record", lines[1])

    def test_without_the_machine_figures_only_the_floor_is_shown(self):
        lines = report.floor_lines(dict(FLOOR, broker_us=None), 100000.0, None, 7.2, 2)
        self.assertEqual(len(lines), 2)
        self.assertNotIn("dev-kafka", lines[1])


class MedianLatency(unittest.TestCase):
    def run_(self, p50, p99, p999):
        return {"latency_ms": {"p50": p50, "p99": p99, "p999": p999}}

    def test_each_percentile_is_the_median_of_its_own_not_of_the_run_with_the_median_p99(self):
        # The reference run's bridge at 10k req/s: the median-p99 run had the worst p99.9.
        runs = [self.run_(0.49, 1.30, 4.883), self.run_(0.482, 1.307, 6.175), self.run_(0.47, 1.35, 5.235)]
        self.assertEqual(report.median_latency(runs), {"p50": 0.482, "p99": 1.307, "p999": 5.235})

    def test_an_even_count_takes_the_lower_middle_value(self):
        runs = [self.run_(4.0, 4.0, 4.0), self.run_(1.0, 1.0, 1.0), self.run_(3.0, 3.0, 3.0), self.run_(2.0, 2.0, 2.0)]
        self.assertEqual(report.median_latency(runs), {"p50": 2.0, "p99": 2.0, "p999": 2.0})

    def test_a_run_without_a_200_counts_as_the_slowest_and_none_stays_none(self):
        runs = [self.run_(None, None, None), self.run_(1.0, 2.0, 3.0), self.run_(5.0, 6.0, 7.0)]
        self.assertEqual(report.median_latency(runs), {"p50": 5.0, "p99": 6.0, "p999": 7.0})
        self.assertEqual(report.median_latency(runs[:1]), {"p50": None, "p99": None, "p999": None})


class Ratio(unittest.TestCase):
    def test_the_ratio_is_the_bridge_over_the_ceiling(self):
        self.assertEqual(report.ratio(100000.0, 80000.0), 0.8)

    def test_a_missing_figure_or_a_zero_ceiling_has_no_ratio(self):
        for c, b in ((None, 1.0), (1.0, None), (0, 1.0)):
            self.assertIsNone(report.ratio(c, b), (c, b))


class TroubleTest(unittest.TestCase):
    def phase(self, **kw):
        r = {"mode": "open", "offered_rate": 5000.0, "rate": 4999.0, "non_200": 0, "errors": 0, "unsent": 0}
        r.update(kw)
        return r

    def test_a_clean_phase_can_be_judged(self):
        self.assertIsNone(report.trouble(self.phase()))
        self.assertIsNone(report.trouble(self.phase(mode="closed", offered_rate=None, rate=1.0)))

    def test_failed_requests_of_any_kind_keep_a_phase_from_being_judged(self):
        for kw in ({"non_200": 3}, {"errors": 1}, {"unsent": 2}):
            self.assertIn("failed", report.trouble(self.phase(**kw)), kw)

    def test_a_fixed_rate_not_kept_keeps_a_phase_from_being_judged(self):
        self.assertIn("4000 of the 5000", report.trouble(self.phase(rate=4000.0)))


if __name__ == "__main__":
    unittest.main()
