-- Overview / stats of one agent (SPEC §6): all-time totals plus today (since UTC midnight),
-- the last 7 days and the last 30 days, relative to {now}.
SELECT
    count()                                                          AS total_requests,
    countIf(event_time >= toStartOfDay({now:DateTime64(3, 'UTC')})) AS today_requests,
    countIf(event_time >= {now:DateTime64(3, 'UTC')} - INTERVAL 7 DAY)  AS week_requests,
    countIf(event_time >= {now:DateTime64(3, 'UTC')} - INTERVAL 30 DAY) AS month_requests,
    sum(x402_amount)                                                 AS revenue,
    countIf(x402_amount > 0)                                         AS paid_requests,
    countIf(status_code = 402)                                       AS payment_required,
    countIf(status_code >= 400 AND status_code != 402)               AS errors,
    ifNotFinite(avg(response_ms), 0)                                 AS avg_latency_ms,
    ifNotFinite(countIf(status_code >= 400 AND status_code != 402) / count(), 0) AS error_rate,
    uniqExactIf(customer_id, customer_id != '')                      AS customers,
    if(count() = 0, NULL, max(event_time))                           AS last_request_at
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
