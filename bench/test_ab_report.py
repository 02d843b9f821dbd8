"""Unit tests of bench/ab_report.py: the pairing and the median of ratios."""
import unittest

import ab_report


def fig(rate, cpu, p50=1.0, p99=2.0):
    return {"ok_rate": rate, "cpu_us_per_req": cpu, "p50_ms": p50, "p99_ms": p99}


class PairedRatios(unittest.TestCase):
    def test_each_round_is_compared_with_its_own_partner(self):
        # The host slows both sides in round 2; paired, B is 10% faster in every round.
        rounds = [(fig(100, 20), fig(110, 18)), (fig(50, 40), fig(55, 36)), (fig(80, 25), fig(88, 22.5))]
        r = ab_report.paired_ratios(rounds)
        self.assertAlmostEqual(r["ok_rate"], 1.1)
        self.assertAlmostEqual(r["cpu_us_per_req"], 0.9)

    def test_one_disturbed_round_does_not_move_the_median(self):
        rounds = [(fig(100, 20), fig(100, 20))] * 4 + [(fig(100, 20), fig(10, 200))]
        self.assertAlmostEqual(ab_report.paired_ratios(rounds)["ok_rate"], 1.0)

    def test_figures_are_read_from_loadgen_json(self):
        run = {"ok_rate": 5000.0, "cpu_us_per_req": {"bridge": 88.5},
               "latency_ms": {"p50": 0.6, "p99": 1.4, "p999": 4.0}}
        self.assertEqual(ab_report.figures(run), fig(5000.0, 88.5, 0.6, 1.4))


if __name__ == "__main__":
    unittest.main()
