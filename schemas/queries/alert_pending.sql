-- Webhook deliveries that are due at {now} (stream_workers/alerts): events since {since} with a webhook
-- whose log holds neither a 'delivered' nor a 'failed' attempt, and whose last attempt (if any) asked
-- for the next one at or before {now}; oldest first, at most {limit}. attempts = attempts made so far.
SELECT e.agent_id AS agent_id, e.rule_id AS rule_id, e.event_id AS event_id, e.url AS webhook_url,
       e.payload AS body, e.first_at AS evaluated_at, d.attempts AS attempts
FROM
(
    SELECT agent_id, rule_id, event_id, any(webhook_url) AS url, any(body) AS payload,
           min(evaluated_at) AS first_at
    FROM alert_events
    WHERE evaluated_at >= {since:DateTime64(3, 'UTC')} AND webhook_url != ''
    GROUP BY agent_id, rule_id, event_id
) AS e
LEFT JOIN
(
    SELECT agent_id, rule_id, event_id, max(attempt) AS attempts, argMax(outcome, attempt) AS outcome,
           argMax(next_attempt_at, attempt) AS next_at
    FROM alert_deliveries
    WHERE attempted_at >= {since:DateTime64(3, 'UTC')}
    GROUP BY agent_id, rule_id, event_id
) AS d ON d.agent_id = e.agent_id AND d.rule_id = e.rule_id AND d.event_id = e.event_id
WHERE d.attempts = 0 OR (d.outcome = 'retry' AND d.next_at <= {now:DateTime64(3, 'UTC')})
ORDER BY e.first_at, e.event_id
LIMIT {limit:UInt32}
SETTINGS join_use_nulls = 0
