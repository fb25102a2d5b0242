-- Revenue per customer (SPEC §6): x402 revenue of the agent per paying customer in [start, end),
-- largest first. Payments without a customer id are grouped under customer_id = ''.
SELECT
    customer_id,
    sum(x402_amount)                                         AS amount,
    count()                                                  AS paid_requests
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
  AND x402_amount > 0
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
GROUP BY customer_id
ORDER BY amount DESC, customer_id
LIMIT {limit:UInt32}
