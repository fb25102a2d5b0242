/* Usage & billing tab: the app's monthly statement (GET /v1/agents/<agent>/statement) as the API states it —
 * usage lines per end customer and meter/model with unit, quantity, unit price and amount, totals per currency,
 * x402 revenue in its token, and the price list — with the same file as CSV or JSON. Amounts are the API's
 * decimal text, shown as they are (never turned into binary floats); quantities are grouped for reading. */
import { $, agent, api, apiFetch, fillTable, fmt, registerTab, setState, setStatus, state } from "./core.js";

const thisMonth = () => new Date().toISOString().slice(0, 7);
const month = () => state.extra.month || thisMonth();
const params = () => ({ month: month(), customer: state.filters.customer });
const who = (v) => (v === null || v === undefined || v === "" ? "(none)" : String(v));
const money = (list) => list.map((m) => m.amount + " " + m.currency).join("; ");

async function load() {
  $("billing-month").value = month();
  const s = await api("statement", params());
  $("billing-month-label").textContent = (s.month || month()) + (state.filters.customer
    ? " — end customer " + state.filters.customer : "");
  $("billing-month-label").dataset.value = s.month || "";
  $("billing-currencies").textContent = "Usage amounts are in " + s.currency + ", the currency of the price list ("
    + s.price_list.source + "); x402 revenue is in the token each payment was made in. Totals are per currency "
    + "and never add one currency to another. Counted: what was stored before " + fmt.time(s.as_of) + " UTC.";
  $("billing-price-source").textContent = "(" + s.price_list.source + ", in " + s.price_list.currency + ")";

  const totals = s.totals.map((t) => ({ source: "usage charges (price list)", ...t, count: null }))
    .concat(s.x402.totals.map((t) => ({ source: "x402 revenue", ...t, count: t.paid_requests })));
  fillTable("table-billing-totals", totals, [["source", fmt.text], ["amount", fmt.text, 1], ["currency", fmt.text],
    ["count", (v) => (v === null ? "" : fmt.int(v)), 1]]);
  fillTable("table-billing-quantities", s.quantities, [["meter", fmt.text], ["unit", (v) => v || "(no meter)"],
    ["reports", fmt.int, 1], ["quantity", fmt.int, 1]]);
  fillTable("table-billing-lines", s.lines, [["customer_id", who], ["meter", fmt.text], ["model", fmt.text],
    ["unit", fmt.text], ["reports", fmt.int, 1], ["quantity", fmt.int, 1], ["unit_price", fmt.text, 1],
    ["currency", fmt.text], ["effective_from", fmt.text], ["amount", fmt.text, 1]]);
  $("billing-unpriced-block").hidden = s.unpriced.length === 0;
  fillTable("table-billing-unpriced", s.unpriced, [["customer_id", who], ["module", fmt.text], ["model", fmt.text],
    ["unit", (v) => v || "(no meter)"], ["reports", fmt.int, 1], ["quantity", fmt.int, 1]]);
  fillTable("table-billing-customers", s.customers, [["customer_id", who], ["totals", money, 1], ["x402", money, 1]]);
  fillTable("table-billing-x402", s.x402.lines, [["customer_id", who], ["currency", (v) => v || "(no token)"],
    ["paid_requests", fmt.int, 1], ["amount", fmt.text, 1]]);
  fillTable("table-billing-prices", s.price_list.prices, [["meter", fmt.text], ["model", fmt.text],
    ["unit", fmt.text], ["unit_price", fmt.text, 1], ["currency", fmt.text], ["effective_from", fmt.text]]);
}

async function checked(pending) {
  const resp = await pending;
  if (!resp.ok) {
    let detail = "HTTP " + resp.status;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error("statement: " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
  }
  return resp;
}

async function download(kind) {
  const suffix = kind === "csv" ? ".csv" : "";
  try {
    const blob = await (await checked(apiFetch("statement" + suffix, params()))).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "statement-" + agent + "-" + month() + "." + kind;
    a.click();
    URL.revokeObjectURL(a.href);
  } catch (err) {
    setStatus(err.message, true);
  }
}

registerTab("usage", load);
$("billing-month").addEventListener("change", () => setState({ extra: { month: $("billing-month").value } }));
$("billing-csv").addEventListener("click", () => download("csv"));
$("billing-json").addEventListener("click", () => download("json"));
