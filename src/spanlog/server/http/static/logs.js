// The logs table of one project: root spans, most recently updated first, with a filter box
// and a time range (both kept in the URL), cursor paging, each trace's totals and score
// averages (`trace_totals`, `scores_avg`: docs/protocol.md, "Trace totals") and live updates.

import { ApiError, fetchLogs } from "./api.js";
import {
  cost, duration, h, preview, replace, scoreChip, shortTime, spanName, spanStart, spanType,
  tagChips,
} from "./dom.js";
import { downloadControl } from "./export.js";
import { coalesced } from "./live.js";
import { agoSeconds, rangeControl } from "./range.js";
import { summaryPanel } from "./summary.js";

const PAGE = 50;
const COLUMNS = ["Time", "Name", "Input", "Output", "Duration", "LLM calls", "Tokens", "Cost", "Tags", "Scores"];

// Comment rows have no parents but are no traces; a collector may still list them as roots.
const isTrace = (row) => !(row && row.origin && row.comment);

export function logsPage(main, projectId, params, ctx) {
  const controller = new AbortController();
  let filter = params.get("filter") || "";
  let since = params.get("since") || "";
  let until = params.get("until") || "";
  let rows = [];           // rows shown, in order
  let cursor = null;       // where the next page starts; null when there is none
  let exhausted = false;
  let activeIndex = 0;     // the row that holds the roving tabindex
  let loaded = false;
  let generation = 0;      // whether a first page arrived (before that nothing is "new")
  const base = `/projects/${encodeURIComponent(projectId)}`;

  ctx.setCrumbs([["Projects", "/"], [projectId, null]]);
  ctx.projectName(projectId).then((name) => {
    ctx.setCrumbs([["Projects", "/"], [name, null]]);
  });

  const input = h("input", {
    id: "filter", type: "search", name: "filter", value: filter, autocomplete: "off",
    spellcheck: "false", "aria-describedby": "filter-help filter-error",
    placeholder: "metadata.user_id = '1234' AND scores.accuracy > 0.5",
  });
  const error = h("p", { id: "filter-error", class: "filter-error", role: "alert", hidden: true });
  const form = h("form", { class: "filter", role: "search", onsubmit: (e) => { e.preventDefault(); applyFilter(input.value); } },
    h("label", { for: "filter" }, "Filter"),
    h("div", { class: "filter-row" }, input,
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", onclick: () => { input.value = ""; applyFilter(""); } }, "Clear")),
    h("p", { id: "filter-help", class: "muted small" },
      "e.g. ", h("code", {}, "tags includes 'prod'"), ", ", h("code", {}, "input ILIKE '%refund%'"),
      ", ", h("code", {}, "error IS NOT NULL"), ". Press / to focus, j/k to move, Enter to open."),
    error);

  const range = rangeControl({ since, until }, (next) => applyRange(next));

  const tbody = h("tbody", {});
  const table = h("table", { class: "logs", "aria-label": "Traces, most recently updated first" },
    h("thead", {}, h("tr", {}, COLUMNS.map((c) =>
      h("th", { scope: "col", class: `col-${c.toLowerCase().replace(" ", "-")}` }, c)))),
    tbody);
  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "more", onclick: () => loadMore(), hidden: true }, "Load older traces");
  const summary = summaryPanel(projectId);

  replace(main, h("section", { class: "page logs-page" },
    // Before the filter: the Tab order from the filter box to the table stays as it was.
    h("div", { class: "logs-tools" },
      h("a", { class: "sessions-link", href: `${base}/sessions`, "data-nav": true }, "Sessions"),
      downloadControl(projectId, ctx.showError)),
    summary.element, form, range.element, h("div", { class: "table-wrap" }, table), h("div", { class: "table-foot" }, status, more)));

  function setFilterError(message) {
    if (message) {
      error.textContent = message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
    } else {
      error.textContent = "";
      error.hidden = true;
      input.removeAttribute("aria-invalid");
    }
  }

  function traceHref(row) {
    return `${base}/traces/${encodeURIComponent(row.root_span_id)}`;
  }

  // The trace page links back to this table as it was left (filter included).
  function rememberUrl() {
    try {
      sessionStorage.setItem(`spanlog.logs.${projectId}`, location.pathname + location.search);
    } catch { /* storage disabled: the back link drops the filter */ }
  }

  function open(row) {
    ctx.navigate(traceHref(row));
  }

  function scoreCell(row) {
    const scores = row.scores_avg;
    if (!scores || typeof scores !== "object") return null;
    return Object.entries(scores).filter(([, v]) => v !== null && v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, value]) => scoreChip(name, value, `${name}: average over the trace`));
  }

  // "–" for an unknown cost; "≥" when some LLM calls have no known price (a lower bound).
  function costCell(totals) {
    const unpriced = totals.unpriced_llm_calls;
    const calls = `${unpriced} LLM call${unpriced === 1 ? "" : "s"}`;
    if (totals.estimated_cost === null) {
      return h("span", { class: "muted", title: unpriced ? `cost unknown: no price for ${calls}` : "no cost known" }, "–");
    }
    if (!unpriced) return cost(totals.estimated_cost);
    return h("span", { title: `at least: no price for ${calls}` }, `≥${cost(totals.estimated_cost)}`);
  }

  function rowElement(row, index, fresh) {
    const totals = row.trace_totals || {};
    const errors = totals.errors || 0;
    const errorText = `${errors} error${errors === 1 ? "" : "s"}`;
    const started = spanStart(row);
    const tr = h("tr", {
      tabindex: index === activeIndex ? "0" : "-1",
      class: fresh ? "fresh" : null,
      dataset: { rootSpanId: row.root_span_id || "", id: row.id || "" },
      "aria-label": `${spanName(row)}, ${shortTime(started)}${errors ? `, ${errorText}` : ""}`,
      onclick: (e) => { if (!e.target.closest("a")) open(row); },
      onfocus: () => setActive(index, false),
    },
    h("td", { class: "col-time" }, started ? h("time", { datetime: started.toISOString(), title: started.toLocaleString() }, shortTime(started)) : ""),
    h("td", { class: "col-name" },
      h("a", { href: traceHref(row), "data-nav": true, tabindex: "-1" }, spanName(row)),
      spanType(row) ? h("span", { class: `type type-${spanType(row)}` }, spanType(row)) : null,
      errors ? h("span", { class: "err-mark", title: `${errorText} in this trace` }, errorText) : null),
    h("td", { class: "col-input" }, h("span", { class: "preview" }, preview(row.input))),
    h("td", { class: "col-output" }, (row.output === undefined || row.output === null) && row.error
      ? h("span", { class: "preview error" }, preview(row.error))
      : h("span", { class: "preview" }, preview(row.output))),
    h("td", { class: "col-duration num" }, typeof totals.duration === "number" ? duration(totals.duration) : h("span", { class: "muted" }, "running")),
    h("td", { class: "col-llm-calls num" }, totals.llm_calls ? totals.llm_calls.toLocaleString() : ""),
    h("td", { class: "col-tokens num" }, totals.tokens ? totals.tokens.toLocaleString() : ""),
    h("td", { class: "col-cost num" }, costCell(totals)),
    h("td", { class: "col-tags" }, tagChips(row.tags)),
    h("td", { class: "col-scores" }, scoreCell(row)));
    return tr;
  }

  function draw(freshIds = new Set()) {
    if (activeIndex >= rows.length) activeIndex = Math.max(0, rows.length - 1);
    const focused = document.activeElement && tbody.contains(document.activeElement);
    if (rows.length === 0) {
      const ranged = since || until ? " in this time range" : "";
      replace(tbody, h("tr", { class: "empty" }, h("td", { colspan: String(COLUMNS.length) },
        filter ? `No traces match this filter${ranged}.`
          : ranged ? `No traces${ranged}.` : "No traces yet. They appear here as they arrive.")));
    } else {
      replace(tbody, rows.map((row, i) => rowElement(row, i, freshIds.has(row.id))));
    }
    if (focused && rows.length) tbody.children[activeIndex].focus();
    status.textContent = rows.length ? `${rows.length} trace${rows.length === 1 ? "" : "s"} shown` : "";
    more.hidden = exhausted;
  }

  function setActive(index, focus = true) {
    if (index < 0 || index >= rows.length) return;
    const prev = tbody.children[activeIndex];
    if (prev) prev.setAttribute("tabindex", "-1");
    activeIndex = index;
    const tr = tbody.children[index];
    tr.setAttribute("tabindex", "0");
    if (focus) {
      tr.focus();
      tr.scrollIntoView({ block: "nearest" });
    }
  }

  async function loadFirst({ live = false } = {}) {
    // Only the latest request may draw: an older answer (say, for the previous filter) that
    // arrives late must not overwrite it.
    const mine = ++generation;
    summary.refresh();
    try {
      const page = await fetchLogs(projectId, { filter, since, until, limit: PAGE, rootsOnly: true }, controller.signal);
      if (mine !== generation) return;
      const full = page.events.length >= PAGE;
      page.events = page.events.filter(isTrace);
      setFilterError("");
      range.showError("");
      ctx.clearError();
      const fresh = new Set();
      if (live && loaded) {
        // Keep the older pages the user loaded; rows updated since move to the top. Under a
        // preset range ("24h") the window moves with now: rows that left it go.
        const seen = new Map(rows.map((r) => [r.id, r._xact_id]));
        for (const r of page.events) if (seen.get(r.id) !== r._xact_id) fresh.add(r.id);
        const ids = new Set(page.events.map((r) => r.id));
        const ago = agoSeconds(since);
        const cutoff = ago === null ? null : new Date(Date.now() - ago * 1000);
        const inWindow = (r) => !cutoff || !spanStart(r) || spanStart(r) >= cutoff;
        const older = rows.filter((r) => !ids.has(r.id) && inWindow(r));
        rows = [...page.events, ...older];
        if (!older.length) {
          // Nothing older was loaded beyond this page: its cursor is the right one to go on.
          cursor = page.cursor;
          exhausted = !full || !page.cursor;
        }
      } else {
        rows = page.events;
        cursor = page.cursor;
        exhausted = !full || !page.cursor;
      }
      loaded = true;
      draw(fresh);
    } catch (err) {
      if (err.name === "AbortError" || mine !== generation) return;
      if (err instanceof ApiError && err.status === 400) {
        // The collector names the field: "since: ..." or "until: ..." is the range's.
        const ofRange = /^(since|until)\b/.test(err.message);
        range.showError(ofRange ? err.message : "");
        setFilterError(ofRange ? "" : err.message);
        rows = [];
        exhausted = true;
        draw();
      } else {
        ctx.showError(err);
      }
    }
  }

  async function loadMore() {
    if (exhausted || !cursor) return;
    more.disabled = true;
    try {
      const mine = generation;
      const page = await fetchLogs(projectId, { filter, since, until, limit: PAGE, cursor, rootsOnly: true }, controller.signal);
      if (mine !== generation) return;
      const full = page.events.length >= PAGE;
      page.events = page.events.filter(isTrace);
      const ids = new Set(rows.map((r) => r.id));
      const before = rows.length;
      rows = rows.concat(page.events.filter((r) => !ids.has(r.id)));
      cursor = page.cursor;
      exhausted = !full || !page.cursor;
      draw();
      if (rows.length > before) setActive(before);
    } catch (err) {
      ctx.showError(err);
    } finally {
      more.disabled = false;
    }
  }

  function applyFilter(value) {
    filter = value.trim();
    loaded = false;
    ctx.setQuery({ filter });
    rememberUrl();
    activeIndex = 0;
    loadFirst();
  }

  function applyRange(next) {
    ({ since, until } = next);
    loaded = false;
    ctx.setQuery({ since, until });
    rememberUrl();
    activeIndex = 0;
    loadFirst();
  }

  function onKey(event) {
    if (event.target === input) {
      if (event.key === "Escape") input.blur();
      if (event.key === "ArrowDown" && rows.length) { event.preventDefault(); setActive(activeIndex); }
      return;
    }
    if (event.target.closest("input, textarea, select, dialog")) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const inTable = tbody.contains(event.target);
    if (event.key === "/") {
      event.preventDefault();
      input.focus();
      input.select();
    } else if ((event.key === "j" || (inTable && event.key === "ArrowDown")) && rows.length) {
      event.preventDefault();
      setActive(inTable ? Math.min(activeIndex + 1, rows.length - 1) : activeIndex);
    } else if ((event.key === "k" || (inTable && event.key === "ArrowUp")) && rows.length) {
      event.preventDefault();
      setActive(inTable ? Math.max(activeIndex - 1, 0) : activeIndex);
    } else if (inTable && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      open(rows[activeIndex]);
    } else if (inTable && event.key === "Home") {
      event.preventDefault();
      setActive(0);
    } else if (inTable && event.key === "End") {
      event.preventDefault();
      setActive(rows.length - 1);
    }
  }

  document.addEventListener("keydown", onKey);
  rememberUrl();
  draw();
  loadFirst();

  return {
    destroy() {
      controller.abort();
      summary.destroy();
      document.removeEventListener("keydown", onKey);
    },
    onLive: coalesced(() => loadFirst({ live: true }), controller.signal),
  };
}
