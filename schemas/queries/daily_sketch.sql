-- Daily trend over the sketches (migration 0006): the same rows as daily.sql for a range holding at least
-- SKETCH_FROM_ROWS["daily"] of the agent's requests and no filter (dashboards/queries.py picks the file).
-- Requests, revenue, errors and the average are exact; unique customers (uniq) and the p95 (t-digest) are
-- estimates, and each day with traffic says so (estimated = true).
--
-- Whole days from agent_day_sketch, the cut days at the edges from raw rows (their states made here and
-- merged with the days'), like customers.sql and with its WITH block (schemas/queries/README.md). Not the
-- hour tier of the other sketch files: the daily view asks for whole UTC days (TimeRange.last_days), where
-- a third read would only add its planning (~25 ms here); a range cut inside a day reads that day raw.
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
    fromUnixTimestamp64Milli(days_from, 'UTC') AS days_head_raw_end,
    fromUnixTimestamp64Milli(days_to, 'UTC') AS days_tail_raw_start
SELECT
    d                                                                              AS day,
    sum(part_requests)                                                             AS requests,
    sum(part_revenue)                                                              AS revenue,
    sum(part_errors)                                                               AS errors,
    uniqMerge(part_customers)                                                      AS customers,
    ifNotFinite(sum(part_latency_sum) / requests, 0)                               AS avg_latency_ms,
    ifNotFinite(quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(part_quantiles)[4], 0) AS p95_latency_ms,
    true                                                                           AS estimated
FROM
(
    SELECT
        day                                                                    AS d,
        requests                                                               AS part_requests,
        revenue                                                                AS part_revenue,
        errors                                                                 AS part_errors,
        latency_sum                                                            AS part_latency_sum,
        latency_quantiles                                                      AS part_quantiles,
        customers                                                              AS part_customers
    FROM agent_day_sketch
    WHERE agent_id = {agent_id:String}
      AND day >= days_start AND day < days_end
    UNION ALL
    SELECT
        toDate(event_time)                                                     AS d,
        count()                                                                AS part_requests,
        sum(x402_amount)                                                       AS part_revenue,
        countIf(status_code >= 400 AND status_code != 402)                     AS part_errors,
        sum(response_ms)                                                       AS part_latency_sum,
        quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms)         AS part_quantiles,
        uniqStateIf(customer_id, customer_id != '')                            AS part_customers
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND (event_time >= range_start AND event_time < days_head_raw_end
           OR event_time >= days_tail_raw_start AND event_time < range_end)
    GROUP BY d
)
GROUP BY d
ORDER BY day WITH FILL
    FROM toDate({start:DateTime64(3, 'UTC')})
    TO toDate({end:DateTime64(3, 'UTC')} - INTERVAL 1 MILLISECOND) + 1
    STEP 1
SETTINGS optimize_use_projections = 0
