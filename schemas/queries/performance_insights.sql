-- Speed insights in one pass over the raw rows of [prev_start, end): what performance.sql,
-- latency_histogram.sql and performance_hourly.sql answer apart, read once. Two rows at most, `current`
-- [start, end) and `previous` [prev_start, start), each with performance.sql's columns and:
--   hourly      per UTC hour of the period with traffic, sorted: (hour, requests, errors, avg_latency_ms,
--               p95_latency_ms), as performance_hourly.sql;
--   histogram   requests per latency bucket, bucket i holding bounds[i] <= response_ms < bounds[i + 1] (the
--               last one unbounded), as latency_histogram.sql (the caller binds bounds, the same as that file's).
-- A period without traffic has no row. The filters (customer, tool, protocol, status class; '' = any) narrow both.
--
-- The inner query keeps one group per (period, hour) with the states of the exact percentiles and distinct
-- customers; the outer one merges them per period, so the exact figures read every row once. Three queries
-- cost about twice this one: each reads the same rows and pays the engine's floor per query (docs/capacity.md).
-- SETTINGS keeps the engine from weighing the projections of migration 0003 (raw rows only).
WITH {bounds:Array(Float64)} AS bounds,
     quantilesExactInclusiveMerge(0.50, 0.75, 0.90, 0.95, 0.99)(hour_quantiles) AS q
SELECT
    period,
    sum(hour_requests)                                              AS requests,
    sum(hour_successes)                                             AS successes,
    sum(hour_errors)                                                AS errors,
    sum(hour_payment_required)                                      AS payment_required,
    sum(hour_revenue)                                               AS revenue,
    sum(hour_paid_requests)                                         AS paid_requests,
    uniqExactIfMerge(hour_customers)                                AS customers,
    errors / requests                                               AS error_rate,
    sum(hour_latency_ms) / requests                                 AS avg_latency_ms,
    q[1]                                                            AS p50_latency_ms,
    q[2]                                                            AS p75_latency_ms,
    q[3]                                                            AS p90_latency_ms,
    q[4]                                                            AS p95_latency_ms,
    q[5]                                                            AS p99_latency_ms,
    requests / (dateDiff('millisecond', {start:DateTime64(3, 'UTC')}, {end:DateTime64(3, 'UTC')}) / 60000)
                                                                    AS requests_per_minute,
    arraySort(groupArray((hour, hour_requests, hour_errors, hour_latency_ms / hour_requests,
                          finalizeAggregation(hour_quantiles)[4])))  AS hourly,
    sumForEach(hour_histogram)                                      AS histogram
FROM
(
    SELECT
        if(event_time >= {start:DateTime64(3, 'UTC')}, 'current', 'previous')  AS period,
        toStartOfHour(event_time)                                             AS hour,
        count()                                                               AS hour_requests,
        countIf(status_code < 400)                                            AS hour_successes,
        countIf(status_code >= 400 AND status_code != 402)                    AS hour_errors,
        countIf(status_code = 402)                                            AS hour_payment_required,
        sum(x402_amount)                                                      AS hour_revenue,
        countIf(x402_amount > 0)                                              AS hour_paid_requests,
        uniqExactIfState(customer_id, customer_id != '')                      AS hour_customers,
        sum(response_ms)                                                      AS hour_latency_ms,
        quantilesExactInclusiveState(0.50, 0.75, 0.90, 0.95, 0.99)(response_ms) AS hour_quantiles,
        sumForEach(arrayMap(i -> toUInt64(i = arrayLastIndex(x -> response_ms >= x, bounds)),
                            arrayEnumerate(bounds)))                          AS hour_histogram
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND ({tool:String} = '' OR tool_name = {tool:String})
      AND ({protocol:String} = '' OR protocol = {protocol:String})
      AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
      AND event_time >= {prev_start:DateTime64(3, 'UTC')}
      AND event_time < {end:DateTime64(3, 'UTC')}
    GROUP BY period, hour
)
GROUP BY period
ORDER BY period
SETTINGS optimize_use_projections = 0
