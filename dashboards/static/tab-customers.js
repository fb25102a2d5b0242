/* Customers tab: the top callers in the range; a customer leads to its requests. */
import { $, api, fillTable, filterParams, fmt, rangeParams, registerTab, toRequests } from "./core.js";

async function load() {
  const { customers } = await api("customers", { ...rangeParams(), ...filterParams(), limit: 100 });
  fillTable("table-customers", customers, [["customer_id", fmt.text, 0, (row) => toRequests({ customer: row.customer_id })],
    ["requests", fmt.int, 1], ["revenue", fmt.usd, 1], ["avg_latency_ms", fmt.ms, 1], ["error_rate", fmt.pct, 1],
    ["first_seen", fmt.time], ["last_seen", fmt.time]]);
  const list = $("list-customers");
  list.replaceChildren(...customers.map((c) => Object.assign(document.createElement("option"), { value: c.customer_id })));
}

registerTab("customers", load);
