"""Tests of chart_check's own rules that a wrong edit to the dashboard or alerts would slip past.
Run by .ci/helm-check.sh: python -m unittest discover -s .ci/lib -p 'test_*.py'."""

import unittest

from chart_check import _strangers_left_out

LEFT_OUT = 'outcome!~"unauthorized|not_found|method_not_allowed"'
REQ = "qikchat_bridge_requests_total"
DUR = "qikchat_bridge_request_duration_seconds_bucket"


def flagged(expr):
    return bool(_strangers_left_out([("test", expr)]))


class StrangersLeftOut(unittest.TestCase):
    def test_ratios_and_percentiles_over_every_answer_are_refused(self):
        for expr in [
            f'sum(rate({REQ}{{status=~"5.."}}[5m])) / sum(rate({REQ}[5m]))',
            f'sum(rate({REQ}{{status=~"5.."}}[5m])) / sum(increase({REQ}[1h]))',
            f'sum by (job) (rate({REQ}{{status=~"5.."}}[5m])) / on (job) sum by (job) (rate({REQ}{{job="a"}}[5m]))',
            f'sum without (instance) (rate({REQ}{{status=~"5.."}}[5m])) / sum without (instance) (irate({REQ}[5m]))',
            f'sum(rate({REQ}{{status=~"5.."}}[5m])) / (sum(rate({REQ}[5m])))',
            f'rate({REQ}{{status=~"5.."}}[5m]) / rate({REQ}[5m])',
            f'sum(rate(qikchat_bridge_slow_responses_total[5m])) / sum(rate(qikchat_bridge_request_duration_seconds_count[5m]))',
            f'histogram_quantile(0.99, sum by (le) (rate({DUR}{{outcome!="body_timeout"}}[5m])))',
            # Statuses or outcomes picked by a pattern that takes the strangers' too.
            f'sum(rate({REQ}{{status=~"5.."}}[5m])) / sum(rate({REQ}{{status=~"2..|4..|5.."}}[5m]))',
            f'sum(rate({REQ}{{status=~"5.."}}[5m])) / sum(rate({REQ}{{status=~".+"}}[5m]))',
            f'histogram_quantile(0.99, sum by (le) (rate({DUR}{{outcome=~".*"}}[5m])))',
            f'sum(rate({REQ}{{status=~"5.."}}[5m])) / sum(rate({REQ}{{job="x", status=~"[245].."}}[5m]))',
            # A per-outcome grouping elsewhere does not excuse a percentile over every outcome.
            f'histogram_quantile(0.99, sum by (le) (rate({DUR}[5m]))) and on () count by (outcome) ({REQ})',
        ]:
            with self.subTest(expr=expr):
                self.assertTrue(flagged(expr))

    def test_ratios_and_percentiles_of_webhooks_pass(self):
        for expr in [
            f'sum(rate({REQ}{{status=~"5.."}}[5m])) / sum(rate({REQ}{{{LEFT_OUT}}}[5m]))',
            f'histogram_quantile(0.99, sum by (le) (rate({DUR}{{outcome!~"body_timeout|unauthorized|not_found|method_not_allowed"}}[5m])))',
            # Two negative matchers together, spaced operators.
            f'histogram_quantile(0.5, sum by (le) (rate({DUR}{{outcome!="body_timeout", outcome !~ "unauthorized|not_found|method_not_allowed"}}[5m])))',
            # Single quotes.
            f"sum(rate({REQ}{{status=~'5..'}}[5m])) / sum(rate({REQ}{{outcome!~'unauthorized|not_found|method_not_allowed'}}[5m]))",
            # Outcomes picked by name.
            f'histogram_quantile(0.9, sum by (le) (rate({DUR}{{outcome=~"accepted|failed|unavailable"}}[5m])))',
            # Per outcome: no mix.
            f'histogram_quantile(0.99, sum by (le, outcome) (rate({DUR}[5m])))',
            # The share of 401s among answers: those it names need not be left out.
            f'sum(rate({REQ}{{outcome="unauthorized"}}[10m])) / sum(rate({REQ}{{outcome!~"not_found|method_not_allowed"}}[10m]))',
            # No ratio, no percentile: traffic.
            f'sum by (status) (rate({REQ}[5m]))',
        ]:
            with self.subTest(expr=expr):
                self.assertEqual(_strangers_left_out([("test", expr)]), [])


if __name__ == "__main__":
    unittest.main()
