-- Hour and day sketches for long ranges: per agent (and per agent and tool) and hour or UTC day, the exact
-- counters and sums of the views, a t-digest of the latencies and, per agent, a uniq state of the
-- customers and the first and last minute with traffic (the agents list reads its totals from the days). A view whose range holds many of the agent's requests (SKETCH_FROM_ROWS) reads its whole days
-- and hours here and its cut hours at the edges from raw rows (schemas/queries/README.md, "sketches"): its
-- counts, sums and averages stay exact, its percentiles and distinct customers become estimates. Exact
-- percentiles of a month mean reading every one of its rows (an agent's 14 M: ~460 ms on two cores); here a
-- month is 30 day rows and the hours at its edges (docs/capacity.md).
--
-- What the sink's insert pays for them is kept small: the agent hours are fed from agent_minute (a view
-- over the minute rollup's inserted block: a few rows a sink batch, merged states, no pass over the raw
-- rows), the days from the hours. The tool hours need the raw rows (agent_tool_minute counts no 402s), and
-- take the place of agent_tool_minute, which no query read: its view and table are dropped, so the raw
-- rows still feed one t-digest per tool. Like the rollups of 0002, a repeated batch is dropped in every
-- sketch (deduplicate_blocks_in_dependent_materialized_views reaches views fed by views).
--
-- t-digest: merging a state costs about the same whatever the rows behind it, and its error is in rank
-- (about 1 %), where a latency tail is read. uniq: exact up to 65,536 distinct customers (but for a rare
-- collision of its 32-bit hashes), then within about 1 %.
--
-- A granule holds 64 rows, not 8192: a state is read whole before the WHERE is applied, and at 8192 rows a
-- granule would hold the states of dozens of agents (an agent's month of day states merged in 33 ms against
-- 9 ms with only its own rows read).
--
-- The rows stored before this migration are added first (the days through their views, created first),
-- then the views for what comes after. Migrations run before a worker consumes (stream_workers/sink.py
-- applies them at start), so nothing is stored in between. A migration interrupted half-way is safe to run
-- again: the TRUNCATEs empty what it added, and the backfill is not deduplicated (a block equal to one of
-- the first run's is added again, not dropped).

CREATE TABLE IF NOT EXISTS agent_hour_sketch
(
    agent_id          LowCardinality(String),
    hour              DateTime('UTC'),
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    payment_required  SimpleAggregateFunction(sum, UInt64),
    revenue           SimpleAggregateFunction(sum, Float64),
    latency_sum       SimpleAggregateFunction(sum, Float64),
    latency_quantiles AggregateFunction(quantilesTDigest(0.5, 0.75, 0.9, 0.95, 0.99), Float64),
    customers         AggregateFunction(uniq, String),
    first_minute      SimpleAggregateFunction(min, DateTime('UTC')),
    last_minute       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (agent_id, hour)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS agent_day_sketch
(
    agent_id          LowCardinality(String),
    day               Date,
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    payment_required  SimpleAggregateFunction(sum, UInt64),
    revenue           SimpleAggregateFunction(sum, Float64),
    latency_sum       SimpleAggregateFunction(sum, Float64),
    latency_quantiles AggregateFunction(quantilesTDigest(0.5, 0.75, 0.9, 0.95, 0.99), Float64),
    customers         AggregateFunction(uniq, String),
    first_minute      SimpleAggregateFunction(min, DateTime('UTC')),
    last_minute       SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (agent_id, day)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS agent_tool_hour_sketch
(
    agent_id          LowCardinality(String),
    tool_name         LowCardinality(String),
    hour              DateTime('UTC'),
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    payment_required  SimpleAggregateFunction(sum, UInt64),
    revenue           SimpleAggregateFunction(sum, Float64),
    latency_sum       SimpleAggregateFunction(sum, Float64),
    latency_quantiles AggregateFunction(quantilesTDigest(0.5, 0.75, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (agent_id, tool_name, hour)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS agent_tool_day_sketch
(
    agent_id          LowCardinality(String),
    tool_name         LowCardinality(String),
    day               Date,
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    payment_required  SimpleAggregateFunction(sum, UInt64),
    revenue           SimpleAggregateFunction(sum, Float64),
    latency_sum       SimpleAggregateFunction(sum, Float64),
    latency_quantiles AggregateFunction(quantilesTDigest(0.5, 0.75, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (agent_id, tool_name, day)
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 10000;

DROP VIEW IF EXISTS agent_tool_minute_mv;

DROP TABLE IF EXISTS agent_tool_minute;

TRUNCATE TABLE IF EXISTS agent_hour_sketch;

TRUNCATE TABLE IF EXISTS agent_day_sketch;

TRUNCATE TABLE IF EXISTS agent_tool_hour_sketch;

TRUNCATE TABLE IF EXISTS agent_tool_day_sketch;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_day_sketch_mv TO agent_day_sketch AS
SELECT
    agent_id,
    toDate(hour) AS day,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(payment_required) AS payment_required,
    sum(revenue) AS revenue,
    sum(latency_sum) AS latency_sum,
    quantilesTDigestMergeState(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles) AS latency_quantiles,
    uniqMergeState(customers) AS customers,
    min(first_minute) AS first_minute,
    max(last_minute) AS last_minute
FROM agent_hour_sketch
GROUP BY agent_id, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_day_sketch_mv TO agent_tool_day_sketch AS
SELECT
    agent_id,
    tool_name,
    toDate(hour) AS day,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(payment_required) AS payment_required,
    sum(revenue) AS revenue,
    sum(latency_sum) AS latency_sum,
    quantilesTDigestMergeState(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles) AS latency_quantiles
FROM agent_tool_hour_sketch
GROUP BY agent_id, tool_name, day;

INSERT INTO agent_hour_sketch SETTINGS insert_deduplicate = 0
SELECT
    agent_id,
    toStartOfHour(minute) AS hour,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(payment_required) AS payment_required,
    sum(revenue) AS revenue,
    sum(latency_sum) AS latency_sum,
    quantilesTDigestMergeState(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles) AS latency_quantiles,
    uniqMergeState(customers) AS customers,
    min(minute) AS first_minute,
    max(minute) AS last_minute
FROM agent_minute
GROUP BY agent_id, hour;

INSERT INTO agent_tool_hour_sketch SETTINGS insert_deduplicate = 0
SELECT
    agent_id,
    tool_name,
    toStartOfHour(event_time) AS hour,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    countIf(is_payment_required = 1) AS payment_required,
    sum(x402_amount) AS revenue,
    sum(response_ms) AS latency_sum,
    quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms) AS latency_quantiles
FROM request_logs
WHERE source != 'sdk_ping'
GROUP BY agent_id, tool_name, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_hour_sketch_mv TO agent_hour_sketch AS
SELECT
    agent_id,
    toStartOfHour(minute) AS hour,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(payment_required) AS payment_required,
    sum(revenue) AS revenue,
    sum(latency_sum) AS latency_sum,
    quantilesTDigestMergeState(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles) AS latency_quantiles,
    uniqMergeState(customers) AS customers,
    min(minute) AS first_minute,
    max(minute) AS last_minute
FROM agent_minute
GROUP BY agent_id, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_hour_sketch_mv TO agent_tool_hour_sketch AS
SELECT
    agent_id,
    tool_name,
    toStartOfHour(event_time) AS hour,
    count() AS requests,
    countIf(is_error = 1) AS errors,
    countIf(is_payment_required = 1) AS payment_required,
    sum(x402_amount) AS revenue,
    sum(response_ms) AS latency_sum,
    quantilesTDigestState(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms) AS latency_quantiles
FROM request_logs
WHERE source != 'sdk_ping'
GROUP BY agent_id, tool_name, hour;
