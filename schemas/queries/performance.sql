-- Speed insights: latency percentiles, average, success/error counts and requests per
-- minute for the window [start, end) ("current") and the window before it [prev_start, start)
-- ("previous", of the same length), so the caller can show the change; with revenue, paid requests
-- and distinct customers, it is also the overview of a range. A window without traffic has no row
-- (the caller shows zeros). The filters (customer, tool, protocol, status class; '' = any) narrow both.
--
-- Reads raw rows only (exact percentiles and distinct counts are not sums): SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for it, a cost of its own on every call.
SELECT
    period,
    count()                                                    AS requests,
    countIf(status_code < 400)                                 AS successes,
    countIf(status_code >= 400 AND status_code != 402)         AS errors,
    countIf(status_code = 402)                                 AS payment_required,
    sum(x402_amount)                                           AS revenue,
    countIf(x402_amount > 0)                                   AS paid_requests,
    uniqExactIf(customer_id, customer_id != '')                AS customers,
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
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND event_time >= {prev_start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY if(event_time >= {start:DateTime64(3, 'UTC')}, 'current', 'previous') AS period
ORDER BY period
SETTINGS optimize_use_projections = 0
