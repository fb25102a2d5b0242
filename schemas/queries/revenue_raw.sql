-- Revenue: x402 revenue of the agent per {period} ('day', 'week' starting Monday, or
-- 'month') in [start, end) — amount and number of paid requests (x402_amount > 0). Periods
-- without revenue are left out.
--
-- The same view as revenue.sql, read from raw rows alone: dashboards/queries.py runs this file for a range
-- holding no whole UTC day, where the tiers of the rollups would cost more than they save. SETTINGS keeps
-- the engine from weighing the projections of migration 0003 for it.
SELECT
    multiIf({period:String} = 'month', toStartOfMonth(event_time),
            {period:String} = 'week', toMonday(event_time),
            toDate(event_time))                              AS period_start,
    sum(x402_amount)                                         AS amount,
    countIf(x402_amount > 0)                                 AS paid_requests
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND x402_amount > 0
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY period_start
ORDER BY period_start
SETTINGS optimize_use_projections = 0
