-- Daily trend: per UTC day in [start, end) — requests, revenue, errors, unique customers,
-- average and p95 latency. Days without traffic are filled with zeros.
--
-- Reads raw rows only (exact percentiles and distinct counts are not sums): SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for it, a cost of its own on every call.
SELECT
    toDate(event_time)                                       AS day,
    count()                                                  AS requests,
    sum(x402_amount)                                         AS revenue,
    countIf(status_code >= 400 AND status_code != 402)       AS errors,
    uniqExactIf(customer_id, customer_id != '')              AS customers,
    ifNotFinite(avg(response_ms), 0)                         AS avg_latency_ms,
    ifNotFinite(quantileExactInclusive(0.95)(response_ms), 0) AS p95_latency_ms,
    false                                                    AS estimated
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY day
ORDER BY day WITH FILL
    FROM toDate({start:DateTime64(3, 'UTC')})
    TO toDate({end:DateTime64(3, 'UTC')} - INTERVAL 1 MILLISECOND) + 1
    STEP 1
SETTINGS optimize_use_projections = 0
