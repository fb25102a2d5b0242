-- Agents: every agent with traffic in the per-minute rollup agent_minute (migration 0002), or only
-- {agent_id} when {all} = 0 — all-time requests, errors, 402s and revenue, the requests in the minutes
-- since the one holding {since}, and the first and last minute with traffic. Most recently active first.
SELECT
    agent_id,
    n_requests          AS requests,
    n_errors            AS errors,
    n_payment_required  AS payment_required,
    n_revenue           AS revenue,
    n_recent            AS recent_requests,
    first_minute        AS first_seen,
    last_minute         AS last_seen
FROM
(
    SELECT
        agent_id,
        sum(requests)                                                              AS n_requests,
        sum(errors)                                                                AS n_errors,
        sum(payment_required)                                                      AS n_payment_required,
        sum(revenue)                                                               AS n_revenue,
        sumIf(requests, minute >= toStartOfMinute({since:DateTime64(3, 'UTC')}))   AS n_recent,
        min(minute)                                                                AS first_minute,
        max(minute)                                                                AS last_minute
    FROM agent_minute
    WHERE {all:UInt8} = 1 OR agent_id = {agent_id:String}
    GROUP BY agent_id
)
ORDER BY last_seen DESC, agent_id
LIMIT {limit:UInt32}
