-- Revenue per customer: x402 revenue of the agent per paying customer in [start, end),
-- largest first, equal revenue by customer id. Payments without a customer id are grouped under
-- customer_id = ''.
--
-- Amounts are added as decimals of the values the clients sent (the shortest text of each stored
-- Float64), not as floats: 3 x 0.1 and 1 x 0.3 are the same revenue and tie, whatever order the
-- engine adds the rows in (as floats they differ in the last bit, in an order-dependent way).
--
-- Sums in tiers (README): whole days from agent_customer_day (migration 0007: one merged row per customer
-- and day, with the exact decimal sum), or from agent_tool_customer_day for a tool filter; the cut days at
-- the edges from raw rows. A protocol or status filter is a key of neither: the whole range is then read
-- from raw rows.
WITH
    {start:DateTime64(3, 'UTC')} AS range_start,
    {end:DateTime64(3, 'UTC')} AS range_end,
    -- the range in tiers (schemas/queries/README.md): raw rows for the cut hours at either edge, the
    -- agent_hour projection for whole hours, agent_day for whole days; bounds in ms since 1970, kept
    -- within 1970..2100 where the projections' keys (DateTime, Date) can hold them
    least(greatest(toUnixTimestamp64Milli(range_start), toInt64(0)), toInt64(4102444800000)) AS s_ms,
    least(greatest(toUnixTimestamp64Milli(range_end), toInt64(0)), toInt64(4102444800000)) AS e_ms,
    intDiv(s_ms + 3599999, 3600000) * 3600000 < intDiv(e_ms, 3600000) * 3600000 AS has_hours,
    intDiv(s_ms + 86399999, 86400000) * 86400000 < intDiv(e_ms, 86400000) * 86400000 AS has_days,
    if(has_hours, intDiv(s_ms + 3599999, 3600000) * 3600000, e_ms) AS hours_from,
    if(has_hours, intDiv(e_ms, 3600000) * 3600000, e_ms) AS hours_to,
    if(has_days, intDiv(s_ms + 86399999, 86400000) * 86400000, hours_to) AS days_from,
    if(has_days, intDiv(e_ms, 86400000) * 86400000, hours_to) AS days_to,
    fromUnixTimestamp64Milli(hours_from, 'UTC') AS raw_head_end,
    fromUnixTimestamp64Milli(hours_to, 'UTC') AS raw_tail_start,
    toDateTime(intDiv(hours_from, 1000), 'UTC') AS hours_head_start,
    toDateTime(intDiv(days_from, 1000), 'UTC') AS hours_head_end,
    toDateTime(intDiv(days_to, 1000), 'UTC') AS hours_tail_start,
    toDateTime(intDiv(hours_to, 1000), 'UTC') AS hours_tail_end,
    toDate(toDateTime(intDiv(days_from, 1000), 'UTC')) AS days_start,
    toDate(toDateTime(intDiv(days_to, 1000), 'UTC')) AS days_end,
    fromUnixTimestamp64Milli(days_from, 'UTC') AS days_head_raw_end,
    fromUnixTimestamp64Milli(days_to, 'UTC') AS days_tail_raw_start,
    -- which table answers the whole days: the filters name keys of the customer days, of the tool's, or neither
    multiIf({protocol:String} != '' OR {status:String} != '', 'raw', {tool:String} != '', 'tool', 'customer')
        AS whole_days_from
SELECT
    customer_id,
    toFloat64(sum(exact) AS exact_amount)                    AS amount,
    sum(paid)                                                AS paid_requests
FROM
(
    SELECT
        customer_id,
        sum(revenue_exact) AS exact,
        sum(paid)          AS paid
    FROM agent_customer_day
    WHERE whole_days_from = 'customer'
      AND agent_id = {agent_id:String}
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND day >= days_start AND day < days_end
    GROUP BY customer_id
    UNION ALL
    SELECT
        customer_id,
        sum(revenue_exact) AS exact,
        sum(paid)          AS paid
    FROM agent_tool_customer_day
    WHERE whole_days_from = 'tool'
      AND agent_id = {agent_id:String}
      AND tool_name = {tool:String}
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND day >= days_start AND day < days_end
    GROUP BY customer_id
    UNION ALL
    SELECT
        customer_id,
        sum(toDecimal256OrZero(toString(x402_amount), 30)) AS exact,
        countIf(x402_amount > 0)                           AS paid
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND ({tool:String} = '' OR tool_name = {tool:String})
      AND ({protocol:String} = '' OR protocol = {protocol:String})
      AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
      AND event_time >= range_start AND event_time < range_end
      AND (whole_days_from = 'raw' OR event_time < days_head_raw_end OR event_time >= days_tail_raw_start)
    GROUP BY customer_id
)
GROUP BY customer_id
HAVING paid_requests > 0
ORDER BY exact_amount DESC, customer_id
LIMIT {limit:UInt32}
