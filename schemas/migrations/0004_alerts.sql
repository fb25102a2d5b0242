-- Alerts (docs/alerts.md): rules as written through the read API, the CLI or the usage limits; the
-- transitions the evaluator decided (the outbox of the webhooks); and every delivery attempt.
--
-- alert_rules keeps every version of a rule; the newest (highest version) wins, deleted = 1 hides it.
-- Read it with FINAL (or argMax by version). secret signs the rule's webhooks: the API shows it once.
CREATE TABLE IF NOT EXISTS alert_rules
(
    agent_id      String,
    rule_id       String,
    version       UInt64,
    deleted       UInt8,
    kind          LowCardinality(String),
    name          String,
    customer_id   String,
    threshold     String,
    window_s      UInt32,
    min_requests  UInt32,
    meter         LowCardinality(String),
    model         String,
    unit          LowCardinality(String),
    period        LowCardinality(String),
    webhook_url   String,
    secret        String,
    created_at    DateTime64(3, 'UTC'),
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (agent_id, rule_id);

-- One row per transition of a rule (seq 1, 2, ... alternating fired / resolved) and per test delivery
-- (transition 'test', seq 0). A rule's state is its event of highest seq. event_id is deterministic
-- (rule, seq), and each insert carries it as insert_deduplication_token, so an evaluator that repeats
-- a transition after a crash writes nothing new. body is the JSON delivered, signed when it is sent.
CREATE TABLE IF NOT EXISTS alert_events
(
    agent_id      String,
    rule_id       String,
    seq           UInt32,
    event_id      String,
    kind          LowCardinality(String),
    transition    LowCardinality(String),
    value         String,
    threshold     String,
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    evaluated_at  DateTime64(3, 'UTC'),
    webhook_url   String,
    body          String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (agent_id, rule_id, seq, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- The delivery log: one row per attempt. outcome 'retry' carries when the next attempt is due;
-- 'delivered' (a 2xx) and 'failed' (attempts exhausted) end the event's deliveries.
CREATE TABLE IF NOT EXISTS alert_deliveries
(
    agent_id         String,
    rule_id          String,
    event_id         String,
    attempt          UInt16,
    attempted_at     DateTime64(3, 'UTC'),
    url              String,
    status_code      UInt16,
    error            String,
    latency_ms       Float64,
    outcome          LowCardinality(String),
    next_attempt_at  DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (agent_id, rule_id, event_id, attempt)
TTL toDateTime(attempted_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;
