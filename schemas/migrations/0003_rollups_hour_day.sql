-- Hour and day rollups of request_logs, as aggregate projections of the raw table itself, so that a
-- view over a long range reads a few rows per agent and hour or day instead of every request
-- (schemas/queries/README.md says which view reads which; docs/capacity.md has the figures).
--
-- Why projections and not more materialized views like 0002's: a projection is stored inside each
-- data part of request_logs, written by the same insert, merged by the same merges and dropped with
-- the part. So it is exact by construction: an insert the sink retries with its deduplication token
-- is dropped together with its projection, and a part whose projection is missing (a part written
-- before this migration, until MATERIALIZE PROJECTION below has rebuilt it) is answered from its raw
-- rows by the engine, never skipped and never counted twice. The backfill of an existing
-- installation is therefore MATERIALIZE PROJECTION: a mutation that rebuilds the projection of every
-- old part from that part's rows, safe to run again (a migration interrupted half-way repeats it).
--
-- The views ask for the whole hours or days inside a range with conditions on the projections' own
-- keys (toStartOfHour(event_time), toDate(event_time)) and read the cut hours at the edges from the
-- raw rows. Every key a filter can name is a key here (tool_name, protocol, and status_code from which
-- the status class is computed) except the customer: a customer filter makes a view read raw rows
-- (correct, slower; the customers projection answers the customer views). Percentiles and distinct
-- counts of values are not sums and are never read from here.
--
-- The latency histogram is kept as cumulative counts: requests at or above each bucket's lower bound
-- (schemas/queries/latency_histogram.sql takes the differences). Revenue is summed both as a float
-- (the views' revenue) and as the exact decimal of each amount's shortest text (revenue_by_*.sql).

ALTER TABLE request_logs ADD PROJECTION IF NOT EXISTS agent_hour
(
    SELECT
        agent_id,
        toStartOfHour(event_time),
        source,
        tool_name,
        protocol,
        status_code,
        count(),
        countIf(x402_amount > 0),
        sum(x402_amount),
        sum(toDecimal256OrZero(toString(x402_amount), 30)),
        sum(response_ms),
        countIf(response_ms >= 10.),
        countIf(response_ms >= 25.),
        countIf(response_ms >= 50.),
        countIf(response_ms >= 100.),
        countIf(response_ms >= 250.),
        countIf(response_ms >= 500.),
        countIf(response_ms >= 1000.),
        countIf(response_ms >= 2500.),
        countIf(response_ms >= 5000.),
        countIf(response_ms >= 10000.)
    GROUP BY agent_id, toStartOfHour(event_time), source, tool_name, protocol, status_code
);

ALTER TABLE request_logs ADD PROJECTION IF NOT EXISTS agent_day
(
    SELECT
        agent_id,
        toDate(event_time),
        source,
        tool_name,
        protocol,
        status_code,
        count(),
        countIf(x402_amount > 0),
        sum(x402_amount),
        sum(toDecimal256OrZero(toString(x402_amount), 30)),
        sum(response_ms),
        countIf(response_ms >= 10.),
        countIf(response_ms >= 25.),
        countIf(response_ms >= 50.),
        countIf(response_ms >= 100.),
        countIf(response_ms >= 250.),
        countIf(response_ms >= 500.),
        countIf(response_ms >= 1000.),
        countIf(response_ms >= 2500.),
        countIf(response_ms >= 5000.),
        countIf(response_ms >= 10000.)
    GROUP BY agent_id, toDate(event_time), source, tool_name, protocol, status_code
);

ALTER TABLE request_logs ADD PROJECTION IF NOT EXISTS customer_day
(
    SELECT
        agent_id,
        toDate(event_time),
        source,
        customer_id,
        count(),
        countIf(status_code >= 400 AND status_code != 402),
        countIf(x402_amount > 0),
        sum(x402_amount),
        sum(toDecimal256OrZero(toString(x402_amount), 30)),
        sum(response_ms),
        min(event_time),
        max(event_time)
    GROUP BY agent_id, toDate(event_time), source, customer_id
);

ALTER TABLE request_logs MATERIALIZE PROJECTION agent_hour;

ALTER TABLE request_logs MATERIALIZE PROJECTION agent_day;

ALTER TABLE request_logs MATERIALIZE PROJECTION customer_day;
