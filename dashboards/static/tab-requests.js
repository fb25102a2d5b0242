/* Requests tab (observability): the requests of the range, newest first, searched and filtered on the
 * server, a page at a time (keyset cursors: "Older" follows next_cursor, "Newer" goes back along the
 * cursors seen); a request's detail (headers kept, bodies as captured, timings, payment) opens in a drawer
 * beside the list (Close or Escape shuts it).
 * The first page refreshes every 10 s while the tab is shown. */
import {
  $, api, el, fillTable, filterParams, fmt, guarded, hasToken, NotFound, rangeParams, refresh, registerTab, setState, state,
  toRequests,
} from "./core.js";

const PAGE = 50;
const REFRESH_MS = 10000;
let cursors = [null];  // cursors[i] asks for page i
let page = 0;
let next = null;

async function loadPage(i) {
  const params = { ...rangeParams(), ...filterParams(), limit: PAGE };
  if (state.extra.q) params.q = state.extra.q;
  if (cursors[i]) params.cursor = cursors[i];
  const { logs, next_cursor: nextCursor } = await api("logs", params);
  page = i;
  next = nextCursor;
  if (nextCursor) cursors[i + 1] = nextCursor;
  const open = (row) => guarded(() => openDetail(row.request_id)).catch(() => {});
  fillTable("table-logs", logs, [["event_time", fmt.time], ["method", fmt.text], ["path", fmt.text],
    ["status_code", fmt.text], ["response_ms", fmt.ms, 1], ["customer_id", fmt.text], ["tool_name", fmt.text],
    ["x402_amount", fmt.usd, 1], ["request_id", fmt.text, 0, open]]);
  for (const [i, tr] of [...$("table-logs").tBodies[0].rows].entries()) {
    tr.classList.add("clickable");
    const code = logs[i].status_code;  // errors red, 402 amber, as in the charts
    tr.cells[3].classList.add(code === 402 ? "status-402" : code >= 400 ? "status-error" : "status-ok");
    tr.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") open(logs[i]); });
  }
  $("logs-page").textContent = "page " + (page + 1);
  $("logs-info").textContent = logs.length
    ? logs.length + " requests" + (state.extra.q ? " matching “" + state.extra.q + "”" : "") + (next ? "; more are older" : "")
    : "no requests" + (state.extra.q ? " match “" + state.extra.q + "”" : "") + " in this range";
  $("logs-newer").disabled = $("logs-newest").disabled = page === 0;
  $("logs-older").disabled = !next;
  markOpen();
}

async function load() {
  cursors = [null];
  $("logs-q").value = state.extra.q || "";
  await loadPage(0);
  if (state.extra.request) await showDetail(state.extra.request);
  else {
    $("request-detail").hidden = true;
    markOpen();
  }
}

function dl(id, pairs) {
  $(id).replaceChildren(...pairs.flatMap(([label, value, onClick]) => [
    el("dt", { textContent: label }),
    el("dd", { dataset: { field: label } }, onClick && value
      ? el("a", { href: "#", className: "drill", textContent: value, onclick: (ev) => { ev.preventDefault(); onClick(); } })
      : String(value === null || value === undefined || value === "" ? "—" : value)),
  ]));
}

const bytes = (text) => new TextEncoder().encode(text).length;
const ms = (a, b) => fmt.int(Date.parse(b) - Date.parse(a)) + " ms";

function body(id, sizeId, text, size) {
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as captured */ }
  $(id).textContent = text ? shown : "";
  const captured = bytes(text);
  $(sizeId).textContent = !size && !text ? "none" : captured < size
    ? fmt.int(captured) + " of " + fmt.int(size) + " bytes captured" : fmt.int(size || captured) + " bytes";
}

async function showDetail(id) {
  let r;
  try {
    ({ request: r } = await api("requests/" + encodeURIComponent(id)));
  } catch (err) {
    if (!(err instanceof NotFound)) throw err;
    $("request-detail").hidden = false;
    $("rd-id").textContent = id + " — not found";
    for (const part of ["rd-request", "rd-timings", "rd-payment", "rd-client"]) $(part).replaceChildren();
    return;
  }
  $("rd-id").textContent = r.request_id;
  dl("rd-request", [["Method", r.method], ["Path", r.path], ["Status", r.status_code],
    ["Customer", r.customer_id, () => toRequests({ customer: r.customer_id })],
    ["Tool", r.tool_name, () => toRequests({ tool: r.tool_name })], ["Protocol", r.protocol],
    ["Error type", r.error_type], ["Source", r.source], ["SDK", r.sdk_version], ["Batch", r.batch_id]]);
  dl("rd-timings", [["Event time (agent)", fmt.time(r.event_time) + " UTC"], ["Response time", fmt.ms(r.response_ms) + " ms"],
    ["Ingested (gateway)", fmt.time(r.ingested_at) + " UTC"], ["  after the event", ms(r.event_time, r.ingested_at)],
    ["Stored (ClickHouse)", fmt.time(r.stored_at) + " UTC"], ["  after ingest", ms(r.ingested_at, r.stored_at)]]);
  dl("rd-payment", r.x402_amount > 0 || r.x402_tx_hash
    ? [["Amount", fmt.usd(r.x402_amount)], ["Token", r.x402_token], ["Payer", r.x402_payer], ["Transaction", r.x402_tx_hash]]
    : [["Amount", r.status_code === 402 ? "none: answered 402 Payment Required" : "none"]]);
  dl("rd-client", [["IP address", r.ip_address], ["Country", r.country], ["City", r.city], ["User agent", r.user_agent],
    ["Referer", r.referer], ["Content type", r.content_type], ["Accept-Language", r.accept_language]]);
  fillTable("table-headers", Object.entries(r.headers).map(([name, value]) => ({ name, value })),
    [["name", fmt.text], ["value", fmt.text]]);
  body("rd-request-body", "rd-request-size", r.request_body, r.request_body_size);
  body("rd-response-body", "rd-response-size", r.response_body, r.response_body_size);
  $("request-detail").hidden = false;
  $("request-detail").dataset.request = r.request_id;
  $("request-detail").scrollTop = 0;
  markOpen();
}

/** The row of the request shown in the detail stands out in the list. */
function markOpen() {
  const open = $("request-detail").hidden ? null : $("request-detail").dataset.request;
  for (const tr of $("table-logs").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.cells[tr.cells.length - 1].dataset.value === open);
  }
}

async function openDetail(id) {
  setState({ extra: { request: id } }, { reload: false });
  await showDetail(id);
}

function closeDetail() {
  setState({ extra: { request: "" } }, { reload: false });
  $("request-detail").hidden = true;
  markOpen();
}

registerTab("observability", load);
$("logs-search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setState({ extra: { q: $("logs-q").value.trim(), request: "" } });
});
const turn = (i) => guarded(() => loadPage(i)).catch(() => {});
$("logs-older").addEventListener("click", () => { if (next) turn(page + 1); });
$("logs-newer").addEventListener("click", () => { if (page > 0) turn(page - 1); });
$("logs-newest").addEventListener("click", () => turn(0));
$("rd-close").addEventListener("click", closeDetail);
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !$("request-detail").hidden) closeDetail();
});

// a log stream: the first page follows the present while it is shown (and nothing is open)
setInterval(() => {
  if (hasToken() && !document.hidden && state.tab === "observability" && page === 0 && !state.extra.request
      && state.range !== "custom" && document.body.dataset.state === "ready") refresh();
}, REFRESH_MS);
