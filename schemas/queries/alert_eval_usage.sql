-- What a usage alert rule compares (stream_workers/alerts): the quantity per UTC day and model of meter
-- (module) {module} of app {app_id} in [start, end), only model {model} unless ''. The days let spend be
-- priced at each day's unit price (schemas/prices.toml). {customer} = '' reads the usage_minute rollup;
-- a customer reads usage_events, whose metadata.customer_id names it (the rollup keeps no customer).
SELECT day, model, sum(units) AS quantity
FROM
(
    SELECT toDate(minute) AS day, model, units
    FROM usage_minute
    WHERE {customer:String} = ''
      AND app_id = {app_id:String} AND module = {module:String}
      AND ({model:String} = '' OR model = {model:String})
      AND minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')}
    UNION ALL
    SELECT toDate(event_time) AS day, model, usage AS units
    FROM usage_events
    WHERE {customer:String} != ''
      AND app_id = {app_id:String} AND module = {module:String}
      AND ({model:String} = '' OR model = {model:String})
      AND JSONExtractString(metadata, 'customer_id') = {customer:String}
      AND event_time >= {start:DateTime('UTC')} AND event_time < {end:DateTime('UTC')}
)
GROUP BY day, model
ORDER BY day, model
