-- Revenue, the whole view in one pass over raw rows: revenue_all.sql for a range holding no whole UTC day or
-- few requests (dashboards/queries.py), where the tiers cost more than they save; what revenue_raw.sql,
-- revenue_by_tool_raw.sql and revenue_by_customer_raw.sql answer apart. One row per
--   part = 'period'    day/week/month ({period}) with revenue, by period_start;
--   part = 'tool'      tool with revenue, by amount (highest first), then tool_name;
--   part = 'customer'  paying customer, by amount, then customer_id; the first {limit} only.
-- Every amount is the exact decimal sum, as Float64; paid_requests counts the requests with x402_amount > 0.
-- The columns a part does not group by hold their defaults, so LIMIT BY (part, period_start, tool_name) meets
-- the same key only in the customer rows.
--
-- Three queries cost about twice this one: each reads the same rows and pays the engine's floor per query
-- (docs/capacity.md). SETTINGS keeps the engine from weighing the projections of migration 0003.
SELECT
    multiIf(grouping(tool_name) = 0, 'tool', grouping(customer_id) = 0, 'customer', 'period') AS part,
    multiIf({period:String} = 'month', toStartOfMonth(event_time),
            {period:String} = 'week', toMonday(event_time),
            toDate(event_time))                              AS period_start,
    tool_name,
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
GROUP BY GROUPING SETS ((period_start), (tool_name), (customer_id))
ORDER BY part, period_start, exact_amount DESC, tool_name, customer_id
LIMIT {limit:UInt32} BY part, period_start, tool_name
SETTINGS optimize_use_projections = 0
