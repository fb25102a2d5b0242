/* Meterline dashboard core: the URL state, API calls, formatting, tables and charts every tab shares.
 *
 * The page's state (tab, time range, comparison, filters, and keys a tab owns such as the logs search)
 * lives in the query string, so a URL shows the same view to whoever opens it; the token never does
 * (it comes from the fragment or the login form and stays in sessionStorage). Each tab is a module
 * (tab-<name>.js) that calls registerTab(name, load); load(ctx) runs when the tab is shown and the
 * state changed since it last ran. Data is written with textContent only (never innerHTML).
 * Every chart container gets data-points (the numbers it plots), data-painted (coloured canvas pixels
 * after drawing), data-x-ticks / data-y-ticks (the axis labels drawn) and data-rendered="1", so tests and
 * people can check what is shown. */
/* global uPlot */

export const TOKEN_KEY = "meterline.token";
export const $ = (id) => document.getElementById(id);

const segments = location.pathname.replace(/\/+$/, "").split("/");
/** The agent of /dashboard/<agent>; null on /dashboard/ (the agents list). */
export const agent = segments.length > 2 ? decodeURIComponent(segments[2]) : null;

// --- state in the URL ----------------------------------------------------------------------------

export const PRESETS = {
  "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 864e5, "30d": 30 * 864e5, "90d": 90 * 864e5,
};
export const FILTERS = ["customer", "tool", "status", "protocol"];
export const STATUS_CLASSES = ["2xx", "3xx", "4xx", "5xx", "402"];
const CORE_KEYS = ["tab", "range", "from", "to", "compare", ...FILTERS];

/** tab, range (a preset or "custom" with from/to), compare, filters, and `extra`: keys the tabs own. */
export const state = { tab: "overview", range: "24h", from: "", to: "", compare: true, filters: {}, extra: {} };
let token = null;
let generation = 0;
let resolved = null;

function readUrl() {
  const q = new URLSearchParams(location.search);
  state.tab = q.get("tab") || "overview";
  state.from = q.get("from") || "";
  state.to = q.get("to") || "";
  state.range = q.get("range") || (state.from && state.to ? "custom" : "24h");
  if (state.range !== "custom" && !PRESETS[state.range]) state.range = "24h";
  state.compare = q.get("compare") !== "0";
  state.filters = {};
  for (const f of FILTERS) if (q.get(f)) state.filters[f] = q.get(f);
  state.extra = {};
  for (const [k, v] of q) if (!CORE_KEYS.includes(k) && v) state.extra[k] = v;
}

function writeUrl(push) {
  const q = new URLSearchParams();
  if (state.tab !== "overview") q.set("tab", state.tab);
  q.set("range", state.range);
  if (state.range === "custom") { q.set("from", state.from); q.set("to", state.to); }
  if (!state.compare) q.set("compare", "0");
  for (const f of FILTERS) if (state.filters[f]) q.set(f, state.filters[f]);
  for (const [k, v] of Object.entries(state.extra)) if (v) q.set(k, v);
  const url = location.pathname + "?" + q.toString();
  if (url !== location.pathname + location.search) history[push ? "pushState" : "replaceState"](null, "", url);
}

/** The range of the current view: {from, to, prevFrom, prevTo} as Dates, fixed per state change. */
export function range() {
  if (!resolved) {
    let from, to;
    if (state.range === "custom") {
      from = new Date(state.from);
      to = new Date(state.to);
    } else {
      to = new Date(Math.floor(Date.now() / 1000) * 1000);
      from = new Date(to - PRESETS[state.range]);
    }
    resolved = { from, to, prevFrom: new Date(from - (to - from)), prevTo: from };
  }
  return resolved;
}

export const iso = (d) => d.toISOString().replace(".000Z", "Z");
/** {from, to} query parameters of the range (or of the previous period). */
export function rangeParams(previous = false) {
  const r = range();
  return previous ? { from: iso(r.prevFrom), to: iso(r.prevTo) } : { from: iso(r.from), to: iso(r.to) };
}
/** The active filters as query parameters. */
export const filterParams = () => ({ ...state.filters });

const listeners = [];
/** fn() runs after every state change (the controls follow the state with it). */
export const onState = (fn) => listeners.push(fn);

/** Change the state (a patch of tab/range/from/to/compare/filters/extra), the URL and what is shown. */
export function setState(patch, { push = true, reload = true } = {}) {
  const { filters, extra, ...rest } = patch;
  const onlyTab = Object.keys(patch).length === 1 && "tab" in patch;
  Object.assign(state, rest);
  if (filters) state.filters = Object.fromEntries(Object.entries({ ...state.filters, ...filters }).filter(([, v]) => v));
  if (extra) state.extra = Object.fromEntries(Object.entries({ ...state.extra, ...extra }).filter(([, v]) => v));
  writeUrl(push);
  if (!reload) return Promise.resolve();
  if (!onlyTab) { generation++; resolved = null; }
  for (const fn of listeners) fn();
  return showTab(state.tab);
}

/** The Requests tab, narrowed by `filters` (e.g. {customer: "c-1"}): the click-through from a row. */
export const toRequests = (filters) => setState({ tab: "observability", filters, extra: { request: "", q: "" } });

/** A new "now" for a preset range, and a reload of the tab shown. */
export function refresh() {
  generation++;
  resolved = null;
  for (const fn of listeners) fn();
  return showTab(state.tab);
}

// --- API -----------------------------------------------------------------------------------------

export class AuthError extends Error {}
export class NotFound extends Error {}

export const setToken = (t) => { token = t; };
export const hasToken = () => Boolean(token);

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

/** GET an absolute API path (/v1/...) with the token; JSON back. */
export async function apiGet(path, params) {
  const resp = await fetch(path + query(params), { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  if (resp.status === 401) throw new AuthError("Unknown token");
  if (resp.status === 403) throw new AuthError("This token may not read agent " + agent);
  if (resp.status === 404) throw new NotFound("not found");
  if (!resp.ok) {
    let detail = "HTTP " + resp.status;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(path.split("/").pop() + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
  }
  return resp.json();
}

/** GET /v1/agents/<agent>/<path> with the token, as a Response (for files such as CSV). */
export const apiFetch = (path, params) => fetch(apiUrl(path, params), { headers: { Authorization: "Bearer " + token } });

/** GET /v1/agents/<agent>/<path> with params. */
export const api = (path, params) => apiGet("/v1/agents/" + encodeURIComponent(agent) + "/" + path, params);
export const apiUrl = (path, params) => "/v1/agents/" + encodeURIComponent(agent) + "/" + path + query(params);

// --- formatting (the one place numbers get their look on the page) --------------------------------

const SI = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
/** A short number for an axis: 1.2M, 950k, 12.5k, 3, 0.25. */
export function si(v) {
  if (v === null || v === undefined || !isFinite(v)) return "";
  const a = Math.abs(v);
  for (const [n, s] of SI) if (a >= n) return +(v / n).toPrecision(3) + s;
  return String(+v.toPrecision(3));
}

export const fmt = {
  int: (v) => Number(v).toLocaleString("en-US"),
  ms: (v) => Number(v).toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 }),
  usd: (v) => Number(v).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 }),
  pct: (v) => (Number(v) * 100).toFixed(2) + "%",
  time: (v) => (v ? String(v).replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") : ""),
  text: (v) => (v === null || v === undefined ? "" : String(v)),
  si,
};

/** "+12.5% vs previous period" (null when there is nothing to compare with). */
export function changeText(change) {
  if (change === null || change === undefined) return null;
  return (change > 0 ? "+" : "") + change.toFixed(1) + "% vs previous period";
}

/** Relative change in percent, as the API computes it (null without a previous value). */
export const change = (now, before) => (before ? ((now - before) / before) * 100 : null);

// --- DOM helpers -----------------------------------------------------------------------------------

/** document.createElement with properties, dataset and children (text children become text nodes). */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node[k] = v;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** One card: a label, the value as shown, its raw value in data-value, and the change line. */
export function card(id, label, text, value, changeLine, worse) {
  return el("div", { className: "card" }, el("h3", { textContent: label }),
    el("output", { id, textContent: text, dataset: { value: String(value) } }),
    changeLine ? el("div", { className: "change" + (worse === null || worse === undefined ? "" : worse ? " up" : " down"),
      textContent: changeLine }) : null);
}

/** Fill a table's body. cols: [key, format, numeric?, onClick?(row)]; a clickable cell is a link. An empty
 * table says so under its header (a caption, not a row). */
export function fillTable(id, rows, cols) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  $(id).deleteCaption();
  if (!rows.length) $(id).createCaption().textContent = "nothing to show for this selection";
  for (const row of rows) {
    const tr = body.insertRow();
    for (const [key, f, numeric, onClick] of cols) {
      const td = tr.insertCell();
      let text = f(row[key]);
      if (row.estimated && /^(p\d+_latency_ms|customers)$/.test(key)) {  // a busy agent's long range: sketches
        text = "≈ " + text;
        td.title = "an estimate (percentiles: t-digest, within about 1 % of rank; customers: uniq): "
          + "this range is read from hour and day sketches";
      }
      if (onClick && row[key] !== "" && row[key] !== null) {
        td.append(el("a", { href: "#", className: "drill", textContent: text,
          onclick: (ev) => { ev.preventDefault(); onClick(row); } }));
      } else {
        td.textContent = text;
      }
      td.dataset.value = row[key] === null || row[key] === undefined ? "" : String(row[key]);
      if (numeric) td.className = "num";
    }
  }
}

// --- charts --------------------------------------------------------------------------------------

const charts = {};

// [coloured pixels, pixels of the first series' colour] on the chart's canvas
function paintedPixels(u, rgb) {
  const c = u.ctx.canvas;
  const img = u.ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0, series = 0;
  for (let i = 0; i < img.length; i += 4) {
    if (img[i + 3] === 0) continue;
    n++;
    if (Math.abs(img[i] - rgb[0]) < 12 && Math.abs(img[i + 1] - rgb[1]) < 12 && Math.abs(img[i + 2] - rgb[2]) < 12) series++;
  }
  return [n, series];
}

const hexRgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
const chartWidth = (el) => Math.max(320, el.clientWidth - 16);

/** A value in a chart's legend: blank without one, SI above 10,000, else up to four decimals. */
const legendValue = (u, v) => (v === null || v === undefined ? ""
  : Math.abs(v) >= 1e4 ? si(v) : String(+Number(v).toFixed(4)));

/** A y axis with SI labels, as wide as its longest label. */
export function siAxis(extra) {
  return {
    values: (u, ticks) => ticks.map(si),
    size: (u, values) => 18 + 7.5 * Math.max(2, ...(values || []).map((v) => String(v).length)),
    ...extra,
  };
}

const pad = (n) => String(n).padStart(2, "0");
/** Tick labels of a UTC time axis: 24-hour times, the date where it changes, months for long ranges. */
function timeValues(u, ticks, axisIdx, foundSpace, incr) {
  let lastDay = "";
  return ticks.map((ts, i) => {
    const d = new Date(ts * 1000);
    const ymd = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
    if (incr >= 28 * 86400) return ymd.slice(0, 7);
    if (incr >= 86400) return i === 0 ? ymd : ymd.slice(5);
    const hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + (incr < 60 ? ":" + pad(d.getUTCSeconds()) : "");
    const day = ymd !== lastDay;
    lastDay = ymd;
    return day ? hm + "\n" + ymd.slice(5) : hm;
  });
}

/** The x axis of a UTC time chart. */
export const timeAxis = (extra) => ({ values: timeValues, space: 70, ...extra });

/** A y scale from 0 to a little above the largest value (counts and amounts are never below 0). */
export const zeroScale = (extra) => ({ range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1], ...extra });

export const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");

/** Draw a uPlot chart into #id across its container's width; `points` is what the chart shows. */
/** uPlot's ``points.filter`` for a line: the indices of the values with no value on either side, which a
 * line cannot draw (a latency chart whose range holds one busy bucket drew nothing at all). */
function isolated(u, seriesIdx, show) {
  if (show) return null;  // uPlot draws every point anyway
  const ys = u.data[seriesIdx];
  const alone = [];
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] !== null && ys[i] !== undefined && (ys[i - 1] === null || ys[i - 1] === undefined)
        && (ys[i + 1] === null || ys[i + 1] === undefined)) alone.push(i);
  }
  return alone.length ? alone : null;
}

export function chart(id, opts, data, points) {
  const node = $(id);
  if (charts[id]) charts[id].destroy();
  node.replaceChildren();
  node.dataset.points = JSON.stringify(points);
  node.dataset.rendered = "0";
  opts.width = chartWidth(node);
  opts.height = opts.height || 280;
  opts.tzDate = opts.tzDate || tzDate;
  opts.axes = opts.axes || [{}, siAxis()];
  if (opts.scales.x.time !== false) {
    opts.axes[0] = { ...timeAxis(), ...opts.axes[0] };
    opts.series[0] = { value: (u, ts) => (ts === null || ts === undefined ? ""
      : fmt.time(iso(new Date(ts * 1000))).slice(0, 16) + " UTC"), ...opts.series[0] };
  }
  for (const s of opts.series.slice(1)) {
    const scale = s.scale || "y";
    opts.scales[scale] = opts.scales[scale] || zeroScale();
    if (s.dash) s.points = { show: false };
    if (!s.paths) s.points = { filter: isolated, size: 7, fill: s.stroke, ...s.points };  // lines: a lone value shows as a dot
    s.value = s.value || legendValue;  // the legend shows a value under the cursor, not "--" elsewhere
  }
  const rgb = hexRgb(opts.series[1].stroke);
  opts.hooks = { draw: [(u) => {
    const [all, series] = paintedPixels(u, rgb);
    node.dataset.painted = String(all);
    node.dataset.seriesPixels = String(series);
    node.dataset.xTicks = JSON.stringify(u.axes[0]._values || []);
    node.dataset.yTicks = JSON.stringify(u.axes[1]._values || []);
    node.dataset.width = String(u.width);
    node.dataset.rendered = "1";
  }] };
  charts[id] = new uPlot(opts, data, node);
  if (data.slice(1).every((ys) => ys.every((y) => !y))) {  // an empty chart says why it is empty
    node.append(el("div", { className: "chart-empty", textContent: opts.empty || "nothing in this range" }));
  }
}

window.addEventListener("resize", () => {
  for (const [id, u] of Object.entries(charts)) {
    const node = $(id);
    if (node && node.clientWidth) u.setSize({ width: chartWidth(node), height: u.height });
  }
});

/** The x scale of a time series: UTC, exactly from its first bucket to the end of the range. */
export function timeSeriesX(xs) {
  const r = range();
  const from = Math.min(r.from / 1000, xs.length ? xs[0] : Infinity);
  return { time: true, range: () => [from, r.to / 1000] };
}

const UNITS = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
/** 900 -> "15 minutes", 3600 -> "hour", 86400 -> "day". */
export function stepLabel(seconds) {
  for (const [n, name] of UNITS) {
    if (seconds % n === 0) return seconds === n ? name : seconds / n + " " + name + "s";
  }
  return seconds + " seconds";
}

export const bars = () => uPlot.paths.bars({ size: [0.7, 60] });
export const epoch = (d) => Date.parse(d.length === 10 ? d + "T00:00:00Z" : d) / 1000;

// --- tabs ----------------------------------------------------------------------------------------

const tabs = new Map();

/** Register a tab's loader: load(ctx) fills section#tab-<name>; ctx is this module's exports. */
export function registerTab(name, load) {
  tabs.set(name, { load, generation: -1 });
}

export function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

let onAuthError = () => {};
export const whenAuthFails = (fn) => { onAuthError = fn; };

/** Run fn, showing its failure in the status line (or the login form for a refused token). */
export async function guarded(fn) {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AuthError) onAuthError(err.message);
    else setStatus(err.message, true);
    throw err;
  }
}

/** Show tab `name` and load it if the state changed since it was loaded. */
export async function showTab(name) {
  if (!tabs.has(name)) name = "overview";
  state.tab = name;
  document.body.dataset.tab = name;  // the stylesheet hides controls a tab does not use
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".panel")) s.classList.toggle("active", s.id === "tab-" + name);
  const tab = tabs.get(name);
  if (!token || tab.generation === generation) return;
  const mine = generation;
  document.body.dataset.state = "loading";
  setStatus("loading…");
  try {
    await guarded(() => tab.load());
  } catch (err) {
    if (document.body.dataset.state !== "login") document.body.dataset.state = "error";
    return;
  }
  if (mine !== generation || state.tab !== name) return;  // a newer load owns the status
  tab.generation = mine;
  setStatus("updated " + new Date().toISOString().slice(11, 19) + " UTC");
  document.body.dataset.state = "ready";
}

/** Reload the tab shown without changing the state (e.g. a periodic refresh of the logs). */
export async function reloadTab(name) {
  const tab = tabs.get(name);
  if (tab && token) await guarded(() => tab.load());
}

readUrl();
window.addEventListener("popstate", () => {
  readUrl();
  generation++;
  resolved = null;
  for (const fn of listeners) fn();
  showTab(state.tab);
});
