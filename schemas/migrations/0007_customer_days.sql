-- Customer days: per agent, tool, UTC day and customer, and per agent, day and customer, the sums the customer
-- views show, merged into one row per key. customers.sql and revenue_by_customer.sql read their whole days
-- here (a tool filter: the per-tool table) and their cut days at the edges from raw rows.
--
-- They replace the customer_day projection of 0003, dropped here. A projection is kept per part of
-- request_logs and never merged across parts, so a busy agent's month was one row per customer, day and part
-- (800,000 rows for 10,000 customers over 8 parts, 170-190 ms to read on two cores); here it is one row per
-- customer and day (300,000). A tool filter, no key of the projection, read every raw row of the range (the
-- largest agent's 14 M: 0.6-0.8 s). And the projection was the dearest part of the sink's insert (a group per
-- agent, day, source and customer of every block); the tool days are fed from the raw rows, the customer days
-- from the tool days' inserted block (already grouped). docs/capacity.md has the figures.
--
-- agent_customer_minute (0002) goes too: with many customers it held about a row per request, and only the
-- per-customer alert rules read it, which read the raw rows of their window for the percentile anyway; they
-- now take their counts from the same pass and the last minute a customer was seen from the customer days
-- (schemas/queries/alert_eval_requests.sql). Its view's share of the stack's CPU per entry was measured end
-- to end (docs/capacity.md).
--
-- revenue_exact is the exact decimal sum of each amount's shortest text, as revenue_by_customer.sql adds
-- them (3 x 0.1 and 1 x 0.3 tie). Requests without a customer id are kept under customer_id = '' (revenue by
-- customer shows them; the customers view leaves them out).
--
-- Like the rollups of 0002, a repeated batch is dropped in both (the sink's deduplication token reaches
-- views fed by views). The rows stored before this migration are added first (the customer days through
-- their view, created first), then the view for what comes after (migrations run before a worker consumes,
-- so nothing is stored in between). A migration interrupted half-way is safe to run again: the TRUNCATEs
-- empty what it added, and the backfill is not deduplicated. The backfill groups in the raw table's order
-- (agent first) and spills to disk past 1 GB, so its memory does not grow with the store.

CREATE TABLE IF NOT EXISTS agent_tool_customer_day
(
    agent_id      LowCardinality(String),
    tool_name     LowCardinality(String),
    day           Date,
    customer_id   String,
    requests      SimpleAggregateFunction(sum, UInt64),
    errors        SimpleAggregateFunction(sum, UInt64),
    paid          SimpleAggregateFunction(sum, UInt64),
    revenue       SimpleAggregateFunction(sum, Float64),
    revenue_exact SimpleAggregateFunction(sum, Decimal(76, 30)),
    latency_sum   SimpleAggregateFunction(sum, Float64),
    first_seen    SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen     SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (agent_id, tool_name, day, customer_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS agent_customer_day
(
    agent_id      LowCardinality(String),
    day           Date,
    customer_id   String,
    requests      SimpleAggregateFunction(sum, UInt64),
    errors        SimpleAggregateFunction(sum, UInt64),
    paid          SimpleAggregateFunction(sum, UInt64),
    revenue       SimpleAggregateFunction(sum, Float64),
    revenue_exact SimpleAggregateFunction(sum, Decimal(76, 30)),
    latency_sum   SimpleAggregateFunction(sum, Float64),
    first_seen    SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen     SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (agent_id, day, customer_id)
SETTINGS non_replicated_deduplication_window = 10000;

ALTER TABLE request_logs DROP PROJECTION IF EXISTS customer_day;

DROP VIEW IF EXISTS agent_customer_minute_mv;

DROP TABLE IF EXISTS agent_customer_minute;

TRUNCATE TABLE IF EXISTS agent_tool_customer_day;

TRUNCATE TABLE IF EXISTS agent_customer_day;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_customer_day_mv TO agent_customer_day AS
SELECT
    agent_id,
    day,
    customer_id,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(paid) AS paid,
    sum(revenue) AS revenue,
    sum(revenue_exact) AS revenue_exact,
    sum(latency_sum) AS latency_sum,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM agent_tool_customer_day
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
    countIf(x402_amount > 0) AS paid,
    sum(x402_amount) AS revenue,
    sum(toDecimal256OrZero(toString(x402_amount), 30)) AS revenue_exact,
    sum(response_ms) AS latency_sum,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM request_logs
WHERE source != 'sdk_ping'
GROUP BY agent_id, tool_name, day, customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_customer_day_mv TO agent_tool_customer_day AS
SELECT
    agent_id,
    tool_name,
    toDate(event_time) AS day,
    customer_id,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    countIf(x402_amount > 0) AS paid,
    sum(x402_amount) AS revenue,
    sum(toDecimal256OrZero(toString(x402_amount), 30)) AS revenue_exact,
    sum(response_ms) AS latency_sum,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM request_logs
WHERE source != 'sdk_ping'
GROUP BY agent_id, tool_name, day, customer_id;
