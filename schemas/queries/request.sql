-- Request detail: one request of the agent by its id, as stored — timings (the agent's event time,
-- the gateway's ingest time, the sink's store time), the headers kept (secret ones were removed at
-- ingest; the caller removes them again), both bodies as captured (up to 16 KiB each; the sizes are
-- the originals'), the client, and the x402 payment. A request id repeated (a retry the deduplication
-- window no longer held) gives its newest row.
SELECT
    event_time,
    ingested_at,
    stored_at,
    request_id,
    batch_id,
    sdk_version,
    source,
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
    request_body,
    response_body,
    request_body_size,
    response_body_size,
    headers,
    ip_address,
    user_agent,
    referer,
    content_type,
    accept_language,
    country,
    city
FROM request_logs
WHERE agent_id = {agent_id:String}
  AND request_id = {request_id:String}
ORDER BY event_time DESC, stored_at DESC
LIMIT 1
