-- Customers: per customer of the agent in [start, end) — first/last seen, requests,
-- revenue, average latency, error rate. Top callers first. Requests without a customer id are
-- not a customer and are left out.
--
-- The same view as customers.sql, read from raw rows alone: dashboards/queries.py runs this file for a range
-- holding no whole UTC day, where the tiers of the rollups would cost more than they save. SETTINGS keeps
-- the engine from weighing the projections of migration 0003 for it.
SELECT
    customer_id,
    min(event_time)                                          AS first_seen,
    max(event_time)                                          AS last_seen,
    count()                                                  AS requests,
    sum(x402_amount)                                         AS revenue,
    avg(response_ms)                                         AS avg_latency_ms,
    countIf(status_code >= 400 AND status_code != 402) / count() AS error_rate
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND customer_id != ''
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY customer_id
ORDER BY requests DESC, customer_id
LIMIT {limit:UInt32}
SETTINGS optimize_use_projections = 0
