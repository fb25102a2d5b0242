/* Overview tab: the range's totals with the change against the previous period, requests over time
 * (the previous period dashed), and the all-time totals of the agent. */
import {
  $, api, card, change, changeText, chart, epoch, filterParams, fmt, range, rangeParams, registerTab, state, stepLabel,
  timeSeriesX,
} from "./core.js";

// [field, label, format, a rise is good?]
export const CARDS = [
  ["requests", "Requests", fmt.int, true], ["errors", "Errors", fmt.int, false],
  ["error_rate", "Error rate", fmt.pct, false], ["payment_required", "Answered 402", fmt.int, null],
  ["revenue", "Revenue (USDC)", fmt.usd, true], ["paid_requests", "Paid requests", fmt.int, true],
  ["customers", "Customers", fmt.int, true], ["avg_latency_ms", "Avg latency (ms)", fmt.ms, false],
  ["p95_latency_ms", "p95 latency (ms)", fmt.ms, false],
];

/** The summary cards into #container, ids prefix + field; the change line only when comparing. Without a
 * request in the range a latency or a rate is "—", not 0. */
export function summaryCards(container, prefix, summary, cards) {
  const box = $(container);
  box.replaceChildren();
  const none = summary.current.requests === 0;
  for (const [key, label, f, riseIsGood] of cards) {
    const c = !state.compare ? null : key in summary.change_pct ? summary.change_pct[key]
      : change(summary.current[key], summary.previous[key]);
    const worse = c === null || c === undefined || c === 0 || riseIsGood === null ? null : (riseIsGood ? c < 0 : c > 0);
    const text = none && /latency|_rate$/.test(key) ? "—" : f(summary.current[key]);
    box.append(card(prefix + key, label, text, summary.current[key],
      state.compare ? changeText(c) || "no traffic in the previous period" : null, worse));
  }
}

async function load() {
  const params = { ...rangeParams(), ...filterParams() };
  const [summary, series, stats] = await Promise.all([api("summary", params), api("series", params), api("stats")]);
  const previous = state.compare
    ? await api("series", { ...rangeParams(true), ...filterParams(), step: series.step_seconds }) : null;
  summaryCards("ov-cards", "ov-", summary, CARDS);

  const r = range();
  const shift = (r.to - r.from) / 1000;
  const xs = series.points.map((p) => epoch(p.t));
  const data = [xs, series.points.map((p) => p.requests)];
  const lines = [{}, { label: "Requests", stroke: "#3461d1", fill: "rgba(52,97,209,.12)", width: 2 }];
  if (previous) {
    data.push(xs.map((_, i) => (previous.points[i] ? previous.points[i].requests : null)));
    lines.push({ label: "Previous period", stroke: "#8a93a6", width: 1.5, dash: [6, 4] });
  }
  $("ov-step").textContent = "per " + stepLabel(series.step_seconds)
    + (previous ? "; dashed: the previous period, drawn " + stepLabel(shift).replace(/^(?=[a-z])/, "one ") + " later" : "");
  chart("chart-overview", { scales: { x: timeSeriesX(xs) }, series: lines, empty: "no requests in this range" }, data,
    series.points.map((p, i) => ({ t: p.t, requests: p.requests,
      previous: previous && previous.points[i] ? previous.points[i].requests : null })));

  const all = $("ov-alltime");
  all.replaceChildren("All time: ",
    ...[["total_requests", fmt.int, " requests, "], ["revenue", fmt.usd, " USDC revenue, "],
      ["payment_required", fmt.int, " answered 402; last request "]].flatMap(([k, f, after]) => [
      Object.assign(document.createElement("span"), { id: "ov-all-" + k, textContent: f(stats[k]) }), after]),
    Object.assign(document.createElement("span"), { id: "ov-all-last", textContent: fmt.time(stats.last_request_at) || "never" }),
    " UTC (all-time numbers do not follow the filters).");
}

registerTab("overview", load);
