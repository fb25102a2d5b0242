-- Speed insights, latency distribution: requests of the agent in [start, end) per
-- latency bucket. Bucket i holds lower_ms <= response_ms < upper_ms; the last bucket has no upper
-- bound (upper_ms = 0). Every bucket is returned, empty ones with 0.
--
-- Counts in tiers (README): whole days from the agent_day projection, whole hours from agent_hour,
-- the cut hours at the edges from raw rows. Each tier counts the requests at or above every bound
-- (the projections keep exactly these counts); a bucket is the difference of two neighbours.
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
    [0., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000.] AS bounds
SELECT
    toUInt32(b)                                                   AS bucket,
    bounds[b]                                                     AS lower_ms,
    if(b < length(bounds), bounds[b + 1], 0.)                     AS upper_ms,
    toUInt64(at_least[b] - if(b < length(bounds), at_least[b + 1], 0)) AS requests
FROM
(
    SELECT [sum(n), sum(n10), sum(n25), sum(n50), sum(n100), sum(n250), sum(n500), sum(n1000), sum(n2500),
            sum(n5000), sum(n10000)] AS at_least
    FROM
    (
    SELECT
        count()                        AS n,
        countIf(response_ms >= 10.)    AS n10,
        countIf(response_ms >= 25.)    AS n25,
        countIf(response_ms >= 50.)    AS n50,
        countIf(response_ms >= 100.)   AS n100,
        countIf(response_ms >= 250.)   AS n250,
        countIf(response_ms >= 500.)   AS n500,
        countIf(response_ms >= 1000.)  AS n1000,
        countIf(response_ms >= 2500.)  AS n2500,
        countIf(response_ms >= 5000.)  AS n5000,
        countIf(response_ms >= 10000.) AS n10000
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND ({tool:String} = '' OR tool_name = {tool:String})
      AND ({protocol:String} = '' OR protocol = {protocol:String})
      AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
      AND toDate(event_time) >= days_start AND toDate(event_time) < days_end
    UNION ALL
    SELECT
        count()                        AS n,
        countIf(response_ms >= 10.)    AS n10,
        countIf(response_ms >= 25.)    AS n25,
        countIf(response_ms >= 50.)    AS n50,
        countIf(response_ms >= 100.)   AS n100,
        countIf(response_ms >= 250.)   AS n250,
        countIf(response_ms >= 500.)   AS n500,
        countIf(response_ms >= 1000.)  AS n1000,
        countIf(response_ms >= 2500.)  AS n2500,
        countIf(response_ms >= 5000.)  AS n5000,
        countIf(response_ms >= 10000.) AS n10000
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND ({tool:String} = '' OR tool_name = {tool:String})
      AND ({protocol:String} = '' OR protocol = {protocol:String})
      AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
      AND (toStartOfHour(event_time) >= hours_head_start AND toStartOfHour(event_time) < hours_head_end
           OR toStartOfHour(event_time) >= hours_tail_start AND toStartOfHour(event_time) < hours_tail_end)
    UNION ALL
    SELECT
        count()                        AS n,
        countIf(response_ms >= 10.)    AS n10,
        countIf(response_ms >= 25.)    AS n25,
        countIf(response_ms >= 50.)    AS n50,
        countIf(response_ms >= 100.)   AS n100,
        countIf(response_ms >= 250.)   AS n250,
        countIf(response_ms >= 500.)   AS n500,
        countIf(response_ms >= 1000.)  AS n1000,
        countIf(response_ms >= 2500.)  AS n2500,
        countIf(response_ms >= 5000.)  AS n5000,
        countIf(response_ms >= 10000.) AS n10000
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND ({tool:String} = '' OR tool_name = {tool:String})
      AND ({protocol:String} = '' OR protocol = {protocol:String})
      AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
      AND (event_time >= range_start AND event_time < raw_head_end
           OR event_time >= raw_tail_start AND event_time < range_end)
    )
)
ARRAY JOIN arrayEnumerate(at_least) AS b
ORDER BY bucket
