-- Speed insights, latency distribution: requests of the agent in [start, end) per
-- latency bucket. Bucket i holds lower_ms <= response_ms < upper_ms; the last bucket has no upper
-- bound (upper_ms = 0). Every bucket is returned, empty ones with 0.
--
-- The same view as latency_histogram.sql, read from raw rows alone: dashboards/queries.py runs this file for a range
-- holding no whole UTC day, where the tiers of the rollups would cost more than they save. SETTINGS keeps
-- the engine from weighing the projections of migration 0003 for it.
WITH [0., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000.] AS bounds
SELECT
    b.bucket                                            AS bucket,
    bounds[b.bucket]                                    AS lower_ms,
    if(b.bucket < length(bounds), bounds[b.bucket + 1], 0.) AS upper_ms,
    ifNull(h.requests, 0)                               AS requests
FROM
(
    SELECT toUInt32(number + 1) AS bucket FROM numbers(length(bounds))
) AS b
LEFT JOIN
(
    SELECT
        toUInt32(arrayLastIndex(x -> response_ms >= x, bounds)) AS bucket,
        count() AS requests
    FROM request_logs
    WHERE agent_id = {agent_id:String}
      AND source != 'sdk_ping'
      AND ({customer:String} = '' OR customer_id = {customer:String})
      AND ({tool:String} = '' OR tool_name = {tool:String})
      AND ({protocol:String} = '' OR protocol = {protocol:String})
      AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
      AND event_time >= {start:DateTime64(3, 'UTC')}
      AND event_time < {end:DateTime64(3, 'UTC')}
    GROUP BY bucket
) AS h USING (bucket)
ORDER BY bucket
SETTINGS join_use_nulls = 1, optimize_use_projections = 0
