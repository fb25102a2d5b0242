-- Billing usage (SPEC §6): units and cost per (app, {period}, module, model) in [start, end).
-- {period} is 'day', 'week' (starting Monday) or 'month'; {app_id} = '' means every app.
-- cost was priced by the stream workers from schemas/prices.toml when the report was stored.
SELECT
    app_id,
    multiIf({period:String} = 'month', toStartOfMonth(event_time),
            {period:String} = 'week', toMonday(event_time),
            toDate(event_time))                              AS period_start,
    module,
    model,
    count()                                                  AS reports,
    sum(usage)                                               AS units,
    sum(cost)                                                AS cost
FROM usage_events
WHERE ({app_id:String} = '' OR app_id = {app_id:String})
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY app_id, period_start, module, model
ORDER BY app_id, period_start, module, model
