-- Observability: the agent's requests in [start, end), newest first, one page of at most {limit}
-- rows after the cursor: rows before ({before_time}, {before_id}) in (event_time, request_id) order
-- (keyset pagination; the first page's cursor is (end, ''), which every row of the range precedes).
-- The sort is the table's own key after agent_id, so the engine reads in order and stops at the limit.
-- {q} (case-insensitive; '' = any) searches request id, method, path, customer, tool, error type,
-- user agent and both bodies. The filters (customer, tool, protocol, status class; '' = any) narrow
-- the rows. Bodies are cut to 2 KiB here (the request detail shows them as captured).
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
  AND ({customer:String} = '' OR customer_id = {customer:String})
  AND ({tool:String} = '' OR tool_name = {tool:String})
  AND ({protocol:String} = '' OR protocol = {protocol:String})
  AND ({status:String} = '' OR multiIf(status_code = 402, '402', concat(toString(intDiv(status_code, 100)), 'xx')) = {status:String})
  AND event_time >= {start:DateTime64(3, 'UTC')}
  AND event_time < {end:DateTime64(3, 'UTC')}
  AND event_time <= {before_time:DateTime64(3, 'UTC')}
  AND (event_time, request_id) < ({before_time:DateTime64(3, 'UTC')}, {before_id:String})
  AND ({q:String} = ''
       OR positionCaseInsensitiveUTF8(request_id, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(method, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(path, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(customer_id, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(tool_name, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(error_type, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(user_agent, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(request_body, {q:String}) > 0
       OR positionCaseInsensitiveUTF8(response_body, {q:String}) > 0)
ORDER BY event_time DESC, request_id DESC
LIMIT {limit:UInt32}
