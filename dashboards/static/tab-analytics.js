/* Analytics tab: requests, errors and 402s over the range (the previous period's requests dashed), and a
 * breakdown by status class, customer, tool or protocol whose groups filter the whole page. */
import {
  $, api, change, chart, epoch, fillTable, filterParams, fmt, rangeParams, registerTab, setState, state, stepLabel,
  timeSeriesX,
} from "./core.js";

const TITLES = { status: "Status class", customer: "Customer", tool: "Tool", protocol: "Protocol" };

async function load() {
  const by = state.extra.by || "status";
  $("breakdown-by").value = by;
  const params = { ...rangeParams(), ...filterParams() };
  const [series, groups] = await Promise.all([api("series", params), api("breakdown", { ...params, by, limit: 100 })]);
  const previous = state.compare
    ? await api("series", { ...rangeParams(true), ...filterParams(), step: series.step_seconds }) : null;

  const xs = series.points.map((p) => epoch(p.t));
  const data = [xs, series.points.map((p) => p.requests), series.points.map((p) => p.errors),
    series.points.map((p) => p.payment_required)];
  const lines = [{}, { label: "Requests", stroke: "#3461d1", fill: "rgba(52,97,209,.12)", width: 2 },
    { label: "Errors", stroke: "#b3261e", width: 2 }, { label: "402", stroke: "#c77c02", width: 2 }];
  if (previous) {
    data.push(xs.map((_, i) => (previous.points[i] ? previous.points[i].requests : null)));
    lines.push({ label: "Requests, previous period", stroke: "#8a93a6", width: 1.5, dash: [6, 4] });
  }
  $("an-step").textContent = "per " + stepLabel(series.step_seconds);
  chart("chart-traffic", { scales: { x: timeSeriesX(xs) }, series: lines, empty: "no requests in this range" }, data,
    series.points.map((p) => ({ t: p.t, requests: p.requests, errors: p.errors, payment_required: p.payment_required })));

  $("breakdown-key").textContent = TITLES[by];
  const total = groups.groups.reduce((n, g) => n + g.requests, 0);
  const rows = groups.groups.map((g) => ({ ...g, share: total ? g.requests / total : 0,
    change: change(g.requests, g.previous_requests) }));
  const drill = (row) => setState({ filters: { [by]: row.key } });
  fillTable("table-breakdown", rows, [["key", (v) => (v === "" ? "(none)" : v), 0, drill], ["requests", fmt.int, 1],
    ["share", fmt.pct, 1], ["previous_requests", fmt.int, 1],
    ["change", (v) => (v === null ? "new" : (v > 0 ? "+" : "") + v.toFixed(1) + "%"), 1], ["errors", fmt.int, 1],
    ["error_rate", fmt.pct, 1], ["payment_required", fmt.int, 1], ["revenue", fmt.usd, 1],
    ["avg_latency_ms", fmt.ms, 1], ["p95_latency_ms", fmt.ms, 1]]);
}

registerTab("analytics", load);
$("breakdown-by").addEventListener("change", () => setState({ extra: { by: $("breakdown-by").value } }));
