-- Limit usage: units per (module, model) of one app, and per (module, model, end customer) for the customers
-- named in {customers}, in the UTC month holding {day} and on {day} itself — what the limits of
-- docs/limits.md have used. Rows with named = 0 are the whole app's (the usage_app_day rollup, read only
-- when {app_wide} = 1), rows with named = 1 one customer's (usage_customer_day); both rollups are migration
-- 0005's, and each reads at most 31 days per model of one sorting-key prefix, whatever the number of the
-- app's customers. {modules} narrows to the limits' modules. dashboards/limits.py adds the rows up per limit.
SELECT
    module,
    model,
    toUInt8(0)                          AS named,
    ''                                  AS customer,
    sum(units)                          AS month_units,
    sumIf(units, day = {day:Date})      AS day_units
FROM usage_app_day
WHERE {app_wide:UInt8} = 1
  AND app_id = {app_id:String}
  AND has({modules:Array(String)}, module)
  AND day >= toStartOfMonth({day:Date})
  AND day <= toLastDayOfMonth({day:Date})
GROUP BY module, model
UNION ALL
SELECT
    module,
    model,
    toUInt8(1)                          AS named,
    customer_id                         AS customer,
    sum(units)                          AS month_units,
    sumIf(units, day = {day:Date})      AS day_units
FROM usage_customer_day
WHERE app_id = {app_id:String}
  AND has({modules:Array(String)}, module)
  AND has({customers:Array(String)}, customer_id)
  AND day >= toStartOfMonth({day:Date})
  AND day <= toLastDayOfMonth({day:Date})
GROUP BY module, model, customer_id
