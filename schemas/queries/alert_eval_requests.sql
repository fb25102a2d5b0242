-- What the request kinds of an alert rule compare (stream_workers/alerts): requests, errors and the 95th
-- percentile of response times of agent {agent_id} in [start, end) (whole minutes), and the last minute
-- with traffic before {end} (1970-01-01 when none: no_traffic needs traffic seen before it fires).
-- {customer} = '' reads the agent_minute rollup (percentile from its t-digest); a customer reads
-- agent_customer_minute, and the raw rows for the percentile (the customer rollup keeps none).
SELECT
    requests,
    errors,
    if(requests = 0, 0, ifNotFinite(p95, 0)) AS p95_ms,
    last_seen
FROM
(
    SELECT
        if({customer:String} = '',
           (SELECT sum(requests) FROM agent_minute
            WHERE agent_id = {agent_id:String} AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')}),
           (SELECT sum(requests) FROM agent_customer_minute
            WHERE agent_id = {agent_id:String} AND customer_id = {customer:String}
              AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')})) AS requests,
        if({customer:String} = '',
           (SELECT sum(errors) FROM agent_minute
            WHERE agent_id = {agent_id:String} AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')}),
           (SELECT sum(errors) FROM agent_customer_minute
            WHERE agent_id = {agent_id:String} AND customer_id = {customer:String}
              AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')})) AS errors,
        if({customer:String} = '',
           (SELECT quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles)[4] FROM agent_minute
            WHERE agent_id = {agent_id:String} AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')}),
           (SELECT quantileExactInclusive(0.95)(response_ms) FROM request_logs
            WHERE agent_id = {agent_id:String} AND customer_id = {customer:String} AND source != 'sdk_ping'
              AND event_time >= {start:DateTime('UTC')} AND event_time < {end:DateTime('UTC')})) AS p95,
        if({customer:String} = '',
           (SELECT max(minute) FROM agent_minute
            WHERE agent_id = {agent_id:String} AND minute < {end:DateTime('UTC')} AND requests > 0),
           (SELECT max(minute) FROM agent_customer_minute
            WHERE agent_id = {agent_id:String} AND customer_id = {customer:String}
              AND minute < {end:DateTime('UTC')} AND requests > 0)) AS last_seen
)
