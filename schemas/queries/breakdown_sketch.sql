-- Breakdown by tool over the sketches (migration 0006): the same groups as breakdown.sql with {by} = 'tool',
-- for a range (with the period before it) holding at least SKETCH_FROM_ROWS of the agent's requests and no
-- filter (dashboards/queries.py picks the file; any other {by} reads breakdown.sql). Counts, revenue, the
-- error rate and the average are exact; the p95 is a t-digest estimate (estimated = true).
--
-- Each period, [start, end) and the one before it, [prev_start, start), is read in tiers: whole days from
-- agent_tool_day_sketch, the whole hours left at either side from agent_tool_hour_sketch, the cut hours at
-- the edges from raw rows (their states made here and merged with the sketches'). The bounds are the WITH
-- block of the tiered files (schemas/queries/README.md), the same text in every one, followed by the same
-- block again with every name prefixed prev_ for the period before.
-- One pass: each tier is read once for both periods and every row says which period it is in (`current`;
-- the periods do not overlap, so no row is in both); -If combinators keep the periods apart. Two passes
-- and a join (one per period) cost 8 - 10 ms more for the largest agent at 10 M rows (docs/capacity.md).
-- The sketches' rows are read as stored (an hour or day in several parts: several rows) and merged once,
-- by the outer GROUP BY: merging them in the sub-query too would merge every state twice.
WITH
    {start:DateTime64(3, 'UTC')} AS range_start,
    {end:DateTime64(3, 'UTC')} AS range_end,
    -- the range in tiers (schemas/queries/README.md): raw rows for the cut hours at either edge, the
    -- agent_hour projection for whole hours, agent_day for whole days; bounds in ms since 1970, kept
    -- within 1970..2100 where the projections' keys (DateTime, Date) can hold them
    least(greatest(toUnixTimestamp64Milli(range_start), toInt64(0)), toInt64(4102444800000)) AS s_ms,
    least(greatest(toUnixTimestamp64Milli(range_end), toInt64(0)), toInt64(4102444800000)) AS e_ms,
    intDiv(s_ms + 3599999, 3600000) * 3600000 < intDiv(e_ms, 3600000) * 3600000 AS has_hours,
    intDiv(s_ms + 86399999, 86400000) * 86400000 < intDiv(e_ms, 86400000) * 86400000 AS has_days,
    if(has_hours, intDiv(s_ms + 3599999, 3600000) * 3600000, e_ms) AS hours_from,
    if(has_hours, intDiv(e_ms, 3600000) * 3600000, e_ms) AS hours_to,
    if(has_days, intDiv(s_ms + 86399999, 86400000) * 86400000, hours_to) AS days_from,
    if(has_days, intDiv(e_ms, 86400000) * 86400000, hours_to) AS days_to,
    fromUnixTimestamp64Milli(hours_from, 'UTC') AS raw_head_end,
    fromUnixTimestamp64Milli(hours_to, 'UTC') AS raw_tail_start,
    toDateTime(intDiv(hours_from, 1000), 'UTC') AS hours_head_start,
    toDateTime(intDiv(days_from, 1000), 'UTC') AS hours_head_end,
    toDateTime(intDiv(days_to, 1000), 'UTC') AS hours_tail_start,
    toDateTime(intDiv(hours_to, 1000), 'UTC') AS hours_tail_end,
    toDate(toDateTime(intDiv(days_from, 1000), 'UTC')) AS days_start,
    toDate(toDateTime(intDiv(days_to, 1000), 'UTC')) AS days_end,
    {prev_start:DateTime64(3, 'UTC')} AS prev_range_start,
    {start:DateTime64(3, 'UTC')} AS prev_range_end,
    least(greatest(toUnixTimestamp64Milli(prev_range_start), toInt64(0)), toInt64(4102444800000)) AS prev_s_ms,
    least(greatest(toUnixTimestamp64Milli(prev_range_end), toInt64(0)), toInt64(4102444800000)) AS prev_e_ms,
    intDiv(prev_s_ms + 3599999, 3600000) * 3600000 < intDiv(prev_e_ms, 3600000) * 3600000 AS prev_has_hours,
    intDiv(prev_s_ms + 86399999, 86400000) * 86400000 < intDiv(prev_e_ms, 86400000) * 86400000 AS prev_has_days,
    if(prev_has_hours, intDiv(prev_s_ms + 3599999, 3600000) * 3600000, prev_e_ms) AS prev_hours_from,
    if(prev_has_hours, intDiv(prev_e_ms, 3600000) * 3600000, prev_e_ms) AS prev_hours_to,
    if(prev_has_days, intDiv(prev_s_ms + 86399999, 86400000) * 86400000, prev_hours_to) AS prev_days_from,
    if(prev_has_days, intDiv(prev_e_ms, 86400000) * 86400000, prev_hours_to) AS prev_days_to,
    fromUnixTimestamp64Milli(prev_hours_from, 'UTC') AS prev_raw_head_end,
    fromUnixTimestamp64Milli(prev_hours_to, 'UTC') AS prev_raw_tail_start,
    toDateTime(intDiv(prev_hours_from, 1000), 'UTC') AS prev_hours_head_start,
    toDateTime(intDiv(prev_days_from, 1000), 'UTC') AS prev_hours_head_end,
    toDateTime(intDiv(prev_days_to, 1000), 'UTC') AS prev_hours_tail_start,
    toDateTime(intDiv(prev_hours_to, 1000), 'UTC') AS prev_hours_tail_end,
    toDate(toDateTime(intDiv(prev_days_from, 1000), 'UTC')) AS prev_days_start,
    toDate(toDateTime(intDiv(prev_days_to, 1000), 'UTC')) AS prev_days_end
SELECT
    toString(key)                                                                  AS key,
    sumIf(part_requests, current)                                                  AS requests,
    sumIf(part_errors, current)                                                    AS errors,
    sumIf(part_payment_required, current)                                          AS payment_required,
    errors / requests                                                              AS error_rate,
    sumIf(part_revenue, current)                                                   AS revenue,
    ifNotFinite(sumIf(part_latency_sum, current) / requests, 0)                    AS avg_latency_ms,
    ifNotFinite(quantilesTDigestMergeIf(0.5, 0.75, 0.9, 0.95, 0.99)(part_quantiles, current)[4], 0) AS p95_latency_ms,
    sumIf(part_requests, NOT current)                                              AS previous_requests,
    true                                                                           AS estimated
FROM
(
    SELECT
        tool_name                                                              AS key,
        day >= days_start AND day < days_end                                   AS current,
        requests                                                               AS part_requests,
        errors                                                                 AS part_errors,
        payment_required                                                       AS part_payment_required,
        revenue                                                                AS part_revenue,
        latency_sum                                                            AS part_latency_sum,
        latency_quantiles                                                      AS part_quantiles
    FROM agent_tool_day_sketch
    WHERE agent_id = {agent_id:String}
      AND (day >= days_start AND day < days_end OR day >= prev_days_start AND day < prev_days_end)
    UNION ALL
    SELECT
        tool_name                                                              AS key,
        hour >= hours_head_start AND hour < hours_head_end
            OR hour >= hours_tail_start AND hour < hours_tail_end              AS current,
        requests                                                               AS part_requests,
        errors                                                                 AS part_errors,
        payment_required                                                       AS part_payment_required,
        revenue                                                                AS part_revenue,
        latency_sum                                                            AS part_latency_sum,
        latency_quantiles                                                      AS part_quantiles
    FROM agent_tool_hour_sketch
    WHERE agent_id = {agent_id:String}
      AND (hour >= hours_head_start AND hour < hours_head_end
           OR hour >= hours_tail_start AND hour < hours_tail_end
           OR hour >= prev_hours_head_start AND hour < prev_hours_head_end
           OR hour >= prev_hours_tail_start AND hour < prev_hours_tail_end)
    UNION ALL
    SELECT
        tool_name                                                              AS key,
        event_time >= range_start                                              AS current,
        count()                                                                AS part_requests,
        countIf(status_code >= 400 AND status_code != 402)                     AS part_errors,
        countIf(status_code = 402)                                             AS part_payment_required,
        sum(x402_amount)                                                       AS part_revenue,
        sum(response_ms)                                                       AS part_latency_sum,
        quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms)         AS part_quantiles
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND (event_time >= range_start AND event_time < raw_head_end
           OR event_time >= raw_tail_start AND event_time < range_end
           OR event_time >= prev_range_start AND event_time < prev_raw_head_end
           OR event_time >= prev_raw_tail_start AND event_time < prev_range_end)
    GROUP BY key, current
)
GROUP BY key
HAVING requests > 0
ORDER BY requests DESC, key
LIMIT {limit:UInt32}
SETTINGS optimize_use_projections = 0
