-- Breakdown by tool over the sketches (migration 0006): the same groups as breakdown.sql with {by} = 'tool',
-- for a range (with the period before it) holding at least SKETCH_FROM_ROWS of the agent's requests and no
-- filter (dashboards/queries.py picks the file; any other {by} reads breakdown.sql). Counts, revenue, the
-- error rate and the average are exact; the p95 is a t-digest estimate (estimated = true).
--
-- Whole days from agent_tool_day_sketch, the whole hours left at either side from agent_tool_hour_sketch, the cut hours at
-- the edges from raw rows (their states made here and merged with the sketches'); the bounds are the WITH
-- block of the tiered files (schemas/queries/README.md), the same text in every one.
-- The period before, [prev_start, start), is read the same way in a sub-query of its own, whose WITH block
-- is the same text with the period's bounds.
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
    toDate(toDateTime(intDiv(days_to, 1000), 'UTC')) AS days_end
SELECT
    toString(c.key)                                                                AS key,
    c.requests                                                                     AS requests,
    c.errors                                                                       AS errors,
    c.payment_required                                                             AS payment_required,
    errors / requests                                                              AS error_rate,
    c.revenue                                                                      AS revenue,
    c.avg_latency_ms                                                               AS avg_latency_ms,
    c.p95_latency_ms                                                               AS p95_latency_ms,
    p.previous_requests                                                            AS previous_requests,
    true                                                                           AS estimated
FROM
(
    SELECT
        key,
        sum(part_requests)                                                     AS requests,
        sum(part_errors)                                                       AS errors,
        sum(part_payment_required)                                             AS payment_required,
        sum(part_revenue)                                                      AS revenue,
        ifNotFinite(sum(part_latency_sum) / requests, 0)                       AS avg_latency_ms,
        ifNotFinite(quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(part_quantiles)[4], 0) AS p95_latency_ms
    FROM
    (
    SELECT
        tool_name                                                              AS key,
        requests                                                               AS part_requests,
        errors                                                                 AS part_errors,
        payment_required                                                       AS part_payment_required,
        revenue                                                                AS part_revenue,
        latency_sum                                                            AS part_latency_sum,
        latency_quantiles                                                      AS part_quantiles
    FROM agent_tool_day_sketch
    WHERE agent_id = {agent_id:String}
      AND day >= days_start AND day < days_end
    UNION ALL
    SELECT
        tool_name                                                              AS key,
        requests                                                               AS part_requests,
        errors                                                                 AS part_errors,
        payment_required                                                       AS part_payment_required,
        revenue                                                                AS part_revenue,
        latency_sum                                                            AS part_latency_sum,
        latency_quantiles                                                      AS part_quantiles
    FROM agent_tool_hour_sketch
    WHERE agent_id = {agent_id:String}
      AND (hour >= hours_head_start AND hour < hours_head_end
           OR hour >= hours_tail_start AND hour < hours_tail_end)
    UNION ALL
    SELECT
        tool_name                                                              AS key,
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
           OR event_time >= raw_tail_start AND event_time < range_end)
    GROUP BY key
    )
    GROUP BY key
    HAVING requests > 0
) AS c
LEFT JOIN
(
WITH
    {prev_start:DateTime64(3, 'UTC')} AS range_start,
    {start:DateTime64(3, 'UTC')} AS range_end,
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
    toDate(toDateTime(intDiv(days_to, 1000), 'UTC')) AS days_end
    SELECT tool_name AS key, sum(requests) AS previous_requests
    FROM
    (
    SELECT
        tool_name, requests
    FROM agent_tool_day_sketch
    WHERE agent_id = {agent_id:String}
      AND day >= days_start AND day < days_end
    UNION ALL
    SELECT
        tool_name, requests
    FROM agent_tool_hour_sketch
    WHERE agent_id = {agent_id:String}
      AND (hour >= hours_head_start AND hour < hours_head_end
           OR hour >= hours_tail_start AND hour < hours_tail_end)
    UNION ALL
    SELECT
        tool_name, count() AS requests
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND (event_time >= range_start AND event_time < raw_head_end
           OR event_time >= raw_tail_start AND event_time < range_end)
    GROUP BY tool_name
    )
    GROUP BY tool_name
) AS p ON c.key = p.key
ORDER BY requests DESC, key
LIMIT {limit:UInt32}
SETTINGS optimize_use_projections = 0
