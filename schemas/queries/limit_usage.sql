-- Limit usage: units per (module, model, end customer) of one app in the UTC month holding {day}, and on
-- {day} itself, from the usage_customer_day rollup (migration 0005) — what the limits of docs/limits.md
-- have used. {modules} narrows to the limits' modules (empty: every module). The end customers named in
-- {customers} get rows of their own (named = 1); every other customer's usage is folded into named = 0
-- rows, so an app with many customers still answers in a few rows. An app's total is the sum of all rows.
-- dashboards/limits.py adds the rows up per limit (meter, model, scope); as fresh as the stored usage.
SELECT
    module,
    model,
    has({customers:Array(String)}, customer_id)  AS named,
    if(named, customer_id, '')                   AS customer,
    sum(units)                                   AS month_units,
    sumIf(units, day = {day:Date})               AS day_units
FROM usage_customer_day
WHERE app_id = {app_id:String}
  AND (empty({modules:Array(String)}) OR has({modules:Array(String)}, module))
  AND day >= toStartOfMonth({day:Date})
  AND day <= toLastDayOfMonth({day:Date})
GROUP BY module, model, named, customer
