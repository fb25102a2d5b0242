-- Speed insights, hourly trend: per UTC hour of [start, end) with traffic — requests,
-- errors, average and p95 latency.
--
-- Reads raw rows only (exact percentiles and distinct counts are not sums): SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for it, a cost of its own on every call.
SELECT
    toStartOfHour(event_time)                                AS hour,
    count()                                                  AS requests,
    countIf(status_code >= 400 AND status_code != 402)       AS errors,
    avg(response_ms)                                         AS avg_latency_ms,
    quantileExactInclusive(0.95)(response_ms)                AS p95_latency_ms
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY hour
ORDER BY hour
SETTINGS optimize_use_projections = 0
