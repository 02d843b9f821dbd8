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
