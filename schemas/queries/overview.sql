-- Overview / stats of one agent: all-time totals plus today (since UTC midnight),
-- the last 7 days and the last 30 days, relative to {now}.
--
-- Reads the per-minute rollup agent_minute (migration 0002: exact sums, sdk_ping excluded), which
-- holds a fraction of the raw rows of a busy agent. A rolling window [now - 7 days, ...) starts
-- inside a minute: the rollup counts the minutes after that one and request_logs the rest of that
-- minute, so the counts are exact. Latency is averaged from the rollup's sum and count.
--
-- The raw rows it reads (the cut minutes, the latest request) are few: SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for them, a cost of its own on every call.
SELECT
    m.requests_sum                                                   AS total_requests,
    m.today                                                      AS today_requests,
    m.week + (
        SELECT count() FROM request_logs
        WHERE agent_id = {agent_id:String} AND source != 'sdk_ping'
          AND event_time >= {now:DateTime64(3, 'UTC')} - INTERVAL 7 DAY
          AND event_time < toStartOfMinute({now:DateTime64(3, 'UTC')} - INTERVAL 7 DAY) + INTERVAL 1 MINUTE
    )                                                            AS week_requests,
    m.month + (
        SELECT count() FROM request_logs
        WHERE agent_id = {agent_id:String} AND source != 'sdk_ping'
          AND event_time >= {now:DateTime64(3, 'UTC')} - INTERVAL 30 DAY
          AND event_time < toStartOfMinute({now:DateTime64(3, 'UTC')} - INTERVAL 30 DAY) + INTERVAL 1 MINUTE
    )                                                            AS month_requests,
    m.revenue_sum                                                AS revenue,
    m.paid_sum                                                   AS paid_requests,
    m.payment_required_sum                                       AS payment_required,
    m.errors_sum                                                 AS errors,
    ifNotFinite(m.latency / m.requests_sum, 0)                       AS avg_latency_ms,
    ifNotFinite(m.errors_sum / m.requests_sum, 0)                    AS error_rate,
    if(m.requests_sum = 0, NULL, (
        SELECT max(event_time) FROM (
            SELECT event_time FROM request_logs
            WHERE agent_id = {agent_id:String} AND source != 'sdk_ping'
            ORDER BY event_time DESC LIMIT 1
        )
    ))                                                           AS last_request_at
FROM
(
    SELECT
        sum(requests)                                                                   AS requests_sum,
        sumIf(requests, minute >= toStartOfDay({now:DateTime64(3, 'UTC')}))            AS today,
        sumIf(requests, minute > toStartOfMinute({now:DateTime64(3, 'UTC')} - INTERVAL 7 DAY))  AS week,
        sumIf(requests, minute > toStartOfMinute({now:DateTime64(3, 'UTC')} - INTERVAL 30 DAY)) AS month,
        sum(revenue)                                                                    AS revenue_sum,
        sum(paid)                                                                       AS paid_sum,
        sum(payment_required)                                                           AS payment_required_sum,
        sum(errors)                                                                     AS errors_sum,
        sum(latency_sum)                                                                AS latency
    FROM agent_minute
    WHERE agent_id = {agent_id:String}
) AS m
SETTINGS optimize_use_projections = 0
