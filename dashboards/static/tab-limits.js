/* Limits tab: the agent's usage limits (GET /v1/agents/<agent>/limits), each with what it has used in its
 * current UTC day or month, what remains and when it resets; a reached limit is highlighted (its alert, rule
 * limit:<id>, fires). A form sets a limit (POST; the same terms again change its quantity) and each row can
 * be deleted (DELETE). Quantities are the API's decimal text, shown as they are. The range picker and the
 * filters do not apply: a limit counts its own period. docs/limits.md describes the rest. */
import { $, TOKEN_KEY, api, apiUrl, fillTable, fmt, refresh, registerTab, setStatus } from "./core.js";

const who = (v) => (v === null || v === undefined ? "(whole agent)" : String(v));
const quantity = (v) => (v === null || v === undefined ? "" : /^\d+$/.test(String(v)) ? fmt.int(v) : String(v));
// a share of decimal text, for reading only (the exact numbers are in the other columns)
const share = (row) => (Number(row.limit) > 0 ? Math.min(999, (Number(row.used) / Number(row.limit)) * 100) : 100);

async function send(method, path, body) {
  const resp = await fetch(apiUrl(path), {
    method, headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) {
    let detail = "HTTP " + resp.status;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error("limits: " + (typeof detail === "string" ? detail : detail.map((d) => d.msg || d).join("; ")));
  }
  return resp.status === 204 ? null : resp.json();
}

async function remove(row) {
  try {
    await send("DELETE", "limits/" + encodeURIComponent(row.limit_id));
    $("limit-message").textContent = "deleted " + row.limit_id;
    refresh();
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function load() {
  const { limits, at } = await api("limits");
  const rows = limits.map((l) => ({ ...l, share: share(l), delete: "delete",
    alert: l.alert_rule_id ? l.alert_rule_id + " (" + (l.alert_state || "ok") + ")" : "" }));
  fillTable("table-limits", rows, [["limit_id", fmt.text], ["customer_id", who], ["meter", fmt.text],
    ["model", (v) => v || "(every model)"], ["unit", fmt.text], ["period", fmt.text], ["limit", quantity, 1],
    ["used", quantity, 1], ["remaining", quantity, 1], ["share", (v) => v.toFixed(1) + "%", 1],
    ["period_end", fmt.time], ["alert", fmt.text], ["delete", fmt.text, 0, remove]]);
  const body = $("table-limits").tBodies[0];
  rows.forEach((row, i) => {
    body.rows[i].classList.toggle("limit-reached", row.reached);
    body.rows[i].dataset.limitId = row.limit_id;
  });
  const reached = rows.filter((r) => r.reached).length;
  $("limits-summary").textContent = limits.length + " limit" + (limits.length === 1 ? "" : "s") + ", " + reached
    + " reached; used as stored at " + fmt.time(at) + " UTC.";
  $("limits-summary").dataset.reached = String(reached);
}

$("limit-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { meter: $("limit-meter").value.trim(), period: $("limit-period").value, limit: $("limit-limit").value.trim() };
  if ($("limit-customer").value.trim()) body.customer_id = $("limit-customer").value.trim();
  if ($("limit-model").value.trim()) body.model = $("limit-model").value.trim();
  try {
    const made = await send("POST", "limits", body);
    $("limit-message").textContent = (made.created ? "set " : "changed ") + made.limit_id + ": " + made.limit + " "
      + made.unit + " per " + made.period;
    refresh();
  } catch (err) {
    $("limit-message").textContent = err.message;
    setStatus(err.message, true);
  }
});

registerTab("limits", load);
