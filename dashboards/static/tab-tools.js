/* Tools tab: every tool called in the range; a tool leads to its requests. */
import { $, api, fillTable, filterParams, fmt, rangeParams, registerTab, toRequests } from "./core.js";

async function load() {
  const { tools } = await api("tools", { ...rangeParams(), ...filterParams(), limit: 100 });
  fillTable("table-tools", tools, [["tool_name", fmt.text, 0, (row) => toRequests({ tool: row.tool_name })], ["requests", fmt.int, 1],
    ["p95_latency_ms", fmt.ms, 1], ["error_rate", fmt.pct, 1], ["revenue", fmt.usd, 1]]);
  $("list-tools").replaceChildren(...tools.map((t) => Object.assign(document.createElement("option"), { value: t.tool_name })));
}

registerTab("tools", load);
