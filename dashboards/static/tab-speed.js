/* Speed Insights tab: latency percentiles of the range with the change against the previous period, the
 * latency distribution, and latency over time. */
import {
  $, api, bars, chart, epoch, filterParams, fmt, rangeParams, registerTab, si, siAxis, stepLabel, timeSeriesX,
} from "./core.js";
import { summaryCards } from "./tab-overview.js";

const CARDS = [
  ["p50_latency_ms", "p50 ms", fmt.ms, false], ["p75_latency_ms", "p75 ms", fmt.ms, false],
  ["p90_latency_ms", "p90 ms", fmt.ms, false], ["p95_latency_ms", "p95 ms", fmt.ms, false],
  ["p99_latency_ms", "p99 ms", fmt.ms, false], ["avg_latency_ms", "Average ms", fmt.ms, false],
  ["successes", "Successes", fmt.int, true], ["errors", "Errors", fmt.int, false],
  ["requests_per_minute", "Requests / min", fmt.ms, true],
];

const short = (ms) => (ms >= 1000 ? ms / 1000 + " s" : ms + " ms");
const msValue = (u, v) => (v === null || v === undefined ? "" : fmt.ms(v));  // in the legend, as on the cards
/** A latency axis label: "250 ms", "1.2 s" (never "1.2k ms"). */
const msTick = (ms) => (ms >= 1000 ? si(ms / 1000) + " s" : si(ms) + " ms");
/** "0–10 ms", "1–2.5 s", "≥ 10 s": one label per bucket. */
export function bucketLabel(b) {
  if (!b.upper_ms) return "≥ " + short(b.lower_ms);
  if (b.lower_ms >= 1000) return b.lower_ms / 1000 + "–" + short(b.upper_ms);
  if (b.upper_ms >= 1000) return short(b.lower_ms) + " – " + short(b.upper_ms);
  return b.lower_ms + "–" + short(b.upper_ms);
}

async function load() {
  const params = { ...rangeParams(), ...filterParams() };
  const [p, series] = await Promise.all([api("performance", params), api("series", params)]);
  summaryCards("perf-cards", "perf-", p, CARDS);

  const h = p.histogram;
  const labels = h.map(bucketLabel);
  chart("chart-latency", {
    scales: { x: { time: false, range: () => [-0.5, h.length - 0.5] } },
    axes: [{
      splits: () => h.map((_, i) => i),
      // every label when there is room for it, else every other one
      values: (u, ticks) => {
        const room = u.bbox.width / devicePixelRatio / Math.max(1, h.length);
        return ticks.map((t, i) => (room >= 72 || i % 2 === 0 ? labels[t] || "" : ""));
      },
      label: "response time",
    }, siAxis({ label: "requests" })],
    series: [{ label: "response time", value: (u, i) => (i === null ? "" : labels[i] || "") },
      { label: "Requests", stroke: "#3461d1", fill: "rgba(52,97,209,.4)", paths: bars(), points: { show: false },
        value: (u, v) => fmt.int(v || 0) }],
    empty: "no requests in this range",
  }, [h.map((_, i) => i), h.map((b) => b.requests || null)],  // an empty bucket draws no bar
  h.map((b, i) => ({ bucket: labels[i], lower_ms: b.lower_ms, upper_ms: b.upper_ms, requests: b.requests })));

  const xs = series.points.map((r) => epoch(r.t));
  $("sp-step").textContent = "per " + stepLabel(series.step_seconds);
  const est = series.points.some((r) => r.estimated) ? " (≈ t-digest)" : "";  // a long range of a busy agent
  chart("chart-hourly", {
    scales: { x: timeSeriesX(xs), ms: {} },
    series: [{}, { label: "p95 ms" + est, stroke: "#c77c02", width: 2, scale: "ms", value: msValue },
      { label: "p50 ms" + est, stroke: "#3461d1", width: 2, scale: "ms", value: msValue },
      { label: "avg ms", stroke: "#5a6478", width: 1, dash: [4, 3], scale: "ms", value: msValue }],
    axes: [{}, siAxis({ scale: "ms", label: "response time", values: (u, ticks) => ticks.map(msTick) })],
    empty: "no requests in this range",
  }, [xs, ...["p95_latency_ms", "p50_latency_ms", "avg_latency_ms"].map(
    (k) => series.points.map((r) => (r.requests ? r[k] : null)))],  // a bucket without requests has no latency, not 0 ms
  series.points.map((r) => ({ t: r.t, requests: r.requests, p50_latency_ms: r.p50_latency_ms,
    p95_latency_ms: r.p95_latency_ms })));
}

registerTab("speed", load);
