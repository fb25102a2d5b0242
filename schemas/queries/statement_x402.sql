-- Statement x402 revenue: paid requests and amount per (agent, customer, segment, token) in [start, end),
-- counting only rows stored before {as_of}. {agent_id} = '' means every agent; {one_customer} = 1 keeps
-- only the customer {customer}. Segments as in statement_usage.sql.
--
-- The amount is in the payment's token (x402_token, e.g. USDC-base-mainnet), never in the price list's
-- currency. It is summed as Decimal(38, 12) from the text of each stored amount (the shortest text that
-- reads back as the stored number: the amount as the client wrote it), so the sum is exact.
--
-- Reads raw rows only (exact percentiles and distinct counts are not sums): SETTINGS keeps the engine from
-- weighing the hour and day projections of migration 0003 for it, a cost of its own on every call.
SELECT
    agent_id                                                                 AS app_id,
    customer_id,
    arrayCount(c -> c <= toUnixTimestamp64Milli(event_time), {cuts:Array(Int64)}) AS segment,
    x402_token                                                               AS token,
    count()                                                                  AS paid_requests,
    toString(sum(toDecimal128(toString(x402_amount), 12)))                   AS amount
FROM request_logs
WHERE ({agent_id:String} = '' OR agent_id = {agent_id:String})
  AND source != 'sdk_ping'
  AND x402_amount > 0
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
  AND stored_at < {as_of:DateTime64(3, 'UTC')}
  AND ({one_customer:UInt8} = 0 OR customer_id = {customer:String})
GROUP BY app_id, customer_id, segment, token
ORDER BY app_id, customer_id, segment, token
SETTINGS optimize_use_projections = 0
