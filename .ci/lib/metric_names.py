"""The metric families the bridge exports: what the alert and dashboard checks accept
(chart_check.py), and what .ci/metrics-check.sh compares with a real scrape (exported_metrics.py),
so a metric renamed in the code cannot leave rules silently pointing at nothing."""

# Metric families the bridge exports (without histogram/counter suffixes).
METRICS = {
    "qikchat_bridge_requests_total", "qikchat_bridge_events_total",
    "qikchat_bridge_request_duration_seconds", "qikchat_bridge_slow_responses_total",
    "qikchat_bridge_requests_cancelled_total",
    "qikchat_bridge_kafka_delivery_duration_seconds", "qikchat_bridge_kafka_deliveries_total",
    "qikchat_bridge_auth_failures_total", "qikchat_bridge_requests_in_flight",
    "qikchat_bridge_request_body_bytes", "qikchat_bridge_kafka_queue_messages",
    "qikchat_bridge_kafka_queue_bytes", "qikchat_bridge_kafka_queue_max_messages",
    "qikchat_bridge_kafka_queue_max_bytes", "qikchat_bridge_kafka_broker_up",
    "qikchat_bridge_kafka_broker_rtt_seconds", "qikchat_bridge_kafka_broker_tx_errors_total",
    "qikchat_bridge_kafka_produce_requests_total", "qikchat_bridge_kafka_batch_records",
    "qikchat_bridge_ready", "qikchat_bridge_ack_timeout_seconds",
    "qikchat_bridge_kafka_reachable", "qikchat_bridge_build_info",
    "qikchat_bridge_kafka_producers_replaced_total", "qikchat_bridge_kafka_client_reloads_total",
    "qikchat_bridge_kafka_client_files_stale", "qikchat_bridge_auth_file_stale",
    "qikchat_bridge_log_lines_dropped_total",
    # Durable spool (--spool-dir).
    "qikchat_bridge_spool_records", "qikchat_bridge_spool_bytes", "qikchat_bridge_spool_max_bytes",
    "qikchat_bridge_spool_oldest_age_seconds", "qikchat_bridge_spool_appends_total",
    "qikchat_bridge_spool_replayed_total", "qikchat_bridge_spool_replay_failures_total",
    "qikchat_bridge_spool_deadlettered_total", "qikchat_bridge_spool_unreadable_records",
    "qikchat_bridge_spool_files_set_aside",
}
HISTOGRAMS = {"qikchat_bridge_request_duration_seconds", "qikchat_bridge_kafka_delivery_duration_seconds",
              "qikchat_bridge_request_body_bytes"}
PROCESS_METRICS = {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                   "process_max_fds", "process_virtual_memory_bytes", "process_start_time_seconds",
                   "process_threads"}
