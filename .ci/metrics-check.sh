#!/usr/bin/env bash
# Starts the bridge in embedded mode with a spool, posts a message, a status, a bad-auth request
# and a malformed body, then lints the scraped /metrics with `promtool check metrics` (any finding
# fails) and compares its families with .ci/lib/metric_names.py (the names the alert and dashboard
# checks accept) and the README's metrics table.
set -euo pipefail
bin=${1:-target/debug/qikchat-bridge}
work=$(mktemp -d)
source .ci/lib/ports.sh
# Statistics every 200 ms, so the families fed by librdkafka's statistics are there to compare.
# RUST_LOG pinned: the start-up line that names the ports is at info.
RUST_LOG=info "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json \
  --spool-dir "$work/spool" -X statistics.interval.ms=200 >"$work/log" 2>&1 &
pid=$!
# On any failure the bridge's own log says why (it is deleted with the rest).
trap 'rc=$?; kill $pid 2>/dev/null || true; if [ $rc -ne 0 ]; then echo "bridge log:"; sed "s/^/  /" "$work/log"; fi; rm -rf "$work"' EXIT
ports=$(bridge_ports "$work/log" $pid) || { echo "the bridge did not start serving within 30 s" >&2; exit 1; }
read -r port admin <<<"$ports"
ready=""
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && { ready=1; break; }
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { echo "the bridge did not become ready within 10 s" >&2; exit 1; }
post() { curl -s -o /dev/null -w '%{http_code}' "$@" -H 'content-type: application/json' "http://127.0.0.1:$port/webhook"; }
fixtures=tests/fixtures
[ "$(post -u testuser:testpass --data-binary @$fixtures/message-in-text.json)" = 200 ]
[ "$(post -u testuser:testpass --data-binary @$fixtures/status-read.json)" = 200 ]
[ "$(post -u testuser:wrong --data-binary @$fixtures/status-read.json)" = 401 ]
[ "$(post -u testuser:testpass --data-binary '{not json')" = 400 ]
for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$admin/metrics" >"$work/metrics"
  grep -q '^qikchat_bridge_kafka_batch_records' "$work/metrics" && break
  sleep 0.1
done
grep -qxF 'qikchat_bridge_requests_total{outcome="accepted",status="200"} 2' "$work/metrics"
promtool check metrics <"$work/metrics"
python3 .ci/lib/exported_metrics.py "$work/metrics" README.md
kill -TERM $pid
wait $pid
echo "metrics lint clean; bridge exited 0 on SIGTERM"
