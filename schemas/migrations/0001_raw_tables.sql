-- Raw events as stored by the stream workers. Rollups arrive in later migrations.
-- Insert deduplication: every sink batch carries insert_deduplication_token, which a plain
-- MergeTree honours only with non_replicated_deduplication_window set.

CREATE TABLE IF NOT EXISTS request_logs
(
    agent_id           LowCardinality(String),
    request_id         String,
    batch_id           String,
    sdk_version        LowCardinality(String),
    event_time         DateTime64(3, 'UTC'),
    ingested_at        DateTime64(3, 'UTC'),
    stored_at          DateTime64(3, 'UTC'),
    method             LowCardinality(String),
    path               String,
    status_code        UInt16,
    response_ms        Float64,
    is_error           UInt8,
    is_payment_required UInt8,
    customer_id        String,
    tool_name          LowCardinality(String),
    error_type         LowCardinality(String),
    protocol           LowCardinality(String),
    source             LowCardinality(String),
    x402_amount        Float64,
    x402_tx_hash       String,
    x402_token         LowCardinality(String),
    x402_payer         String,
    request_body       String TTL toDateTime(stored_at) + INTERVAL 30 DAY,
    response_body      String TTL toDateTime(stored_at) + INTERVAL 30 DAY,
    request_body_size  UInt32,
    response_body_size UInt32,
    headers            Map(String, String) TTL toDateTime(stored_at) + INTERVAL 30 DAY,
    ip_address         String,
    user_agent         String,
    referer            String,
    content_type       LowCardinality(String),
    accept_language    LowCardinality(String),
    country            LowCardinality(String),
    city               String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (agent_id, event_time, request_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS usage_events
(
    app_id       LowCardinality(String),
    report_id    String,
    key_sha256   String,
    module       LowCardinality(String),
    model        LowCardinality(String),
    usage        UInt64,
    unit_price   Float64,
    cost         Float64,
    event_time   DateTime64(3, 'UTC'),
    ingested_at  DateTime64(3, 'UTC'),
    stored_at    DateTime64(3, 'UTC'),
    metadata     String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (app_id, event_time, report_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS dead_letters
(
    failed_at    DateTime64(3, 'UTC'),
    stage        LowCardinality(String),
    reason       LowCardinality(String),
    error        String,
    source_topic LowCardinality(String),
    partition    Int32,
    offset       Int64,
    agent_id     String,
    payload      String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (failed_at, source_topic, partition, offset)
TTL toDateTime(failed_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;
