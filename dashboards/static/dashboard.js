/* Meterline dashboard page: fetches the read API and renders tables and uPlot charts.
 * Every chart container gets data-points (the numbers it plots), data-painted (coloured canvas
 * pixels after drawing) and data-rendered="1", so tests and people can check what is shown.
 * Data is written with textContent only (never innerHTML). */
(function () {
  "use strict";
  const TOKEN_KEY = "meterline.token";
  const agent = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let token = null;

  function takeToken() {
    if (location.hash.startsWith("#token=")) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice(7)));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  class AuthError extends Error {}

  async function api(path) {
    const resp = await fetch("/v1/agents/" + encodeURIComponent(agent) + "/" + path,
      { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) throw new AuthError(resp.status === 401
      ? "Unknown token" : "This token may not read agent " + agent);
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
    return resp.json();
  }

  const fmt = {
    int: (v) => Number(v).toLocaleString("en-US"),
    ms: (v) => Number(v).toFixed(1),
    usd: (v) => Number(v).toFixed(4),
    pct: (v) => (Number(v) * 100).toFixed(2) + "%",
    time: (v) => (v ? String(v).replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") : ""),
    text: (v) => (v === null || v === undefined ? "" : String(v)),
  };

  function fillTable(id, rows, cols) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const [key, f, numeric] of cols) {
        const td = tr.insertCell();
        td.textContent = f(row[key]);
        td.dataset.value = row[key] === null || row[key] === undefined ? "" : String(row[key]);
        if (numeric) td.className = "num";
      }
    }
  }

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

  function chart(id, opts, data, points) {
    const el = $(id);
    if (charts[id]) charts[id].destroy();
    el.replaceChildren();
    el.dataset.points = JSON.stringify(points);
    el.dataset.rendered = "0";
    opts.width = opts.width || 840;
    opts.height = opts.height || 260;
    const rgb = hexRgb(opts.series[1].stroke);
    opts.hooks = { draw: [(u) => {
      const [all, series] = paintedPixels(u, rgb);
      el.dataset.painted = String(all);
      el.dataset.seriesPixels = String(series);
      el.dataset.rendered = "1";
    }] };
    charts[id] = new uPlot(opts, data, el);
  }

  const bars = () => uPlot.paths.bars({ size: [0.7, 60] });
  const epoch = (d) => Date.parse(d.length === 10 ? d + "T00:00:00Z" : d) / 1000;

  async function loadOverview() {
    const s = await api("stats");
    const formats = { revenue: fmt.usd, avg_latency_ms: fmt.ms, error_rate: fmt.pct };
    for (const [key, value] of Object.entries(s)) {
      const el = $("ov-" + key);
      if (!el) continue;
      el.textContent = (formats[key] || fmt.int)(value);
      el.dataset.value = String(value);
    }
  }

  async function loadDaily() {
    const { days } = await api("stats/daily?days=" + $("daily-days").value);
    fillTable("table-daily", days.slice().reverse(), [["day", fmt.text], ["requests", fmt.int, 1],
      ["errors", fmt.int, 1], ["revenue", fmt.usd, 1], ["customers", fmt.int, 1],
      ["avg_latency_ms", fmt.ms, 1], ["p95_latency_ms", fmt.ms, 1]]);
    chart("chart-daily", {
      title: "Requests per day", scales: { x: { time: true } },
      series: [{}, { label: "Requests", stroke: "#3461d1", fill: "rgba(52,97,209,.15)", width: 2 },
        { label: "Errors", stroke: "#b3261e", width: 2 }],
    }, [days.map((d) => epoch(d.day)), days.map((d) => d.requests), days.map((d) => d.errors)],
    days.map((d) => ({ day: d.day, requests: d.requests, errors: d.errors })));
  }

  async function loadCustomers() {
    const { customers } = await api("customers?days=30&limit=100");
    fillTable("table-customers", customers, [["customer_id", fmt.text], ["requests", fmt.int, 1],
      ["revenue", fmt.usd, 1], ["avg_latency_ms", fmt.ms, 1], ["error_rate", fmt.pct, 1],
      ["first_seen", fmt.time], ["last_seen", fmt.time]]);
  }

  async function loadTools() {
    const { tools } = await api("tools?days=30&limit=100");
    fillTable("table-tools", tools, [["tool_name", fmt.text], ["requests", fmt.int, 1],
      ["p95_latency_ms", fmt.ms, 1], ["error_rate", fmt.pct, 1], ["revenue", fmt.usd, 1]]);
  }

  async function loadRevenue() {
    const r = await api("revenue?days=90&period=" + $("revenue-period").value);
    $("revenue-total").textContent = fmt.usd(r.total_amount) + " USDC";
    $("revenue-total").dataset.value = String(r.total_amount);
    fillTable("table-revenue-tools", r.by_tool, [["tool_name", fmt.text], ["amount", fmt.usd, 1],
      ["paid_requests", fmt.int, 1]]);
    fillTable("table-revenue-customers", r.by_customer, [["customer_id", fmt.text], ["amount", fmt.usd, 1],
      ["paid_requests", fmt.int, 1]]);
    chart("chart-revenue", {
      title: "Revenue per " + r.period, scales: { x: { time: true } },
      series: [{}, { label: "USDC", stroke: "#1e7b34", fill: "rgba(30,123,52,.3)", paths: bars() }],
    }, [r.series.map((p) => epoch(p.period_start)), r.series.map((p) => p.amount)],
    r.series.map((p) => ({ period_start: p.period_start, amount: p.amount })));
  }

  async function loadLogs() {
    const { logs } = await api("logs?limit=100");
    fillTable("table-logs", logs, [["event_time", fmt.time], ["method", fmt.text], ["path", fmt.text],
      ["status_code", fmt.text, 1], ["response_ms", fmt.ms, 1], ["customer_id", fmt.text],
      ["tool_name", fmt.text], ["x402_amount", fmt.usd, 1], ["request_id", fmt.text]]);
  }

  async function loadPerformance() {
    const p = await api("performance?window=" + $("perf-window").value);
    const cards = $("perf-cards");
    cards.replaceChildren();
    const shown = [["p50_latency_ms", "p50 ms"], ["p75_latency_ms", "p75 ms"], ["p90_latency_ms", "p90 ms"],
      ["p95_latency_ms", "p95 ms"], ["p99_latency_ms", "p99 ms"], ["avg_latency_ms", "Average ms"],
      ["successes", "Successes"], ["errors", "Errors"], ["requests_per_minute", "Requests / min"]];
    for (const [key, label] of shown) {
      const card = document.createElement("div");
      card.className = "card";
      const h = document.createElement("h3");
      h.textContent = label;
      const out = document.createElement("output");
      out.id = "perf-" + key;
      const v = p.current[key];
      out.textContent = key.endsWith("_ms") || key === "requests_per_minute" ? fmt.ms(v) : fmt.int(v);
      out.dataset.value = String(v);
      card.append(h, out);
      const change = p.change_pct[key];
      if (change !== undefined && change !== null) {
        const c = document.createElement("div");
        const worse = key === "requests_per_minute" || key === "successes" ? change < 0 : change > 0;
        c.className = "change " + (worse ? "up" : "down");
        c.textContent = (change > 0 ? "+" : "") + change.toFixed(1) + "% vs previous " + p.window;
        card.append(c);
      }
      cards.append(card);
    }
    const h = p.histogram;
    const short = (ms) => (ms >= 1000 ? ms / 1000 + "s" : ms + "ms");
    const labels = h.map((b) => (b.upper_ms ? short(b.lower_ms) + "–" + short(b.upper_ms) : "≥" + short(b.lower_ms)));
    chart("chart-latency", {
      title: "Latency distribution (" + p.window + ")",
      scales: { x: { time: false } },
      axes: [{ values: (u, ticks) => ticks.map((t) => labels[t] || "") }, {}],
      series: [{}, { label: "Requests", stroke: "#3461d1", fill: "rgba(52,97,209,.4)", paths: bars() }],
    }, [h.map((_, i) => i), h.map((b) => b.requests)],
    h.map((b, i) => ({ bucket: labels[i], lower_ms: b.lower_ms, upper_ms: b.upper_ms, requests: b.requests })));
    chart("chart-hourly", {
      title: "Hourly trend", scales: { x: { time: true } },
      series: [{}, { label: "Requests", stroke: "#3461d1", width: 2 },
        { label: "p95 ms", stroke: "#c77c02", width: 2, scale: "ms" }],
      axes: [{}, {}, { scale: "ms", side: 1, grid: { show: false } }],
    }, [p.hourly.map((r) => epoch(r.hour)), p.hourly.map((r) => r.requests), p.hourly.map((r) => r.p95_latency_ms)],
    p.hourly.map((r) => ({ hour: r.hour, requests: r.requests, p95_latency_ms: r.p95_latency_ms })));
  }

  async function loadUsage() {
    const u = await api("usage?days=30&period=day");
    $("usage-total").textContent = fmt.int(u.total_units) + " units, " + fmt.usd(u.total_cost) + " USD";
    $("usage-total").dataset.value = String(u.total_cost);
    fillTable("table-usage", u.usage, [["period_start", fmt.text], ["module", fmt.text], ["model", fmt.text],
      ["reports", fmt.int, 1], ["units", fmt.int, 1], ["cost", fmt.usd, 1]]);
  }

  async function downloadCsv() {
    const month = new Date().toISOString().slice(0, 7);
    const resp = await fetch("/v1/agents/" + encodeURIComponent(agent) + "/usage.csv?month=" + month,
      { headers: { Authorization: "Bearer " + token } });
    if (!resp.ok) return setStatus("CSV export failed: HTTP " + resp.status, true);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await resp.blob());
    a.download = "usage-" + agent + "-" + month + ".csv";
    a.click();
    URL.revokeObjectURL(a.href);
  }

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  function showLogin(message) {
    document.body.dataset.state = "login";
    $("login").hidden = false;
    $("tabs").hidden = $("panels").hidden = $("logout").hidden = true;
    $("login-error").textContent = message || "";
  }

  async function guarded(loader) {
    try {
      await loader();
    } catch (err) {
      if (err instanceof AuthError) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(err.message);
      } else {
        setStatus(err.message, true);
      }
      throw err;
    }
  }

  async function loadAll() {
    $("login").hidden = true;
    $("tabs").hidden = $("panels").hidden = $("logout").hidden = false;
    document.body.dataset.state = "loading";
    setStatus("loading…");
    const results = await Promise.allSettled([loadOverview, loadDaily, loadCustomers, loadTools, loadRevenue,
      loadLogs, loadPerformance, loadUsage].map(guarded));
    if (results.some((r) => r.status === "rejected")) {
      if (document.body.dataset.state !== "login") document.body.dataset.state = "error";
      return;
    }
    setStatus("updated " + new Date().toISOString().slice(11, 19) + " UTC");
    document.body.dataset.state = "ready";
  }

  // Observability is a log stream: refresh it while its tab is shown and the page is visible.
  const LOG_REFRESH_MS = 10000;
  setInterval(() => {
    if (token && !document.hidden && $("tab-observability").classList.contains("active")) {
      guarded(loadLogs).catch(() => {});
    }
  }, LOG_REFRESH_MS);

  function selectTab(name) {
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
    for (const s of document.querySelectorAll(".panel")) s.classList.toggle("active", s.id === "tab-" + name);
  }

  $("agent-name").textContent = agent;
  document.title = "Meterline — " + agent;
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => selectTab(b.dataset.tab));
  $("daily-days").addEventListener("change", () => guarded(loadDaily).catch(() => {}));
  $("revenue-period").addEventListener("change", () => guarded(loadRevenue).catch(() => {}));
  $("perf-window").addEventListener("change", () => guarded(loadPerformance).catch(() => {}));
  $("usage-download").addEventListener("click", () => downloadCsv());
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); token = null; showLogin(); });
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("login-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login-token").value = "";
    loadAll();
  });
  const initialTab = new URLSearchParams(location.search).get("tab");
  if (initialTab && $("tab-" + initialTab)) selectTab(initialTab);
  token = takeToken();
  if (token) loadAll(); else showLogin();
})();
