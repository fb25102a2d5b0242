-- Range requests: the agent's traffic in the minutes from the one holding {start} to {end}, from the
-- per-minute rollup agent_minute (migration 0002) — a cheap size of a range, not an exact count at its
-- edges. dashboards/queries.py reads a tiered view's range from raw rows below a size
-- (TIERS_FROM_ROWS), where planning the tiers costs more than the rows (docs/capacity.md).
SELECT sum(requests) AS requests
FROM agent_minute
WHERE agent_id = {agent_id:String}
  AND minute >= toStartOfMinute({start:DateTime64(3, 'UTC')})
  AND minute < {end:DateTime64(3, 'UTC')}
