-- What the request kinds of an alert rule compare (stream_workers/alerts): requests, errors and the 95th
-- percentile of response times of agent {agent_id} in [start, end) (whole minutes), and the last minute
-- with traffic before {end} (1970-01-01 when none: no_traffic needs traffic seen before it fires).
-- {customer} = '' reads the agent_minute rollup (percentile from its t-digest). A customer reads the raw
-- rows of the window (requests, errors and the exact percentile in one pass over the agent's rows there),
-- and its last minute from the customer days of migration 0007 before the UTC day holding {end} and from the
-- raw rows of that day. Each side's sub-queries carry the other's condition on {customer}, so the side a
-- rule does not ask for reads nothing.
SELECT
    requests,
    errors,
    if(requests = 0, 0, ifNotFinite(p95, 0)) AS p95_ms,
    last_seen
FROM
(
    SELECT
        (SELECT tuple(count(), countIf(status_code >= 400 AND status_code != 402),
                      quantileExactInclusive(0.95)(response_ms))
         FROM request_logs
         WHERE {customer:String} != '' AND agent_id = {agent_id:String} AND customer_id = {customer:String}
           AND source != 'sdk_ping' AND event_time >= {start:DateTime('UTC')} AND event_time < {end:DateTime('UTC')})
            AS of_customer,
        if({customer:String} = '',
           (SELECT sum(requests) FROM agent_minute
            WHERE {customer:String} = '' AND agent_id = {agent_id:String}
              AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')}),
           tupleElement(of_customer, 1)) AS requests,
        if({customer:String} = '',
           (SELECT sum(errors) FROM agent_minute
            WHERE {customer:String} = '' AND agent_id = {agent_id:String}
              AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')}),
           tupleElement(of_customer, 2)) AS errors,
        if({customer:String} = '',
           (SELECT quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles)[4] FROM agent_minute
            WHERE {customer:String} = '' AND agent_id = {agent_id:String}
              AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')}),
           tupleElement(of_customer, 3)) AS p95,
        if({customer:String} = '',
           (SELECT max(minute) FROM agent_minute
            WHERE {customer:String} = '' AND agent_id = {agent_id:String}
              AND minute < {end:DateTime('UTC')} AND requests > 0),
           toDateTime(toStartOfMinute(greatest(
               (SELECT max(last_seen) FROM agent_customer_day
                WHERE {customer:String} != '' AND agent_id = {agent_id:String} AND customer_id = {customer:String}
                  AND day < toDate({end:DateTime('UTC')}) AND requests > 0),
               (SELECT max(event_time) FROM request_logs
                WHERE {customer:String} != '' AND agent_id = {agent_id:String} AND customer_id = {customer:String}
                  AND source != 'sdk_ping' AND event_time >= toStartOfDay({end:DateTime('UTC')})
                  AND event_time < {end:DateTime('UTC')}))), 'UTC')) AS last_seen
)
