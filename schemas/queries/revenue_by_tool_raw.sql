-- Revenue by tool: x402 revenue of the agent per tool in [start, end), largest first,
-- equal revenue by tool name. Paid requests that named no tool are grouped under tool_name = ''.
-- Amounts are added as decimals, as in revenue_by_customer.sql, so equal revenue ties exactly.
--
-- The same view as revenue_by_tool.sql, read from raw rows alone: dashboards/queries.py runs this file for a range
-- holding no whole UTC day, where the tiers of the rollups would cost more than they save. SETTINGS keeps
-- the engine from weighing the projections of migration 0003 for it.
SELECT
    tool_name,
    toFloat64(sum(toDecimal256OrZero(toString(x402_amount), 30)) AS exact_amount) AS amount,
    count()                                                  AS paid_requests
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
GROUP BY tool_name
ORDER BY exact_amount DESC, tool_name
SETTINGS optimize_use_projections = 0
