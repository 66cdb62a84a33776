// The summary of a filter and time range: number of traces, total cost, root latency
// p50/p99, error rate and each score's average, as the aggregate endpoint's `summary` gives
// them (docs/protocol.md, "Aggregates"). The logs table shows it above its rows for the
// filter and range in the URL; the monitor page shows it from its own aggregate.

import { fetchAggregate } from "./api.js";
import { cost, duration, h, percent, replace } from "./dom.js";

/** A total cost: "–" when unknown, "≥$1.20" (as the logs table writes it) when some LLM
 * calls have no known price. */
export function costText(value, unpriced) {
  if (typeof value !== "number") return "–";
  return unpriced > 0 ? `≥${cost(value)}` : cost(value);
}

/** The figures of an aggregate's `summary` as a definition list. */
export function summaryList(summary) {
  const unpriced = summary.unpriced_llm_calls || 0;
  const latency = (v) => (typeof v === "number" ? duration(v) : "–");
  const figures = [
    ["Traces", summary.traces.toLocaleString("en-US"), null],
    ["Cost", costText(summary.cost, unpriced),
      unpriced ? `${unpriced} LLM call${unpriced === 1 ? "" : "s"} without a known price` : null],
    ["Latency p50", latency(summary.latency_p50), "Root span duration, median"],
    ["Latency p99", latency(summary.latency_p99), "Root span duration, 99th percentile"],
    ["Error rate", percent(summary.error_rate),
      `${summary.failed_traces} of ${summary.traces} trace${summary.traces === 1 ? "" : "s"} failed`],
    ...Object.entries(summary.scores || {}).sort(([a], [b]) => a.localeCompare(b))
      .map(([name, value]) => [name, percent(value), `${name}: average over the spans that have it`]),
  ];
  return h("dl", { class: "figures" }, figures.map(([label, value, title]) =>
    h("div", { class: "figure", title, dataset: { figure: label } }, h("dt", {}, label), h("dd", {}, value))));
}

/**
 * The summary panel of the logs table, with a link to the monitor page for the same filter
 * and range. `refresh()` asks for the summary of the filter and range in the page's URL (the
 * table keeps them there); an answer to an older request is dropped.
 */
export function summaryPanel(projectId) {
  const figures = h("div", { class: "summary-figures" });
  const monitor = h("a", { class: "monitor-link", "data-nav": true }, "Monitor");
  const element = h("section", { class: "summary", "aria-label": "Summary of these traces", "aria-busy": "true" },
    figures, monitor);
  let controller = null;

  async function refresh() {
    if (controller) controller.abort();
    const mine = controller = new AbortController();
    const params = new URL(location.href).searchParams;
    const kept = new URLSearchParams();
    for (const name of ["filter", "since", "until"]) if (params.get(name)) kept.set(name, params.get(name));
    monitor.setAttribute("href", `/projects/${encodeURIComponent(projectId)}/monitor${kept.size ? `?${kept}` : ""}`);
    element.setAttribute("aria-busy", "true");
    try {
      // Without a range the table lists every trace, while the endpoint would default to the
      // last 24 hours: ask from the epoch.
      const data = await fetchAggregate(projectId, {
        filter: params.get("filter"), since: params.get("since") || "0", until: params.get("until"),
      }, mine.signal);
      replace(figures, summaryList(data.summary));
    } catch (err) {
      if (err.name === "AbortError") return;
      // A bad filter or range is shown by the table already; say only that there is no summary.
      replace(figures, h("p", { class: "muted small" }, `No summary: ${err.message}`));
    } finally {
      if (controller === mine) element.removeAttribute("aria-busy");
    }
  }

  return { element, refresh, destroy: () => controller && controller.abort() };
}
