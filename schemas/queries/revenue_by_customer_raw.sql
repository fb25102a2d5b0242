-- Revenue per customer: x402 revenue of the agent per paying customer in [start, end),
-- largest first, equal revenue by customer id. Payments without a customer id are grouped under
-- customer_id = ''.
--
-- Amounts are added as decimals of the values the clients sent (the shortest text of each stored
-- Float64), not as floats: 3 x 0.1 and 1 x 0.3 are the same revenue and tie, whatever order the
-- engine adds the rows in (as floats they differ in the last bit, in an order-dependent way).
--
-- The same view as revenue_by_customer.sql, read from raw rows alone: dashboards/queries.py runs this file for a range
-- holding no whole UTC day, where the tiers of the rollups would cost more than they save. SETTINGS keeps
-- the engine from weighing the projections of migration 0003 for it.
SELECT
    customer_id,
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
GROUP BY customer_id
ORDER BY exact_amount DESC, customer_id
LIMIT {limit:UInt32}
SETTINGS optimize_use_projections = 0
