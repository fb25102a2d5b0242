-- Revenue, the whole view in one query: what revenue.sql, revenue_by_tool.sql and revenue_by_customer.sql
-- answer apart, with their tiers (README): whole days from the agent_day projection (periods, tools) and
-- the customer-day tables of migration 0007 (customers), whole hours from agent_hour, the cut hours (cut
-- days, for customers) from raw rows. One row per
--   part = 'period'    day/week/month ({period}) with revenue, by period_start;
--   part = 'tool'      tool with revenue, by amount (highest first), then tool_name;
--   part = 'customer'  paying customer, by amount, then customer_id; the first {limit} only.
-- The periods and the tools are one pass over the agent tiers, grouped by (day, tool) and then by
-- GROUPING SETS; the customers are the second branch of a UNION ALL. A period's amount is the sum of its
-- Float64 amounts, as revenue.sql's; a tool's or a customer's the exact decimal sum, as Float64, as
-- revenue_by_tool.sql's and revenue_by_customer.sql's (ties break by name, as there).
--
-- Three queries cost about 1.6 times this one at 100 M stored rows: each plans its tiers and pays the
-- engine's floor per query (docs/capacity.md). revenue_all_raw.sql is the same view from raw rows alone.
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
SELECT part, period_start, tool_name, customer_id, amount, paid_requests
FROM
(
    SELECT
        if(grouping(tool_name) = 0, 'tool', 'period')            AS part,
        multiIf({period:String} = 'month', toStartOfMonth(day),
                {period:String} = 'week', toMonday(day),
                day)                                             AS period_start,
        tool_name,
        ''                                                       AS customer_id,
        sum(exact)                                               AS exact_amount,
        if(part = 'tool', toFloat64(exact_amount), sum(float_amount)) AS amount,
        sum(paid)                                                AS paid_requests
    FROM
    (
        SELECT
            toDate(event_time) AS day,
            tool_name,
            sum(x402_amount) AS float_amount,
            sum(toDecimal256OrZero(toString(x402_amount), 30)) AS exact,
            countIf(x402_amount > 0)                           AS paid
        FROM request_logs
        WHERE agent_id = {agent_id:String}
          AND source != 'sdk_ping'
          AND ({customer:String} = '' OR customer_id = {customer:String})
          AND ({tool:String} = '' OR tool_name = {tool:String})
          AND ({protocol:String} = '' OR protocol = {protocol:String})
          AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
          AND toDate(event_time) >= days_start AND toDate(event_time) < days_end
        GROUP BY day, tool_name
        UNION ALL
        SELECT
            toDate(toStartOfHour(event_time)) AS day,
            tool_name,
            sum(x402_amount) AS float_amount,
            sum(toDecimal256OrZero(toString(x402_amount), 30)) AS exact,
            countIf(x402_amount > 0)                           AS paid
        FROM request_logs
        WHERE agent_id = {agent_id:String}
          AND source != 'sdk_ping'
          AND ({customer:String} = '' OR customer_id = {customer:String})
          AND ({tool:String} = '' OR tool_name = {tool:String})
          AND ({protocol:String} = '' OR protocol = {protocol:String})
          AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
          AND (toStartOfHour(event_time) >= hours_head_start AND toStartOfHour(event_time) < hours_head_end
               OR toStartOfHour(event_time) >= hours_tail_start AND toStartOfHour(event_time) < hours_tail_end)
        GROUP BY day, tool_name
        UNION ALL
        SELECT
            toDate(event_time) AS day,
            tool_name,
            sum(x402_amount) AS float_amount,
            sum(toDecimal256OrZero(toString(x402_amount), 30)) AS exact,
            countIf(x402_amount > 0)                           AS paid
        FROM request_logs
        WHERE agent_id = {agent_id:String}
          AND source != 'sdk_ping'
          AND ({customer:String} = '' OR customer_id = {customer:String})
          AND ({tool:String} = '' OR tool_name = {tool:String})
          AND ({protocol:String} = '' OR protocol = {protocol:String})
          AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
          AND (event_time >= range_start AND event_time < raw_head_end
               OR event_time >= raw_tail_start AND event_time < range_end)
        GROUP BY day, tool_name
    )
    GROUP BY GROUPING SETS ((period_start), (tool_name))
    HAVING paid_requests > 0
    UNION ALL
    SELECT
        'customer'                                               AS part,
        toDate(0)                                                AS period_start,
        ''                                                       AS tool_name,
        customer_id,
        sum(exact)                                               AS exact_amount,
        toFloat64(exact_amount)                                  AS amount,
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
)
ORDER BY part, period_start, exact_amount DESC, tool_name, customer_id
