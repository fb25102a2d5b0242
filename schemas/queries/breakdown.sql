-- Breakdown: the agent's traffic in [start, end) grouped by one dimension — {by} is 'customer'
-- (customer_id), 'tool' (tool_name), 'protocol', or 'status' (the status class: 1xx, 2xx, 3xx, 4xx
-- other than 402, 5xx, and 402 on its own) — with requests, errors, 402s, error rate, revenue,
-- average and p95 latency, and the group's requests in the period before, [prev_start, start), for
-- the change. Groups with traffic in the range only; busiest first, then by key. An empty key is a
-- request without a customer or tool. The filters (customer, tool, protocol, status class; '' = any)
-- narrow the rows first.
--
-- Reads raw rows only (exact percentiles and distinct counts are not sums): SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for it, a cost of its own on every call.
SELECT
    multiIf({by:String} = 'customer', customer_id,
            {by:String} = 'tool', toString(tool_name),
            {by:String} = 'protocol', toString(protocol),
            multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx'))) AS key,
    countIf(event_time >= {start:DateTime64(3, 'UTC')})                                         AS requests,
    countIf(event_time >= {start:DateTime64(3, 'UTC')} AND status_code >= 400 AND status_code != 402) AS errors,
    countIf(event_time >= {start:DateTime64(3, 'UTC')} AND status_code = 402)                   AS payment_required,
    errors / requests                                                                           AS error_rate,
    sumIf(x402_amount, event_time >= {start:DateTime64(3, 'UTC')})                              AS revenue,
    avgIf(response_ms, event_time >= {start:DateTime64(3, 'UTC')})                              AS avg_latency_ms,
    quantileExactInclusiveIf(0.95)(response_ms, event_time >= {start:DateTime64(3, 'UTC')})     AS p95_latency_ms,
    countIf(event_time < {start:DateTime64(3, 'UTC')})                                          AS previous_requests,
    false                                                                                       AS estimated
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND event_time >= {prev_start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY key
HAVING requests > 0
ORDER BY requests DESC, key
LIMIT {limit:UInt32}
SETTINGS optimize_use_projections = 0
