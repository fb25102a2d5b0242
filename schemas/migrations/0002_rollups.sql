-- Per-minute rollups fed by materialized views from the raw tables; the dashboard queries read them
-- (schemas/queries/README.md) and docs/architecture.md says why repeats cannot reach them twice.
--
-- The stream workers insert each sink batch into request_logs / usage_events once, with an
-- insert_deduplication_token and deduplicate_blocks_in_dependent_materialized_views = 1, so a retried
-- or replayed batch is dropped by the raw table AND by every rollup below (each rollup table keeps its
-- own deduplication window). Every insert block becomes one partial aggregate per key and minute;
-- AggregatingMergeTree merges the partials, so late events and replays stay correct. Read the rollups
-- with GROUP BY and the -Merge combinators (sum, min, max for the SimpleAggregateFunction columns).
-- source = 'sdk_ping' rows (SDK connection checks) are stored raw but are not traffic.

-- stored_at is the time the sink wrote the row: the ClickHouse server's clock at insert time.
ALTER TABLE request_logs MODIFY COLUMN stored_at DateTime64(3, 'UTC') DEFAULT now64(3);
ALTER TABLE usage_events MODIFY COLUMN stored_at DateTime64(3, 'UTC') DEFAULT now64(3);

CREATE TABLE IF NOT EXISTS agent_minute
(
    agent_id          LowCardinality(String),
    minute            DateTime('UTC'),
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    payment_required  SimpleAggregateFunction(sum, UInt64),
    paid              SimpleAggregateFunction(sum, UInt64),
    revenue           SimpleAggregateFunction(sum, Float64),
    latency_sum       SimpleAggregateFunction(sum, Float64),
    latency_min       SimpleAggregateFunction(min, Float64),
    latency_max       SimpleAggregateFunction(max, Float64),
    latency_quantiles AggregateFunction(quantilesTDigest(0.5, 0.75, 0.9, 0.95, 0.99), Float64),
    customers         AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (agent_id, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_minute_mv TO agent_minute AS
SELECT
    agent_id,
    toStartOfMinute(event_time) AS minute,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    countIf(is_payment_required = 1) AS payment_required,
    countIf(x402_amount > 0) AS paid,
    sum(x402_amount) AS revenue,
    sum(response_ms) AS latency_sum,
    min(response_ms) AS latency_min,
    max(response_ms) AS latency_max,
    quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms) AS latency_quantiles,
    uniqStateIf(customer_id, customer_id != '') AS customers
FROM request_logs
WHERE source != 'sdk_ping'
GROUP BY agent_id, minute;

CREATE TABLE IF NOT EXISTS agent_customer_minute
(
    agent_id     LowCardinality(String),
    customer_id  String,
    minute       DateTime('UTC'),
    requests     SimpleAggregateFunction(sum, UInt64),
    errors       SimpleAggregateFunction(sum, UInt64),
    paid         SimpleAggregateFunction(sum, UInt64),
    revenue      SimpleAggregateFunction(sum, Float64),
    latency_sum  SimpleAggregateFunction(sum, Float64),
    first_seen   SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen    SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (agent_id, customer_id, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_customer_minute_mv TO agent_customer_minute AS
SELECT
    agent_id,
    customer_id,
    toStartOfMinute(event_time) AS minute,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    countIf(x402_amount > 0) AS paid,
    sum(x402_amount) AS revenue,
    sum(response_ms) AS latency_sum,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM request_logs
WHERE source != 'sdk_ping'
GROUP BY agent_id, customer_id, minute;

CREATE TABLE IF NOT EXISTS agent_tool_minute
(
    agent_id          LowCardinality(String),
    tool_name         LowCardinality(String),
    minute            DateTime('UTC'),
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    paid              SimpleAggregateFunction(sum, UInt64),
    revenue           SimpleAggregateFunction(sum, Float64),
    latency_sum       SimpleAggregateFunction(sum, Float64),
    latency_quantiles AggregateFunction(quantilesTDigest(0.5, 0.75, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (agent_id, tool_name, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_minute_mv TO agent_tool_minute AS
SELECT
    agent_id,
    tool_name,
    toStartOfMinute(event_time) AS minute,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    countIf(x402_amount > 0) AS paid,
    sum(x402_amount) AS revenue,
    sum(response_ms) AS latency_sum,
    quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms) AS latency_quantiles
FROM request_logs
WHERE source != 'sdk_ping'
GROUP BY agent_id, tool_name, minute;

CREATE TABLE IF NOT EXISTS usage_minute
(
    app_id   LowCardinality(String),
    module   LowCardinality(String),
    model    LowCardinality(String),
    minute   DateTime('UTC'),
    reports  SimpleAggregateFunction(sum, UInt64),
    units    SimpleAggregateFunction(sum, UInt64),
    cost     SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (app_id, module, model, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_minute_mv TO usage_minute AS
SELECT
    app_id,
    module,
    model,
    toStartOfMinute(event_time) AS minute,
    count() AS reports,
    sum(usage) AS units,
    sum(cost) AS cost
FROM usage_events
GROUP BY app_id, module, model, minute;
