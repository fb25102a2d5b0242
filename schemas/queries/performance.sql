-- Speed insights: latency percentiles, average, success/error counts and requests per
-- minute for the window [start, end) ("current") and the window before it [prev_start, start)
-- ("previous", of the same length), so the caller can show the change. A window without traffic
-- has no row (the caller shows zeros).
SELECT
    period,
    count()                                                    AS requests,
    countIf(status_code < 400)                                 AS successes,
    countIf(status_code >= 400 AND status_code != 402)         AS errors,
    countIf(status_code = 402)                                 AS payment_required,
    countIf(status_code >= 400 AND status_code != 402) / count() AS error_rate,
    avg(response_ms)                                           AS avg_latency_ms,
    quantileExactInclusive(0.50)(response_ms)                  AS p50_latency_ms,
    quantileExactInclusive(0.75)(response_ms)                  AS p75_latency_ms,
    quantileExactInclusive(0.90)(response_ms)                  AS p90_latency_ms,
    quantileExactInclusive(0.95)(response_ms)                  AS p95_latency_ms,
    quantileExactInclusive(0.99)(response_ms)                  AS p99_latency_ms,
    count() / (dateDiff('millisecond', {start:DateTime64(3, 'UTC')}, {end:DateTime64(3, 'UTC')}) / 60000)
                                                               AS requests_per_minute
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND event_time >= {prev_start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY if(event_time >= {start:DateTime64(3, 'UTC')}, 'current', 'previous') AS period
ORDER BY period
