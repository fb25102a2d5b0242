-- Time series over the hour sketches (migration 0006): the same points as series.sql for a range holding
-- at least SKETCH_FROM_ROWS of the agent's requests, a step of whole hours and no filter
-- (dashboards/queries.py picks the file). Requests, errors, 402s, revenue and the average are exact; the
-- p50 and p95 are t-digest estimates, and each point with traffic says so (estimated = true).
--
-- A bucket of whole hours (aligned to its step since 1970) holds whole hours of the sketch: those inside
-- the range come from agent_hour_sketch, the cut hours at either edge from raw rows; bounds as in
-- daily_sketch.sql.
-- The sketches' rows are read as stored (an hour or day in several parts: several rows) and merged once,
-- by the outer GROUP BY: merging them in the sub-query too would merge every state twice.
WITH
    toInt64({step_s:UInt32}) * 1000 AS step_ms,
    intDiv(toUnixTimestamp64Milli({start:DateTime64(3, 'UTC')}), step_ms) * step_ms AS first_bucket,
    toUnixTimestamp64Milli({end:DateTime64(3, 'UTC')}) AS end_ms,
    {start:DateTime64(3, 'UTC')} AS range_start,
    {end:DateTime64(3, 'UTC')} AS range_end,
    least(greatest(toUnixTimestamp64Milli(range_start), toInt64(0)), toInt64(4102444800000)) AS s_ms,
    least(greatest(toUnixTimestamp64Milli(range_end), toInt64(0)), toInt64(4102444800000)) AS e_ms,
    intDiv(s_ms + 3599999, 3600000) * 3600000 < intDiv(e_ms, 3600000) * 3600000 AS has_hours,
    if(has_hours, intDiv(s_ms + 3599999, 3600000) * 3600000, e_ms) AS hours_from,
    if(has_hours, intDiv(e_ms, 3600000) * 3600000, e_ms) AS hours_to,
    fromUnixTimestamp64Milli(hours_from, 'UTC') AS raw_head_end,
    fromUnixTimestamp64Milli(hours_to, 'UTC') AS raw_tail_start,
    toDateTime(intDiv(hours_from, 1000), 'UTC') AS sketch_start,
    toDateTime(intDiv(hours_to, 1000), 'UTC') AS sketch_end
SELECT
    fromUnixTimestamp64Milli(b.bucket, 'UTC')          AS t,
    ifNull(s.requests, 0)                              AS requests,
    ifNull(s.errors, 0)                                AS errors,
    ifNull(s.payment_required, 0)                      AS payment_required,
    ifNull(s.revenue, 0)                               AS revenue,
    ifNull(s.avg_latency_ms, 0)                        AS avg_latency_ms,
    ifNull(s.p50_latency_ms, 0)                        AS p50_latency_ms,
    ifNull(s.p95_latency_ms, 0)                        AS p95_latency_ms,
    toBool(isNotNull(s.requests))                      AS estimated
FROM
(
    SELECT arrayJoin(range(first_bucket, end_ms, step_ms)) AS bucket
) AS b
LEFT JOIN
(
    SELECT
        bucket,
        sum(part_requests)                                                     AS requests,
        sum(part_errors)                                                       AS errors,
        sum(part_payment_required)                                             AS payment_required,
        sum(part_revenue)                                                      AS revenue,
        ifNotFinite(sum(part_latency_sum) / requests, 0)                       AS avg_latency_ms,
        quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(part_quantiles)      AS levels,
        ifNotFinite(levels[1], 0)                                              AS p50_latency_ms,
        ifNotFinite(levels[4], 0)                                              AS p95_latency_ms
    FROM
    (
        SELECT
            intDiv(toInt64(toUnixTimestamp(hour)) * 1000, step_ms) * step_ms       AS bucket,
            requests                                                           AS part_requests,
            errors                                                             AS part_errors,
            payment_required                                                   AS part_payment_required,
            revenue                                                            AS part_revenue,
            latency_sum                                                        AS part_latency_sum,
            latency_quantiles                                                  AS part_quantiles
        FROM agent_hour_sketch
        WHERE agent_id = {agent_id:String}
          AND hour >= sketch_start AND hour < sketch_end
        UNION ALL
        SELECT
            intDiv(toUnixTimestamp64Milli(event_time), step_ms) * step_ms      AS bucket,
            count()                                                            AS part_requests,
            countIf(status_code >= 400 AND status_code != 402)                 AS part_errors,
            countIf(status_code = 402)                                         AS part_payment_required,
            sum(x402_amount)                                                   AS part_revenue,
            sum(response_ms)                                                   AS part_latency_sum,
            quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms)     AS part_quantiles
        FROM request_logs
        WHERE agent_id = {agent_id:String}
          AND source != 'sdk_ping'
          AND (event_time >= range_start AND event_time < raw_head_end
               OR event_time >= raw_tail_start AND event_time < range_end)
        GROUP BY bucket
    )
    GROUP BY bucket
) AS s USING (bucket)
ORDER BY t
SETTINGS join_use_nulls = 1, optimize_use_projections = 0
