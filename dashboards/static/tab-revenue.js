/* Revenue tab: x402 revenue over the range (the previous period dashed) with its change, per day/week/month,
 * by tool and per customer; a tool or customer leads to its requests. */
import {
  $, api, bars, changeText, chart, epoch, fillTable, filterParams, fmt, rangeParams, registerTab, setState, state,
  stepLabel, timeSeriesX, toRequests,
} from "./core.js";

async function load() {
  const period = state.extra.period || "day";
  $("revenue-period").value = period;
  const params = { ...rangeParams(), ...filterParams() };
  const [r, series, summary] = await Promise.all([api("revenue", { ...params, period }), api("series", params),
    state.compare ? api("summary", params) : null]);
  const previous = state.compare
    ? await api("series", { ...rangeParams(true), ...filterParams(), step: series.step_seconds }) : null;
  $("revenue-total").textContent = fmt.usd(r.total_amount) + " USDC";
  $("revenue-total").dataset.value = String(r.total_amount);
  $("revenue-change").textContent = summary
    ? changeText(summary.change_pct.revenue) || "no revenue in the previous period" : "";
  fillTable("table-revenue-periods", r.series, [["period_start", fmt.text], ["amount", fmt.usd, 1],
    ["paid_requests", fmt.int, 1]]);
  fillTable("table-revenue-tools", r.by_tool, [["tool_name", (v) => v || "(none)", 0,
    (row) => toRequests({ tool: row.tool_name })], ["amount", fmt.usd, 1], ["paid_requests", fmt.int, 1]]);
  fillTable("table-revenue-customers", r.by_customer, [["customer_id", (v) => v || "(none)", 0,
    (row) => toRequests({ customer: row.customer_id })], ["amount", fmt.usd, 1], ["paid_requests", fmt.int, 1]]);

  const xs = series.points.map((p) => epoch(p.t));
  const data = [xs, series.points.map((p) => p.revenue || null)];  // no bar at all where nothing was paid
  const lines = [{}, { label: "USDC", stroke: "#1e7b34", fill: "rgba(30,123,52,.35)", paths: bars(),
    points: { show: false } }];
  if (previous) {
    data.push(xs.map((_, i) => (previous.points[i] ? previous.points[i].revenue : null)));
    lines.push({ label: "previous period", stroke: "#8a93a6", width: 1.5, dash: [6, 4] });
  }
  $("revenue-step").textContent = "USDC per " + stepLabel(series.step_seconds) + " (x402 payments)";
  chart("chart-revenue", { scales: { x: timeSeriesX(xs) }, series: lines, empty: "no x402 payments in this range" }, data,
    series.points.map((p) => ({ t: p.t, revenue: p.revenue })));
}

registerTab("revenue", load);
$("revenue-period").addEventListener("change", () => setState({ extra: { period: $("revenue-period").value } }));
