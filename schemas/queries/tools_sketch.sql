-- Tools over the sketches (migration 0006): the same rows as tools.sql for a range holding at least
-- SKETCH_FROM_ROWS of the agent's requests and no filter (dashboards/queries.py picks the file). Requests,
-- error rate, revenue and the average are exact; the p95 is a t-digest estimate (estimated = true).
--
-- Whole days from agent_tool_day_sketch, the whole hours left at either side from agent_tool_hour_sketch, the cut hours at
-- the edges from raw rows (their states made here and merged with the sketches'); the bounds are the WITH
-- block of the tiered files (schemas/queries/README.md), the same text in every one.
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
    tool_name,
    sum(part_requests)                                                             AS requests,
    ifNotFinite(quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(part_quantiles)[4], 0) AS p95_latency_ms,
    ifNotFinite(sum(part_latency_sum) / requests, 0)                               AS avg_latency_ms,
    sum(part_errors) / requests                                                    AS error_rate,
    sum(part_revenue)                                                              AS revenue,
    true                                                                           AS estimated
FROM
(
    SELECT
        tool_name,
        requests                                                               AS part_requests,
        errors                                                                 AS part_errors,
        payment_required                                                       AS part_payment_required,
        revenue                                                                AS part_revenue,
        latency_sum                                                            AS part_latency_sum,
        latency_quantiles                                                      AS part_quantiles
    FROM agent_tool_day_sketch
    WHERE agent_id = {agent_id:String}
      AND tool_name != ''
      AND day >= days_start AND day < days_end
    UNION ALL
    SELECT
        tool_name,
        requests                                                               AS part_requests,
        errors                                                                 AS part_errors,
        payment_required                                                       AS part_payment_required,
        revenue                                                                AS part_revenue,
        latency_sum                                                            AS part_latency_sum,
        latency_quantiles                                                      AS part_quantiles
    FROM agent_tool_hour_sketch
    WHERE agent_id = {agent_id:String}
      AND tool_name != ''
      AND (hour >= hours_head_start AND hour < hours_head_end
           OR hour >= hours_tail_start AND hour < hours_tail_end)
    UNION ALL
    SELECT
        tool_name,
        count()                                                                AS part_requests,
        countIf(status_code >= 400 AND status_code != 402)                     AS part_errors,
        countIf(status_code = 402)                                             AS part_payment_required,
        sum(x402_amount)                                                       AS part_revenue,
        sum(response_ms)                                                       AS part_latency_sum,
        quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms)         AS part_quantiles
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND tool_name != ''
      AND (event_time >= range_start AND event_time < raw_head_end
           OR event_time >= raw_tail_start AND event_time < range_end)
    GROUP BY tool_name
)
GROUP BY tool_name
ORDER BY requests DESC, tool_name
LIMIT {limit:UInt32}
SETTINGS optimize_use_projections = 0
