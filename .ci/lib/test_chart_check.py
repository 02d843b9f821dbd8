"""Tests of chart_check's own rules that a wrong edit to the dashboard or alerts would slip past.
Run by .ci/helm-check.sh: python -m unittest discover -s .ci/lib -p 'test_*.py'."""

import unittest

from chart_check import _strangers_left_out, has_url_password

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


class UrlPasswords(unittest.TestCase):
    """The safety net over every rendered argument and plain env value reads URL passwords as the
    bridge and the templates do: its first pattern missed one holding `/`, `?`, `#` or a blank."""

    def test_passwords_the_bridge_hides_are_found(self):
        for value in [
            "https://c:s3cr3tPw@idp.example/token",
            "https://c:s3cr3t/Pw@idp.example/token",
            "https://c:s3cr3t?Pw@idp.example/token",
            "https://c:s3cr3t#Pw@idp.example/token",
            "https://c:s3 cr3t@idp.example/token",
            "sasl.oauthbearer.token.endpoint.url=https://c:pw@idp/token",
            "a:1,sasl_ssl://u:Zq7Wm3@h:1",
        ]:
            with self.subTest(value=value):
                self.assertTrue(has_url_password(value))

    def test_values_without_a_password_pass(self):
        for value in [
            "https://idp.example/token",
            "https://ops@idp.example/token",
            "https://idp.example:8443/token?login_hint=ops@example.com",
            "https://idp.example:8443/token?a=1&login_hint=ops@example.com",
            "https://a:1, ssl://u@h:1",
            "kafka-0:9092,kafka-1:9092",
        ]:
            with self.subTest(value=value):
                self.assertFalse(has_url_password(value))


if __name__ == "__main__":
    unittest.main()
