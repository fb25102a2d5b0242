-- Usage limits (entitlements; docs/limits.md) and the rollup their check reads.
--
-- limits: one row per write of a limit; the row with the highest version is the limit, and a row with
-- deleted = 1 means it was deleted. Read with argMax(..., version) per limit_id (or FINAL): merges
-- happen when they happen. quantity is exact decimal text (schemas/limits.py parses it), never a float.
-- customer_id is '' and scope 'app' for a limit on the whole app's usage.

CREATE TABLE IF NOT EXISTS limits
(
    agent_id     LowCardinality(String),
    limit_id     String,
    scope        LowCardinality(String),
    customer_id  String,
    meter        LowCardinality(String),
    unit         LowCardinality(String),
    model        String,
    period       LowCardinality(String),
    quantity     String,
    created_at   DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC'),
    version      UInt64,
    deleted      UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (agent_id, limit_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Usage per app, end customer (a report's metadata.customer_id, '' when it names none), module, model and
-- UTC day: what a customer's day or month limit has used is at most 31 rows per model of one (app, module,
-- customer) prefix. Fed like the rollups of 0002 (a repeated sink batch is dropped here too); read with sum().
CREATE TABLE IF NOT EXISTS usage_customer_day
(
    app_id       LowCardinality(String),
    module       LowCardinality(String),
    customer_id  String,
    model        LowCardinality(String),
    day          Date,
    reports      SimpleAggregateFunction(sum, UInt64),
    units        SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (app_id, module, customer_id, model, day)
SETTINGS non_replicated_deduplication_window = 10000;

-- The same per app, module, model and UTC day, every customer together: an app's own limits read at most 31
-- rows per model whatever the number of its customers.
CREATE TABLE IF NOT EXISTS usage_app_day
(
    app_id       LowCardinality(String),
    module       LowCardinality(String),
    model        LowCardinality(String),
    day          Date,
    reports      SimpleAggregateFunction(sum, UInt64),
    units        SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (app_id, module, model, day)
SETTINGS non_replicated_deduplication_window = 10000;

-- The usage stored before this migration, then the views for what comes after. Migrations run before a
-- worker consumes (stream_workers/sink.py applies them at start), so nothing is stored in between.
INSERT INTO usage_customer_day
SELECT
    app_id,
    module,
    JSONExtractString(metadata, 'customer_id') AS customer_id,
    model,
    toDate(event_time) AS day,
    count() AS reports,
    sum(usage) AS units
FROM usage_events
GROUP BY app_id, module, customer_id, model, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_customer_day_mv TO usage_customer_day AS
SELECT
    app_id,
    module,
    JSONExtractString(metadata, 'customer_id') AS customer_id,
    model,
    toDate(event_time) AS day,
    count() AS reports,
    sum(usage) AS units
FROM usage_events
GROUP BY app_id, module, customer_id, model, day;

INSERT INTO usage_app_day
SELECT app_id, module, model, toDate(event_time) AS day, count() AS reports, sum(usage) AS units
FROM usage_events
GROUP BY app_id, module, model, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_app_day_mv TO usage_app_day AS
SELECT app_id, module, model, toDate(event_time) AS day, count() AS reports, sum(usage) AS units
FROM usage_events
GROUP BY app_id, module, model, day;
