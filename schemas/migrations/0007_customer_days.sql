-- Customer days: per agent, UTC day and customer (and per agent, tool, day and customer) the sums the
-- customers view shows, merged into one row per key. The customers view reads its whole days here and its
-- cut days at the edges from raw rows (schemas/queries/customers.sql); a tool filter reads the tool table.
--
-- Why tables and not the customer_day projection of 0003, which the view read before: a projection is
-- kept per part of request_logs and never merged across parts, so a busy agent's month was one row per
-- customer, day and part (800,000 rows for 10,000 customers over 8 parts, 170-190 ms to read on two
-- cores); here it is one row per customer and day (300,000, about 35 ms). And a tool filter, which is no key
-- of the projection, read every raw row of the range (14 M rows of the largest agent: 0.6-0.8 s).
-- docs/capacity.md has the figures and what the insert pays: the customer days are fed from
-- agent_customer_minute's inserted block (already grouped), the tool days from the raw rows.
--
-- Like the rollups of 0002, a repeated batch is dropped in both (the sink's deduplication token reaches
-- views fed by views). The rows stored before this migration are added first, then the views for what
-- comes after (migrations run before a worker consumes, so nothing is stored in between). A migration
-- interrupted half-way is safe to run again: the TRUNCATEs empty what it added, and the backfill is not
-- deduplicated. The backfill groups in the raw table's order (agent first) and spills to disk past 1 GB,
-- so its memory does not grow with the store.

CREATE TABLE IF NOT EXISTS agent_customer_day
(
    agent_id     LowCardinality(String),
    day          Date,
    customer_id  String,
    requests     SimpleAggregateFunction(sum, UInt64),
    errors       SimpleAggregateFunction(sum, UInt64),
    revenue      SimpleAggregateFunction(sum, Float64),
    latency_sum  SimpleAggregateFunction(sum, Float64),
    first_seen   SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen    SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (agent_id, day, customer_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS agent_tool_customer_day
(
    agent_id     LowCardinality(String),
    tool_name    LowCardinality(String),
    day          Date,
    customer_id  String,
    requests     SimpleAggregateFunction(sum, UInt64),
    errors       SimpleAggregateFunction(sum, UInt64),
    revenue      SimpleAggregateFunction(sum, Float64),
    latency_sum  SimpleAggregateFunction(sum, Float64),
    first_seen   SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen    SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (agent_id, tool_name, day, customer_id)
SETTINGS non_replicated_deduplication_window = 10000;

TRUNCATE TABLE IF EXISTS agent_customer_day;

TRUNCATE TABLE IF EXISTS agent_tool_customer_day;

INSERT INTO agent_customer_day
SETTINGS insert_deduplicate = 0, optimize_aggregation_in_order = 1, max_bytes_before_external_group_by = 1000000000
SELECT
    agent_id,
    toDate(minute) AS day,
    customer_id,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(revenue) AS revenue,
    sum(latency_sum) AS latency_sum,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM agent_customer_minute
WHERE customer_id != ''
GROUP BY agent_id, day, customer_id;

INSERT INTO agent_tool_customer_day
SETTINGS insert_deduplicate = 0, optimize_aggregation_in_order = 1, max_bytes_before_external_group_by = 1000000000
SELECT
    agent_id,
    tool_name,
    toDate(event_time) AS day,
    customer_id,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    sum(x402_amount) AS revenue,
    sum(response_ms) AS latency_sum,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM request_logs
WHERE source != 'sdk_ping' AND customer_id != ''
GROUP BY agent_id, tool_name, day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_customer_day_mv TO agent_customer_day AS
SELECT
    agent_id,
    toDate(minute) AS day,
    customer_id,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(revenue) AS revenue,
    sum(latency_sum) AS latency_sum,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM agent_customer_minute
WHERE customer_id != ''
GROUP BY agent_id, day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_customer_day_mv TO agent_tool_customer_day AS
SELECT
    agent_id,
    tool_name,
    toDate(event_time) AS day,
    customer_id,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    sum(x402_amount) AS revenue,
    sum(response_ms) AS latency_sum,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM request_logs
WHERE source != 'sdk_ping' AND customer_id != ''
GROUP BY agent_id, tool_name, day, customer_id;
