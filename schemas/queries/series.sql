-- Time series: per bucket of {step_s} seconds in [start, end) — requests, errors, 402s, revenue,
-- average, p50 and p95 latency. Buckets are aligned to multiples of the step since 1970-01-01 UTC
-- (a day starts at UTC midnight) and every bucket that overlaps the range is returned, empty ones
-- with zeros, so a chart spans exactly the range asked for. The caller bounds the number of buckets.
-- The filters (customer, tool, protocol, status class; '' = any) narrow the rows.
--
-- Reads raw rows only (exact percentiles and distinct counts are not sums): SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for it, a cost of its own on every call.
WITH
    toInt64({step_s:UInt32}) * 1000 AS step_ms,
    intDiv(toUnixTimestamp64Milli({start:DateTime64(3, 'UTC')}), step_ms) * step_ms AS first_bucket,
    toUnixTimestamp64Milli({end:DateTime64(3, 'UTC')}) AS end_ms
SELECT
    fromUnixTimestamp64Milli(b.bucket, 'UTC')          AS t,
    ifNull(s.requests, 0)                              AS requests,
    ifNull(s.errors, 0)                                AS errors,
    ifNull(s.payment_required, 0)                      AS payment_required,
    ifNull(s.revenue, 0)                               AS revenue,
    ifNull(s.avg_latency_ms, 0)                        AS avg_latency_ms,
    ifNull(s.p50_latency_ms, 0)                        AS p50_latency_ms,
    ifNull(s.p95_latency_ms, 0)                        AS p95_latency_ms,
    false                                              AS estimated
FROM
(
    SELECT arrayJoin(range(first_bucket, end_ms, step_ms)) AS bucket
) AS b
LEFT JOIN
(
    SELECT
        intDiv(toUnixTimestamp64Milli(event_time), step_ms) * step_ms AS bucket,
        count()                                                  AS requests,
        countIf(status_code >= 400 AND status_code != 402)       AS errors,
        countIf(status_code = 402)                               AS payment_required,
        sum(x402_amount)                                         AS revenue,
        avg(response_ms)                                         AS avg_latency_ms,
        quantileExactInclusive(0.50)(response_ms)                AS p50_latency_ms,
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
    GROUP BY bucket
) AS s USING (bucket)
ORDER BY t
SETTINGS join_use_nulls = 1, optimize_use_projections = 0
