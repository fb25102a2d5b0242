-- Billing usage: reports and units per (app, {period}, module, model) in [start, end).
-- {period} is 'day', 'week' (starting Monday) or 'month'; {app_id} = '' means every app.
-- Units are the module's own (tokens, characters, seconds, calls: the meters of schemas/prices.toml);
-- rows of different modules are never added up. Amounts are not here: statements price these
-- quantities with the price list as exact decimals (statement_usage.sql, dashboards/billing.py).
--
-- Whole minutes come from the per-minute rollup usage_minute (migration 0002, exact sums); the
-- parts of the first and last minute that the range cuts come from usage_events, so the totals
-- are exact for any range.
WITH
    toStartOfMinute({start:DateTime64(3, 'UTC')}) AS start_minute,
    if(start_minute = {start:DateTime64(3, 'UTC')}, start_minute, start_minute + INTERVAL 1 MINUTE) AS first_full,
    toStartOfMinute({end:DateTime64(3, 'UTC')}) AS end_minute
SELECT
    app_id,
    multiIf({period:String} = 'month', toStartOfMonth(t),
            {period:String} = 'week', toMonday(t),
            toDate(t))                                       AS period_start,
    module,
    model,
    sum(n)                                                   AS reports,
    sum(u)                                                   AS units
FROM
(
    SELECT app_id, toDateTime64(minute, 3, 'UTC') AS t, module, model, reports AS n, units AS u
    FROM usage_minute
    WHERE ({app_id:String} = '' OR app_id = {app_id:String})
      AND minute >= first_full
      AND minute < end_minute
    UNION ALL
    SELECT app_id, event_time AS t, module, model, toUInt64(1) AS n, usage AS u
    FROM usage_events
    WHERE ({app_id:String} = '' OR app_id = {app_id:String})
      AND event_time >= {start:DateTime64(3, 'UTC')}
      AND event_time < {end:DateTime64(3, 'UTC')}
      AND NOT (event_time >= first_full AND event_time < end_minute)
)
GROUP BY app_id, period_start, module, model
ORDER BY app_id, period_start, module, model
