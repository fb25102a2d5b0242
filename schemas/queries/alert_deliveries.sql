-- The webhook delivery log, newest attempt first: of the agent {agent_id} ('' = every agent), of rule
-- {rule_id} and event {event_id} unless '', at most {limit}. status_code 0: no HTTP answer (see error).
SELECT agent_id, rule_id, event_id, attempt, attempted_at, url, status_code, error, latency_ms, outcome,
       next_attempt_at
FROM alert_deliveries
WHERE ({agent_id:String} = '' OR agent_id = {agent_id:String})
  AND ({rule_id:String} = '' OR rule_id = {rule_id:String})
  AND ({event_id:String} = '' OR event_id = {event_id:String})
ORDER BY attempted_at DESC, event_id, attempt DESC
LIMIT {limit:UInt32}
