-- Alert events (transitions and test deliveries), newest first: of the agent {agent_id} ('' = every agent),
-- of rule {rule_id} unless '', at most {limit}.
SELECT agent_id, rule_id, seq, event_id, kind, transition, value, threshold, window_start, window_end,
       evaluated_at, webhook_url
FROM alert_events
WHERE ({agent_id:String} = '' OR agent_id = {agent_id:String})
  AND ({rule_id:String} = '' OR rule_id = {rule_id:String})
ORDER BY evaluated_at DESC, rule_id, seq DESC
LIMIT {limit:UInt32}
