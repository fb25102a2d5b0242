-- Alert rules with their state: the newest version of each rule (alert_rules FINAL) that is not deleted,
-- of the agent {agent_id} ('' = every agent), only rule {rule_id} unless ''. The state is the rule's
-- transition of highest seq in alert_events ('ok' before the first one); test events do not count.
-- secret is selected for the evaluator, which signs with it; the read API never returns it.
SELECT
    r.agent_id AS agent_id,
    r.rule_id AS rule_id,
    r.version AS version,
    r.kind AS kind,
    r.name AS name,
    r.customer_id AS customer_id,
    r.threshold AS threshold,
    r.window_s AS window_s,
    r.min_requests AS min_requests,
    r.meter AS meter,
    r.model AS model,
    r.unit AS unit,
    r.period AS period,
    r.webhook_url AS webhook_url,
    r.secret AS secret,
    r.created_at AS created_at,
    r.updated_at AS updated_at,
    if(s.last_seq = 0, 'ok', if(s.last_transition = 'fired', 'firing', 'ok')) AS state,
    s.last_seq AS seq,
    s.since AS state_since,
    s.last_value AS last_value
FROM (SELECT * FROM alert_rules FINAL
      WHERE deleted = 0
        AND ({agent_id:String} = '' OR agent_id = {agent_id:String})
        AND ({rule_id:String} = '' OR rule_id = {rule_id:String})) AS r
LEFT JOIN
(
    SELECT agent_id, rule_id, max(seq) AS last_seq, argMax(transition, seq) AS last_transition,
           argMax(evaluated_at, seq) AS since, argMax(value, seq) AS last_value
    FROM alert_events
    WHERE transition != 'test'
      AND ({agent_id:String} = '' OR agent_id = {agent_id:String})
      AND ({rule_id:String} = '' OR rule_id = {rule_id:String})
    GROUP BY agent_id, rule_id
) AS s ON s.agent_id = r.agent_id AND s.rule_id = r.rule_id
ORDER BY agent_id, rule_id
SETTINGS join_use_nulls = 0
