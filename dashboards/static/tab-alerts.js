/* Alerts tab: the agent's alert rules with their state (GET /v1/agents/<agent>/alerts/rules), the recent
 * transitions (…/alerts/events) and the webhook delivery log (…/alerts/deliveries). A form creates a rule
 * (POST; the webhook signing secret is shown here once), each rule can be deleted or sent a test delivery
 * (which the evaluator sends on its next tick). A firing rule is highlighted. The range picker and the filters
 * do not apply: a rule has its own window or period. docs/alerts.md describes the rest. */
import { $, TOKEN_KEY, api, apiUrl, fillTable, fmt, refresh, registerTab, setStatus } from "./core.js";

const who = (v) => (v ? String(v) : "(whole agent)");
const scope = (r) => (r.kind === "usage" ? r.meter + (r.model ? "/" + r.model : "") + " " + r.unit + " per " + r.period
  : r.kind === "no_traffic" ? "no request in " + r.window_s / 60 + " min" : "over " + r.window_s / 60 + " min");
const threshold = (r) => (r.kind === "error_rate" ? fmt.pct(r.threshold) : r.kind === "p95_latency"
  ? r.threshold + " ms" : r.kind === "no_traffic" ? "" : r.threshold);

async function send(method, path, body) {
  const resp = await fetch(apiUrl(path), {
    method, headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) {
    let detail = "HTTP " + resp.status;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error("alerts: " + (typeof detail === "string" ? detail : detail.map((d) => d.msg || d).join("; ")));
  }
  return resp.status === 204 ? null : resp.json();
}

async function act(method, path, done) {
  try {
    const result = await send(method, path);
    $("alert-message").textContent = done(result);
    refresh();
  } catch (err) {
    $("alert-message").textContent = err.message;
    setStatus(err.message, true);
  }
}

const remove = (row) => act("DELETE", "alerts/rules/" + encodeURIComponent(row.rule_id), () => "deleted " + row.rule_id);
const test = (row) => act("POST", "alerts/rules/" + encodeURIComponent(row.rule_id) + "/test",
  (ev) => "test delivery " + ev.event_id + " queued: sent on the evaluator's next tick");

async function load() {
  const [{ rules }, { events }, { deliveries }] = await Promise.all([
    api("alerts/rules"), api("alerts/events", { limit: 50 }), api("alerts/deliveries", { limit: 50 })]);
  const rows = rules.map((r) => ({ ...r, scope: scope(r), shown: threshold(r), del: "delete",
    test: r.webhook_url ? "test" : "" }));
  fillTable("table-alert-rules", rows, [["rule_id", fmt.text], ["name", fmt.text], ["kind", fmt.text],
    ["customer_id", who], ["scope", fmt.text], ["shown", fmt.text, 1], ["state", fmt.text],
    ["state_since", fmt.time], ["last_value", fmt.text, 1], ["webhook_url", fmt.text], ["test", fmt.text, 0, test],
    ["del", fmt.text, 0, remove]]);
  const body = $("table-alert-rules").tBodies[0];
  rows.forEach((row, i) => {
    body.rows[i].classList.toggle("alert-firing", row.state === "firing");
    body.rows[i].dataset.ruleId = row.rule_id;
  });
  const firing = rows.filter((r) => r.state === "firing").length;
  $("alerts-summary").textContent = rules.length + " rule" + (rules.length === 1 ? "" : "s") + ", " + firing + " firing.";
  $("alerts-summary").dataset.firing = String(firing);
  fillTable("table-alert-events", events, [["evaluated_at", fmt.time], ["rule_id", fmt.text],
    ["transition", fmt.text], ["value", fmt.text, 1], ["threshold", fmt.text, 1], ["event_id", fmt.text]]);
  fillTable("table-alert-deliveries", deliveries, [["attempted_at", fmt.time], ["rule_id", fmt.text],
    ["event_id", fmt.text], ["attempt", fmt.int, 1], ["status_code", (v) => (v ? String(v) : "no answer"), 1],
    ["outcome", fmt.text], ["latency_ms", fmt.ms, 1], ["error", fmt.text]]);
}

$("alert-kind").addEventListener("change", () => {
  $("alert-usage-fields").hidden = $("alert-kind").value !== "usage";
});

$("alert-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const kind = $("alert-kind").value;
  const body = { kind, name: $("alert-name").value.trim(), webhook_url: $("alert-webhook").value.trim(),
    customer_id: $("alert-customer").value.trim() };
  if (kind !== "no_traffic") body.threshold = $("alert-threshold").value.trim() || "0";
  if (kind === "usage") {
    Object.assign(body, { meter: $("alert-meter").value.trim(), unit: $("alert-unit").value.trim(),
      period: $("alert-period").value });
  } else {
    body.window_s = Number($("alert-window").value) * 60;
  }
  try {
    const made = await send("POST", "alerts/rules", body);
    $("alert-message").textContent = "created " + made.rule.rule_id;
    $("alert-secret").textContent = made.secret;
    $("alert-secret-block").hidden = false;
    refresh();
  } catch (err) {
    $("alert-message").textContent = err.message;
    setStatus(err.message, true);
  }
});

registerTab("alerts", load);
