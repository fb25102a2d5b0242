/* Meterline dashboard entry: login, the range picker and the filter bar every tab shares, the tab strip,
 * and the agents list at /dashboard/. Each tab is its own module (tab-*.js), imported below. */
import {
  $, FILTERS, TOKEN_KEY, agent, apiGet, el, fillTable, fmt, guarded, hasToken, iso, onState, range, refresh, setState,
  setStatus, setToken, showTab, state, whenAuthFails,
} from "./core.js";
import "./tab-overview.js";
import "./tab-analytics.js";
import "./tab-customers.js";
import "./tab-tools.js";
import "./tab-revenue.js";
import "./tab-requests.js";
import "./tab-speed.js";
import "./tab-usage.js";
import "./tab-limits.js";
import "./tab-alerts.js";

function takeToken() {
  if (location.hash.startsWith("#token=")) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice(7)));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  document.body.dataset.state = "login";
  $("login").hidden = false;
  $("app").hidden = $("agents").hidden = $("logout").hidden = true;
  $("login-error").textContent = message || "";
  setStatus("");
  $("login-token").focus();
}

whenAuthFails((message) => {
  sessionStorage.removeItem(TOKEN_KEY);
  setToken(null);
  showLogin(message);
});

// --- the controls follow the state ----------------------------------------------------------------

const localInput = (d) => iso(d).slice(0, 16);  // datetime-local, read as UTC
const fromInput = (v) => new Date(v + ":00Z");

function showControls() {
  $("range-preset").value = state.range;
  $("range-custom").hidden = state.range !== "custom";
  const r = range();
  if (state.range !== "custom" || !$("range-from").value) {
    $("range-from").value = localInput(r.from);
    $("range-to").value = localInput(r.to);
  }
  $("range-compare").checked = state.compare;
  $("range").dataset.from = iso(r.from);
  $("range").dataset.to = iso(r.to);
  $("range-label").textContent = fmt.time(iso(r.from)).slice(0, 16) + " – " + fmt.time(iso(r.to)).slice(0, 16) + " UTC"
    + (state.compare ? "; previous: from " + fmt.time(iso(r.prevFrom)).slice(0, 16) : "");
  for (const f of FILTERS) $("filter-" + f).value = state.filters[f] || "";
  const chips = $("filter-chips");
  chips.replaceChildren();
  for (const [f, v] of Object.entries(state.filters)) {
    chips.append(el("button", { type: "button", className: "chip", title: "remove this filter",
      textContent: f + ": " + v + " ×", dataset: { filter: f }, onclick: () => setState({ filters: { [f]: "" } }) }));
  }
  if (Object.keys(state.filters).length > 1) {
    chips.append(el("button", { type: "button", className: "chip clear", textContent: "clear all",
      onclick: () => setState({ filters: Object.fromEntries(FILTERS.map((f) => [f, ""])) }) }));
  }
}
onState(showControls);

$("range-preset").addEventListener("change", () => {
  const v = $("range-preset").value;
  if (v === "custom") {
    $("range-custom").hidden = false;
    return;
  }
  setState({ range: v, from: "", to: "" });
});
$("range-apply").addEventListener("click", () => {
  const from = fromInput($("range-from").value), to = fromInput($("range-to").value);
  if (!(from < to)) return setStatus("the range must end after it starts", true);
  setState({ range: "custom", from: iso(from), to: iso(to) });
});
$("range-compare").addEventListener("change", () => setState({ compare: $("range-compare").checked }));
$("refresh").addEventListener("click", () => refresh());
for (const f of FILTERS) {
  $("filter-" + f).addEventListener("change", () => setState({ filters: { [f]: $("filter-" + f).value.trim() } }));
}

// --- tabs, login, start ---------------------------------------------------------------------------

for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => setState({ tab: b.dataset.tab }));
}
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  setToken(null);
  showLogin();
});
$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken($("login-token").value.trim());
  sessionStorage.setItem(TOKEN_KEY, $("login-token").value.trim());
  $("login-token").value = "";
  start();
});

async function loadAgents() {
  document.body.dataset.state = "loading";
  setStatus("loading…");
  let agents;
  try {
    ({ agents } = await guarded(() => apiGet("/v1/agents")));
  } catch (err) {
    if (document.body.dataset.state !== "login") document.body.dataset.state = "error";
    return;
  }
  const link = (row) => { location.href = "/dashboard/" + encodeURIComponent(row.agent_id) + location.search; };
  fillTable("table-agents", agents, [["agent_id", fmt.text, 0, link], ["requests", fmt.int, 1],
    ["recent_requests", fmt.int, 1], ["errors", fmt.int, 1], ["payment_required", fmt.int, 1],
    ["revenue", fmt.usd, 1], ["first_seen", fmt.time], ["last_seen", fmt.time]]);
  setStatus(agents.length + (agents.length === 1 ? " agent" : " agents"));
  document.body.dataset.state = "ready";
}

function start() {
  $("login").hidden = true;
  $("logout").hidden = false;
  if (!agent) {
    $("agents").hidden = false;
    return loadAgents();
  }
  $("app").hidden = false;
  showControls();
  return showTab(state.tab);
}

if (agent) {
  $("agent-name").textContent = agent;
  document.title = "Meterline — " + agent;
} else {
  $("agent-name").textContent = "agents";
  document.title = "Meterline — agents";
}
setToken(takeToken());
if (hasToken()) start(); else showLogin();
