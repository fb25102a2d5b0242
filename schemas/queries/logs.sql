-- Observability: the agent's most recent {limit} requests with their fields, newest
-- first. Bodies are cut to 2 KiB here (the full 16 KiB stay in the table).
SELECT
    event_time,
    request_id,
    method,
    path,
    status_code,
    response_ms,
    customer_id,
    tool_name,
    error_type,
    protocol,
    x402_amount,
    x402_tx_hash,
    x402_token,
    x402_payer,
    ip_address,
    user_agent,
    country,
    city,
    request_body_size,
    response_body_size,
    substringUTF8(request_body, 1, 2048)  AS request_body,
    substringUTF8(response_body, 1, 2048) AS response_body,
    ingested_at
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND source != 'sdk_ping'
ORDER BY event_time DESC, request_id DESC
LIMIT {limit:UInt32}
