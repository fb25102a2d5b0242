-- Agents: every agent with traffic, or only {agent_id} when {all} = 0 — all-time requests, errors, 402s and
-- revenue, the requests in the minutes since the one holding {since}, and the first and last minute with
-- traffic. Most recently active first.
--
-- Totals and first and last minute from the day sketch (migration 0006: a row per agent and UTC day, fed
-- from the minute rollup agent_minute of 0002, so the same exact sums); the recent requests from the
-- hour sketch's hours after the one holding {since} and the minute rollup's minutes of that hour. A year
-- of an agent is 365 rows here, where agent_minute holds 525,600 (the list read every one of them).
WITH
    toStartOfMinute({since:DateTime64(3, 'UTC')}) AS since_minute,
    toStartOfHour(since_minute) AS since_hour
SELECT
    d.agent_id                  AS agent_id,
    d.n_requests                AS requests,
    d.n_errors                  AS errors,
    d.n_payment_required        AS payment_required,
    d.n_revenue                 AS revenue,
    r.n_recent                  AS recent_requests,
    d.first_minute              AS first_seen,
    d.last_minute               AS last_seen
FROM
(
    SELECT
        agent_id,
        sum(requests)           AS n_requests,
        sum(errors)             AS n_errors,
        sum(payment_required)   AS n_payment_required,
        sum(revenue)            AS n_revenue,
        min(first_minute)       AS first_minute,
        max(last_minute)        AS last_minute
    FROM agent_day_sketch
    WHERE {all:UInt8} = 1 OR agent_id = {agent_id:String}
    GROUP BY agent_id
) AS d
LEFT JOIN
(
    SELECT agent_id, sum(requests) AS n_recent
    FROM
    (
        SELECT agent_id, requests
        FROM agent_hour_sketch
        WHERE ({all:UInt8} = 1 OR agent_id = {agent_id:String}) AND hour > since_hour
        UNION ALL
        SELECT agent_id, requests
        FROM agent_minute
        WHERE ({all:UInt8} = 1 OR agent_id = {agent_id:String})
          AND minute >= since_minute AND minute < since_hour + INTERVAL 1 HOUR
    )
    GROUP BY agent_id
) AS r ON d.agent_id = r.agent_id
ORDER BY last_seen DESC, agent_id
LIMIT {limit:UInt32}
