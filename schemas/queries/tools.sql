-- Tools: per tool of the agent in [start, end) — requests, p95 latency, error rate,
-- revenue. Busiest first. Requests that named no tool are left out.
--
-- Reads raw rows only (exact percentiles and distinct counts are not sums): SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for it, a cost of its own on every call.
SELECT
    tool_name,
    count()                                                  AS requests,
    quantileExactInclusive(0.95)(response_ms)                AS p95_latency_ms,
    avg(response_ms)                                         AS avg_latency_ms,
    countIf(status_code >= 400 AND status_code != 402) / count() AS error_rate,
    sum(x402_amount)                                         AS revenue,
    false                                                    AS estimated
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND tool_name != ''
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY tool_name
ORDER BY requests DESC, tool_name
LIMIT {limit:UInt32}
SETTINGS optimize_use_projections = 0
