// The logs table of one project: root spans, most recently updated first, with a filter box
// (kept in the URL), cursor paging, per-trace score averages and live updates.

import { ApiError, fetchLogs, fetchTrace } from "./api.js";
import {
  duration, h, preview, replace, scoreChip, shortTime, spanName, spanSeconds, spanStart,
  spanTokens, spanType, tagChips,
} from "./dom.js";
import { summaryPanel } from "./summary.js";

const PAGE = 50;
const TRACE_FETCHES = 4;   // concurrent trace loads when rows come without scores_avg

// Comment rows have no parents but are no traces; a collector may still list them as roots.
const isTrace = (row) => !(row && row.origin && row.comment);

export function logsPage(main, projectId, params, ctx) {
  const controller = new AbortController();
  let filter = params.get("filter") || "";
  let rows = [];           // rows shown, in order
  let cursor = null;       // where the next page starts; null when there is none
  let exhausted = false;
  let activeIndex = 0;     // the row that holds the roving tabindex
  let refreshing = null;
  let loaded = false;
  let generation = 0;      // whether a first page arrived (before that nothing is "new")
  const averages = new Map();   // root_span_id -> {xact, scores}
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

  const tbody = h("tbody", {});
  const table = h("table", { class: "logs", "aria-label": "Traces, most recently updated first" },
    h("thead", {}, h("tr", {},
      ["Time", "Name", "Input", "Output", "Duration", "Tokens", "Tags", "Scores"].map((c) =>
        h("th", { scope: "col", class: `col-${c.toLowerCase()}` }, c)))),
    tbody);
  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "more", onclick: () => loadMore(), hidden: true }, "Load older traces");
  const summary = summaryPanel(projectId);

  replace(main, h("section", { class: "page logs-page" },
    summary.element, form, h("div", { class: "table-wrap" }, table), h("div", { class: "table-foot" }, status, more)));

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

  function rowScores(row) {
    if (row.scores_avg && typeof row.scores_avg === "object") return row.scores_avg;
    const known = averages.get(row.root_span_id);
    if (known) return known.scores;
    return row.scores || null;
  }

  function scoreCell(row) {
    const scores = rowScores(row);
    if (!scores) return null;
    return Object.entries(scores).filter(([, v]) => v !== null && v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, value]) => scoreChip(name, value, `${name}: average over the trace`));
  }

  function rowElement(row, index, fresh) {
    const seconds = spanSeconds(row);
    const tokens = spanTokens(row);
    const started = spanStart(row);
    const tr = h("tr", {
      tabindex: index === activeIndex ? "0" : "-1",
      class: fresh ? "fresh" : null,
      dataset: { rootSpanId: row.root_span_id || "", id: row.id || "" },
      "aria-label": `${spanName(row)}, ${shortTime(started)}`,
      onclick: (e) => { if (!e.target.closest("a")) open(row); },
      onfocus: () => setActive(index, false),
    },
    h("td", { class: "col-time" }, started ? h("time", { datetime: started.toISOString(), title: started.toLocaleString() }, shortTime(started)) : ""),
    h("td", { class: "col-name" },
      h("a", { href: traceHref(row), "data-nav": true, tabindex: "-1" }, spanName(row)),
      spanType(row) ? h("span", { class: `type type-${spanType(row)}` }, spanType(row)) : null,
      row.error !== undefined && row.error !== null ? h("span", { class: "err-mark", title: "error" }, "error") : null),
    h("td", { class: "col-input" }, h("span", { class: "preview" }, preview(row.input))),
    h("td", { class: "col-output" }, (row.output === undefined || row.output === null) && row.error
      ? h("span", { class: "preview error" }, preview(row.error))
      : h("span", { class: "preview" }, preview(row.output))),
    h("td", { class: "col-duration num" }, seconds === null ? h("span", { class: "muted" }, "running") : duration(seconds)),
    h("td", { class: "col-tokens num" }, tokens === null ? "" : tokens.toLocaleString()),
    h("td", { class: "col-tags" }, tagChips(row.tags)),
    h("td", { class: "col-scores" }, scoreCell(row)));
    return tr;
  }

  function draw(freshIds = new Set()) {
    if (activeIndex >= rows.length) activeIndex = Math.max(0, rows.length - 1);
    const focused = document.activeElement && tbody.contains(document.activeElement);
    if (rows.length === 0) {
      replace(tbody, h("tr", { class: "empty" }, h("td", { colspan: "8" },
        filter ? "No traces match this filter." : "No traces yet. They appear here as they arrive.")));
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

  // Traces whose rows came without per-trace averages: load each trace once per change of
  // its root row and average from there (a collector that sends scores_avg skips this).
  async function fillAverages(list) {
    const todo = list.filter((row) => !row.scores_avg && row.root_span_id
      && (!averages.has(row.root_span_id) || averages.get(row.root_span_id).xact !== row._xact_id));
    const work = todo.slice();
    async function worker() {
      while (work.length && !controller.signal.aborted) {
        const row = work.shift();
        try {
          const spans = await fetchTrace(projectId, row.root_span_id, controller.signal);
          const root = spans.find((s) => !s.span_parents || s.span_parents.length === 0) || spans[0];
          averages.set(row.root_span_id, { xact: row._xact_id, scores: (root && (root.scores_avg || root.scores)) || null });
        } catch {
          return;
        }
      }
    }
    if (!todo.length) return;
    await Promise.all(Array.from({ length: TRACE_FETCHES }, worker));
    if (!controller.signal.aborted) draw();
  }

  async function loadFirst({ live = false } = {}) {
    // Only the latest request may draw: an older answer (say, for the previous filter) that
    // arrives late must not overwrite it.
    const mine = ++generation;
    summary.refresh();
    try {
      const page = await fetchLogs(projectId, { filter, limit: PAGE, rootsOnly: true }, controller.signal);
      if (mine !== generation) return;
      const full = page.events.length >= PAGE;
      page.events = page.events.filter(isTrace);
      setFilterError("");
      ctx.clearError();
      const fresh = new Set();
      if (live && loaded) {
        // Keep the older pages the user loaded; rows updated since move to the top.
        const seen = new Map(rows.map((r) => [r.id, r._xact_id]));
        for (const r of page.events) if (seen.get(r.id) !== r._xact_id) fresh.add(r.id);
        const ids = new Set(page.events.map((r) => r.id));
        const covered = rows.every((r) => ids.has(r.id));
        rows = [...page.events, ...rows.filter((r) => !ids.has(r.id))];
        if (covered) {
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
      fillAverages(rows);
    } catch (err) {
      if (err.name === "AbortError" || mine !== generation) return;
      if (err instanceof ApiError && err.status === 400) {
        setFilterError(err.message);
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
      const page = await fetchLogs(projectId, { filter, limit: PAGE, cursor, rootsOnly: true }, controller.signal);
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
      fillAverages(rows);
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
    onLive() {
      // Coalesce bursts: at most one refresh in flight and one queued after it.
      if (refreshing) {
        refreshing.again = true;
        return;
      }
      refreshing = { again: false };
      const run = async () => {
        await loadFirst({ live: true });
        if (refreshing && refreshing.again && !controller.signal.aborted) {
          refreshing.again = false;
          return run();
        }
        refreshing = null;
      };
      run();
    },
  };
}
