// The monitor page of one project: over a time range, in time buckets, charts of traces,
// errors, root latency p50/p95/p99, LLM calls, tokens, cost and each score's average, each
// series per split group (model, span name or tag). One aggregate request per view
// (docs/protocol.md, "Aggregates"); range, split and filter live in the URL. A click on a
// point opens the logs table filtered to that bucket (and group). Charts: uPlot, vendored
// unchanged in vendor/uplot/ (its README names version and source).

import uPlot from "./vendor/uplot/uPlot.esm.js";
import { ApiError, fetchAggregate } from "./api.js";
import { cost, duration, h, percent, replace } from "./dom.js";
import { coalesced } from "./live.js";
import { rangeControl } from "./range.js";
import { costText, summaryList } from "./summary.js";

const DEFAULT_SINCE = "24h";
const SPLITS = [["", "None"], ["model", "Model"], ["name", "Span name"], ["tag", "Tag"]];
// The palette of series, in order; style.css gives the legend swatches `.c0` ... the same.
const COLORS = ["#3157d5", "#d9480f", "#2b8a3e", "#ae3ec9", "#f08c00", "#1098ad", "#c2255c", "#5c940d"];
const CHART_HEIGHT = 180;
// How near (in CSS pixels) a click must be to a series' point to pick that series' group.
const PICK_PX = 24;

// Each split value as a condition of the filter language (docs/filters.md), for the logs
// table a click opens. It keeps traces whose root span has the value.
const quote = (text) => `'${String(text).replaceAll("'", "''")}'`;
const CONDITIONS = {
  model: (v) => `metadata.model = ${quote(v)}`,
  name: (v) => `span_attributes.name = ${quote(v)}`,
  tag: (v) => `tags INCLUDES ${quote(v)}`,
};

const count = (v) => (typeof v === "number" ? v.toLocaleString("en-US") : "–");
const seconds = (v) => (typeof v === "number" ? duration(v) : "–");

/** The charts of an aggregate: title; the series fields drawn, each [field, label suffix,
 * line style]; how to show a value; whether a group's values add up over the range (then
 * the legend shows the total). */
function chartsOf(data) {
  const scoreNames = new Set();
  for (const s of data.series) for (const name of Object.keys(s.scores || {})) scoreNames.add(name);
  return [
    { id: "traces", title: "Traces", fields: [["traces"]], format: count, total: true },
    { id: "errors", title: "Errors", format: count, total: true,
      fields: [["failed_traces", "failed traces", ""], ["errors", "failed spans", "dashed"]] },
    { id: "latency", title: "Root latency", format: seconds, total: false,
      fields: [["latency_p50", "p50", ""], ["latency_p95", "p95", "dashed"], ["latency_p99", "p99", "dotted"]] },
    { id: "llm_calls", title: "LLM calls", fields: [["llm_calls"]], format: count, total: true },
    { id: "tokens", title: "Tokens", fields: [["tokens"]], format: count, total: true },
    { id: "cost", title: "Cost", fields: [["cost"]], format: cost, total: true },
    ...[...scoreNames].sort().map((name) => ({
      id: `score-${name}`, title: `Score: ${name}`, fields: [[(s) => (s.scores || {})[name]]],
      format: percent, total: false })),
  ];
}

/** A bucket's edge for the logs table's URL: ISO-8601 UTC. */
const isoTime = (unixSeconds) => new Date(unixSeconds * 1000).toISOString().replace(".000Z", "Z");

export function monitorPage(main, projectId, params, ctx) {
  const controller = new AbortController();
  let until = params.get("until") || "";
  // Without a range in the URL, the last 24 hours (with only an end, the endpoint's default:
  // the 24 hours before it).
  let since = params.get("since") || (until ? "" : DEFAULT_SINCE);
  let split = params.get("split") || "";
  const filter = params.get("filter") || "";
  let generation = 0;
  let drawn = { signature: null, charts: [] };   // the charts on screen
  const base = `/projects/${encodeURIComponent(projectId)}`;

  ctx.setCrumbs([["Projects", "/"], [projectId, logsHref()], ["Monitor", null]]);
  ctx.projectName(projectId).then((name) => {
    ctx.setCrumbs([["Projects", "/"], [name, logsHref()], ["Monitor", null]]);
  });

  /** "?k=v&..." of the values that are set, or "". */
  function queryOf(values) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) if (v) q.set(k, v);
    const text = q.toString();
    return text ? `?${text}` : "";
  }

  function logsHref(extra = {}) {
    return base + queryOf({ filter, since, until, ...extra });
  }

  const range = rangeControl({ since, until }, (next) => {
    ({ since, until } = next);
    applyView();
  }, { allTime: false });
  const splitSelect = h("select", { id: "monitor-split", name: "split" },
    SPLITS.map(([value, label]) => h("option", { value }, label)));
  splitSelect.value = SPLITS.some(([v]) => v === split) ? split : "";
  const problem = h("p", { class: "filter-error", role: "alert", hidden: true });
  const controls = h("div", { class: "monitor-controls" }, range.element,
    h("div", { class: "filter-row" }, h("label", { for: "monitor-split" }, "Split by"), splitSelect));
  const logsLink = h("a", { href: logsHref(), "data-nav": true, class: "monitor-logs" }, "Logs table");
  const filterNote = filter
    ? h("p", { class: "muted small" }, "Traces matching ", h("code", {}, filter), " · ",
      h("a", { href: `${base}/monitor${queryOf({ since, until, split })}`, "data-nav": true }, "all traces"))
    : null;
  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" }, "Loading…");
  const summary = h("div", { class: "summary" });
  const grid = h("div", { class: "charts" });

  replace(main, h("section", { class: "page monitor-page" },
    h("div", { class: "monitor-head" }, h("h1", {}, "Monitor"), logsLink),
    controls, problem, filterNote, status, summary, grid));

  function setProblem(message) {
    problem.textContent = message || "";
    problem.hidden = !message;
  }

  function applyView() {
    ctx.setQuery({ since, until, split });
    logsLink.setAttribute("href", logsHref());
    load();
  }

  splitSelect.addEventListener("change", () => {
    split = splitSelect.value;
    applyView();
  });

  function groupLabel(group) {
    if (!split) return "";
    if (group === null || group === undefined) return `(no ${split})`;
    return String(group);
  }

  function destroyCharts() {
    for (const c of drawn.charts) c.destroy();
    drawn = { signature: null, charts: [] };
    replace(grid);
  }

  function chartWidth() {
    const style = getComputedStyle(grid);
    const columns = style.gridTemplateColumns.split(" ").length || 1;
    const gap = parseFloat(style.columnGap) || 0;
    return Math.max(240, Math.floor((grid.clientWidth - gap * (columns - 1)) / columns) - 24);
  }

  // Opens the logs table for the bucket under the click, and for the group of the series
  // whose point is nearest to it (when near enough and the split maps to the filter).
  function openBucket(plot, { lines, data }) {
    const idx = plot.cursor.idx;
    if (idx === null || idx === undefined || plot.cursor.left < 0) return;
    let best = null;
    for (let i = 1; i < plot.series.length; i++) {
      const v = plot.data[i][idx];
      if (typeof v !== "number") continue;
      const dy = Math.abs(plot.valToPos(v, "y") - plot.cursor.top);
      if (dy <= PICK_PX && (!best || dy < best.dy)) best = { dy, line: lines[i - 1] };
    }
    // Buckets are aligned to their size, the first and last clipped to the range.
    const start = data.buckets[idx];
    const end = idx + 1 < data.buckets.length ? data.buckets[idx + 1] : data.until;
    const conditions = [];
    if (filter) conditions.push(`(${filter})`);
    const group = best ? best.line.group : null;
    if (split && group !== null && group !== undefined) conditions.push(CONDITIONS[split](group));
    ctx.navigate(logsHref({
      since: isoTime(start), until: isoTime(end),
      filter: conditions.join(" AND "),
    }));
  }

  // One line per (group, field) with any value in the range; an all-zero group is noise.
  function linesOf(chart, data, colors) {
    const lines = [];
    for (const s of data.series) {
      for (const [field, suffix, style] of chart.fields) {
        const values = typeof field === "function"
          ? data.buckets.map((_, i) => (field(s) || [])[i] ?? null) : s[field];
        if (!values || !values.some((v) => typeof v === "number" && v !== 0)) continue;
        const label = [groupLabel(s.group), suffix].filter(Boolean).join(" ") || chart.title;
        // A group keeps its colour on every chart; its lines in one chart differ by style.
        const key = `${s.group}`;
        if (!colors.has(key)) colors.set(key, colors.size);
        lines.push({ group: s.group, label, values, color: colors.get(key), style });
      }
    }
    return lines;
  }

  /** A chart's figure and its uPlot; `update(data, lines)` redraws it in place (same lines). */
  function drawChart(chart, data, lines) {
    const state = { data, lines };
    const figure = h("figure", { class: "chart", dataset: { chart: chart.id } },
      h("figcaption", {}, h("h2", {}, chart.title)));
    if (!lines.length) {
      figure.append(h("p", { class: "muted small chart-empty" }, "Nothing in this range."));
      return { figure, update: () => {}, destroy: () => {} };
    }
    const dash = { dashed: [6, 3], dotted: [2, 3] };
    const css = getComputedStyle(document.documentElement);
    const ink = css.getPropertyValue("--muted").trim() || "#676a73";
    const rule = css.getPropertyValue("--line").trim() || "#e2e2de";
    const axis = { stroke: ink, grid: { stroke: rule, width: 1 }, ticks: { stroke: rule, width: 1 } };
    const opts = {
      width: chartWidth(), height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: () => [state.data.since, state.data.until] } },
      axes: [{ ...axis }, { ...axis, size: 76, values: (u, ticks) => ticks.map((v) => chart.format(v)) }],
      series: [{}, ...lines.map((line) => ({
        label: line.label, stroke: COLORS[line.color % COLORS.length], width: 2,
        dash: dash[line.style] || [], points: { show: true, size: 5 }, spanGaps: false,
      }))],
      hooks: { setCursor: [(u) => showValues(u.cursor.idx)] },
    };
    const items = lines.map((line) => {
      const value = h("b", {});
      const swatch = `swatch c${line.color % COLORS.length}${line.style ? ` ${line.style}` : ""}`;
      const item = h("li", {}, h("span", { class: swatch, "aria-hidden": "true" }),
        h("span", { class: "legend-label" }, line.label), " ", value);
      return { item, value };
    });
    // Not hovering: a group's total over the range where values add up; hovering: the
    // values of the bucket under the cursor.
    function showValues(idx) {
      const hovering = idx !== null && idx !== undefined;
      items.forEach(({ value }, i) => {
        const line = state.lines[i];
        if (hovering) value.textContent = chart.format(line.values[idx]);
        else value.textContent = chart.total ? totalOf(chart, line, state.data) : "";
      });
    }
    // The canvas says nothing to a screen reader; the legend below it carries the figures.
    const target = h("div", { class: "plot", role: "img",
      "aria-label": `${chart.title} per ${duration(data.bucket)} bucket${split ? `, by ${split}` : ""}` });
    figure.append(target, h("ul", { class: "legend" }, items.map((i) => i.item)));
    showValues(null);
    const plot = new uPlot(opts, [data.buckets, ...lines.map((l) => l.values)], target);
    plot.over.addEventListener("click", () => openBucket(plot, state));
    plot.over.title = "Click a point to open its traces in the logs table";
    return {
      figure, plot,
      update(next, nextLines) {
        state.data = next;
        state.lines = nextLines;
        plot.setData([next.buckets, ...nextLines.map((l) => l.values)]);
        showValues(plot.cursor.idx);
      },
      destroy: () => plot.destroy(),
    };
  }

  function totalOf(chart, line, data) {
    const sum = line.values.reduce((a, v) => a + (typeof v === "number" ? v : 0), 0);
    if (chart.id !== "cost") return chart.format(sum);
    const known = line.values.some((v) => typeof v === "number");
    const series = data.series.find((s) => s.group === line.group);
    const unpriced = series ? series.unpriced_llm_calls.reduce((a, v) => a + v, 0) : 0;
    return costText(known ? sum : null, unpriced);
  }

  function draw(data) {
    replace(summary, summaryList(data.summary));
    if (!data.summary.traces) {
      destroyCharts();
      status.textContent = "No traces in this range.";
      return;
    }
    const buckets = data.buckets.length;
    status.textContent = `${buckets} bucket${buckets === 1 ? "" : "s"} of ${duration(data.bucket)}`
      + " · click a point to open its traces";
    const colors = new Map();
    const views = chartsOf(data).map((chart) => ({ chart, lines: linesOf(chart, data, colors) }));
    // A live update with the same charts and lines redraws them in place, so a chart under
    // the pointer stays put; anything else builds them anew.
    const signature = views.map(({ chart, lines }) => `${chart.id}:${lines.map((l) => l.label).join(",")}`).join("|");
    if (signature === drawn.signature) {
      views.forEach(({ lines }, i) => drawn.charts[i].update(data, lines));
      return;
    }
    destroyCharts();
    drawn = { signature, charts: views.map(({ chart, lines }) => drawChart(chart, data, lines)) };
    replace(grid, drawn.charts.map((c) => c.figure));
  }

  async function load() {
    const mine = ++generation;
    try {
      const data = await fetchAggregate(projectId, { since, until, splitBy: split, filter },
        controller.signal);
      if (mine !== generation) return;
      setProblem("");
      range.showError("");
      ctx.clearError();
      draw(data);
    } catch (err) {
      if (err.name === "AbortError" || mine !== generation) return;
      destroyCharts();
      replace(summary);
      status.textContent = "";
      // The collector names the field: a range's error goes under the picker.
      if (err instanceof ApiError && err.status === 400 && /^(since|until)\b/.test(err.message)) {
        range.showError(err.message);
      } else if (err instanceof ApiError && err.status === 400) {
        setProblem(err.message);
      } else {
        ctx.showError(err);
      }
    }
  }

  let resizeTimer = null;
  function onResize() {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      const width = chartWidth();
      for (const c of drawn.charts) if (c.plot) c.plot.setSize({ width, height: CHART_HEIGHT });
    }, 100);
  }
  window.addEventListener("resize", onResize);
  load();

  return {
    destroy() {
      controller.abort();
      clearTimeout(resizeTimer);
      window.removeEventListener("resize", onResize);
      destroyCharts();
    },
    onLive: coalesced(load, controller.signal),
  };
}
