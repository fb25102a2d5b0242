-- Statement usage: reports and quantity per (app, end customer, segment, module, model) in [start, end),
-- counting only rows stored before {as_of} (a statement re-run with the same as_of gives the same lines).
-- {app_id} = '' means every app; {one_customer} = 1 keeps only the end customer {customer} ('' = reports
-- that name none).
--
-- The app is the owner of the reporting key (app_id); the end customer is the report's
-- metadata.customer_id ('' when absent). {cuts} are epoch milliseconds inside the range, ascending:
-- segment i is [cut i-1, cut i) with the range's own bounds at either end. The caller cuts at every
-- price change and period boundary, so each row has one unit price and one period; pricing
-- (quantity × unit price, exact decimals) is done by dashboards/billing.py from schemas/prices.toml.
--
-- Raw usage_events, not the usage_minute rollup: the rollup has neither the customer nor stored_at.
SELECT
    app_id,
    JSONExtractString(metadata, 'customer_id')                               AS customer_id,
    arrayCount(c -> c <= toUnixTimestamp64Milli(event_time), {cuts:Array(Int64)}) AS segment,
    module,
    model,
    count()                                                                  AS reports,
    sum(usage)                                                               AS quantity
FROM usage_events
WHERE ({app_id:String} = '' OR app_id = {app_id:String})
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
  AND stored_at < {as_of:DateTime64(3, 'UTC')}
  AND ({one_customer:UInt8} = 0 OR customer_id = {customer:String})
GROUP BY app_id, customer_id, segment, module, model
ORDER BY app_id, customer_id, segment, module, model
