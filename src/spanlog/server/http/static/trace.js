// The trace view: the span tree with a timing waterfall, and a detail pane for the selected
// span (its fields, own and averaged scores, comments and a feedback form).

import { fetchTrace } from "./api.js";
import {
  duration, h, percent, replace, scoreChip, shortTime, spanName, spanSeconds, spanStart,
  spanTokens, spanType, tagChips,
} from "./dom.js";
import { feedbackPanel } from "./feedback.js";
import { jsonTree, renderValue } from "./json.js";

/** Comment rows (any row with a `comment`) are no spans: they point at the span they are
 * about through `origin.id`, and the collector files them into that span's trace. */
function isComment(row) {
  return Boolean(row) && row.comment !== undefined && row.comment !== null;
}

/** The row id a comment row is about, or null. */
function commentTarget(row) {
  const id = row.origin && row.origin.id;
  return typeof id === "string" ? id : null;
}

/** The spans of a trace as a depth-first list of {row, depth}, children by start time. */
export function flattenTree(spans) {
  const bySpan = new Map();
  for (const row of spans) if (row.span_id) bySpan.set(row.span_id, { row, children: [] });
  const roots = [];
  for (const node of bySpan.values()) {
    const parents = node.row.span_parents || [];
    const parent = parents.length ? bySpan.get(parents[0]) : null;
    if (parent && parent !== node) parent.children.push(node);
    else roots.push(node);
  }
  const startOf = (n) => {
    const m = n.row.metrics || {};
    return typeof m.start === "number" ? m.start : Number.POSITIVE_INFINITY;
  };
  const out = [];
  const seen = new Set();
  function walk(node, depth) {
    if (seen.has(node)) return;   // a malformed parent cycle must not hang the page
    seen.add(node);
    out.push({ row: node.row, depth, hasChildren: node.children.length > 0 });
    node.children.sort((a, b) => startOf(a) - startOf(b));
    for (const child of node.children) walk(child, depth + 1);
  }
  roots.sort((a, b) => {
    const ar = !(a.row.span_parents || []).length;
    const br = !(b.row.span_parents || []).length;
    return ar === br ? startOf(a) - startOf(b) : (ar ? -1 : 1);
  });
  for (const root of roots) walk(root, 0);
  return out;
}

function section(title, body, cls = "") {
  if (body === null || body === undefined) return null;
  const key = title.split(" ")[0].toLowerCase();
  return h("section", { class: `field ${cls}`.trim(), dataset: { field: key } }, h("h3", {}, title), body);
}

function scoresTable(row) {
  const own = (row.scores && typeof row.scores === "object") ? row.scores : {};
  const avg = (row.scores_avg && typeof row.scores_avg === "object") ? row.scores_avg : {};
  const names = [...new Set([...Object.keys(own), ...Object.keys(avg)])].sort();
  if (!names.length) return null;
  return h("table", { class: "scores-table" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Score"),
      h("th", { scope: "col", class: "num" }, "This span"),
      h("th", { scope: "col", class: "num", title: "Average over this span and its descendants" }, "Averaged"))),
    h("tbody", {}, names.map((name) => h("tr", { dataset: { score: name } },
      h("th", { scope: "row" }, name),
      h("td", { class: "num own" }, name in own ? percent(own[name]) : "–"),
      h("td", { class: "num avg" }, name in avg ? percent(avg[name]) : "–")))));
}

function metricsView(row) {
  const m = row.metrics;
  if (!m || typeof m !== "object" || !Object.keys(m).length) return null;
  const items = [];
  const seconds = spanSeconds(row);
  if (seconds !== null) items.push(["duration", duration(seconds)]);
  if (typeof m.start === "number") items.push(["start", new Date(m.start * 1000).toLocaleString()]);
  if (typeof m.end === "number") items.push(["end", new Date(m.end * 1000).toLocaleString()]);
  for (const [k, v] of Object.entries(m)) {
    if (k === "start" || k === "end") continue;
    items.push([k, typeof v === "number" ? (k.includes("time") ? duration(v) : v.toLocaleString())
      : JSON.stringify(v)]);
  }
  return h("dl", { class: "kv metrics" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function commentsView(comments) {
  if (!comments.length) return null;
  return h("ol", { class: "comments" }, comments.map((c) => {
    const when = c.created ? new Date(c.created) : null;
    const who = (c._audit_metadata && (c._audit_metadata.user_email || c._audit_metadata.user))
      || c._audit_source || "";
    return h("li", {},
      h("div", { class: "comment-meta muted small" }, [who, when && !Number.isNaN(when.getTime()) ? shortTime(when) : ""].filter(Boolean).join(" · ")),
      h("div", { class: "comment-text" }, String((c.comment && c.comment.text) ?? "")));
  }));
}

export function tracePage(main, projectId, rootSpanId, params, ctx) {
  const controller = new AbortController();
  let spans = [];            // tree order: {row, depth, hasChildren}
  let comments = [];
  let selectedId = params.get("span") || null;
  let detailOpen = true;
  let focusIndex = 0;
  let generation = 0;
  let feedback = null;       // the form of the selected span, kept across refreshes
  const pendingComments = new Map();   // span id -> [texts] sent but not yet read back
  const base = `/projects/${encodeURIComponent(projectId)}`;
  let backHref = base;
  try {
    backHref = sessionStorage.getItem(`spanlog.logs.${projectId}`) || base;
  } catch { /* storage disabled */ }

  const heading = h("h1", {}, "Trace");
  const summary = h("div", { class: "trace-summary muted" });
  const tree = h("div", { class: "tree", role: "tree", "aria-label": "Spans of this trace" });
  const detail = h("aside", { class: "detail", "aria-label": "Span details", tabindex: "-1" });
  const layout = h("div", { class: "trace-layout" }, h("div", { class: "tree-pane" },
    h("div", { class: "tree-head", "aria-hidden": "true" }, h("span", {}, "Span"), h("span", {}, "Timeline")), tree), detail);
  replace(main, h("section", { class: "page trace-page" },
    h("div", { class: "trace-head" },
      h("a", { href: backHref, "data-nav": true, class: "back" }, "← Logs"), heading, summary),
    layout));

  function setCrumbs(traceName) {
    ctx.projectName(projectId).then((name) => {
      ctx.setCrumbs([["Projects", "/"], [name, backHref], [traceName, null]]);
    });
  }
  setCrumbs("Trace");

  function selectedIndex() {
    const i = spans.findIndex((s) => s.row.id === selectedId);
    return i < 0 ? 0 : i;
  }

  function drawTree() {
    if (!spans.length) {
      replace(tree, h("p", { class: "muted" }, "This trace has no spans (yet)."));
      return;
    }
    const starts = spans.map((s) => (s.row.metrics || {}).start).filter((v) => typeof v === "number");
    const ends = spans.map((s) => (s.row.metrics || {}).end).filter((v) => typeof v === "number");
    const t0 = starts.length ? Math.min(...starts) : 0;
    let t1 = Math.max(t0, ...ends, ...starts);
    // A span still running stretches the timeline to now.
    if (ends.length < spans.length) t1 = Math.max(t1, Date.now() / 1000);
    const total = Math.max(t1 - t0, 1e-6);
    const focusedInTree = tree.contains(document.activeElement);
    replace(tree, spans.map(({ row, depth }, i) => {
      const m = row.metrics || {};
      const start = typeof m.start === "number" ? m.start : t0;
      const end = typeof m.end === "number" ? m.end : t1;
      const left = ((start - t0) / total) * 100;
      const width = Math.max(((end - start) / total) * 100, 0.4);
      const seconds = spanSeconds(row);
      const selected = row.id === selectedId && detailOpen;
      const type = spanType(row);
      const hasError = row.error !== undefined && row.error !== null;
      return h("div", {
        role: "treeitem", "aria-level": String(depth + 1), "aria-selected": String(selected),
        tabindex: i === focusIndex ? "0" : "-1",
        class: `tree-item${selected ? " selected" : ""}${hasError ? " has-error" : ""}`,
        dataset: { id: row.id, spanId: row.span_id || "" },
        onclick: () => select(i, true),
        onfocus: () => { focusIndex = i; },
      },
      h("span", { class: "tree-label", style: { paddingLeft: `${depth * 16 + 6}px` } },
        type ? h("span", { class: `type type-${type}` }, type) : null,
        h("span", { class: "tree-name" }, spanName(row)),
        row.scores && typeof row.scores === "object"
          ? Object.entries(row.scores).filter(([, v]) => typeof v === "number")
            .map(([n, v]) => scoreChip(n, v, null, { showName: n !== spanName(row) })) : null,
        hasError ? h("span", { class: "err-mark", title: "error" }, "error") : null),
      h("span", { class: "tree-dur num" }, seconds === null ? "…" : duration(seconds)),
      h("span", { class: "bar-track", "aria-hidden": "true" },
        h("span", { class: `bar${seconds === null ? " running" : ""} bar-${type || "none"}`, style: { left: `${left}%`, width: `${Math.min(width, 100 - left)}%` } })));
    }));
    if (focusedInTree && tree.children[focusIndex]) tree.children[focusIndex].focus();
  }

  function drawDetail() {
    const entry = spans.find((s) => s.row.id === selectedId);
    layout.classList.toggle("with-detail", Boolean(entry && detailOpen));
    if (!entry || !detailOpen) {
      detail.hidden = true;
      replace(detail);
      return;
    }
    detail.hidden = false;
    const row = entry.row;
    if (!feedback || feedback.id !== row.id) {
      feedback = feedbackPanel(projectId, row, ctx, (kind, item) => saved(row.id, kind, item));
    } else {
      feedback.update(row);
    }
    const mine = comments.filter((c) => commentTarget(c) === row.id);
    const texts = new Set(mine.map((c) => c.comment && c.comment.text));
    const pending = (pendingComments.get(row.id) || []).filter((t) => !texts.has(t));
    pendingComments.set(row.id, pending);
    const allComments = [...mine, ...pending.map((t) => ({ comment: { text: t }, _audit_source: "app" }))];
    const started = spanStart(row);
    const tokens = spanTokens(row);
    const seconds = spanSeconds(row);
    const has = (v) => v !== undefined && v !== null;
    // Re-rendering moves the feedback form; whoever was typing in it keeps focus and caret.
    const active = feedback.el.contains(document.activeElement) ? document.activeElement : null;
    const caret = active && "selectionStart" in active ? [active.selectionStart, active.selectionEnd] : null;
    replace(detail,
      h("div", { class: "detail-head" },
        h("h2", { id: "detail-title" }, spanName(row)),
        spanType(row) ? h("span", { class: `type type-${spanType(row)}` }, spanType(row)) : null,
        h("button", { type: "button", class: "ghost close", "aria-label": "Close details (Escape)", title: "Close (Escape)", onclick: closeDetail }, "×")),
      h("p", { class: "muted small detail-sub" },
        [started ? started.toLocaleString() : "", seconds !== null ? duration(seconds) : "running",
          tokens !== null ? `${tokens.toLocaleString()} tokens` : ""].filter(Boolean).join(" · ")),
      Array.isArray(row.tags) && row.tags.length ? h("div", { class: "tags" }, tagChips(row.tags)) : null,
      has(row.error) ? section("Error", renderValue(row.error), "error") : null,
      section("Scores", scoresTable(row)),
      section("Input", has(row.input) ? renderValue(row.input) : null),
      section("Output", has(row.output) ? renderValue(row.output) : null),
      section("Expected", has(row.expected) ? renderValue(row.expected) : null),
      section("Metadata", row.metadata && Object.keys(row.metadata).length ? renderValue(row.metadata) : null),
      section("Metrics", metricsView(row)),
      section(`Comments (${allComments.length})`, allComments.length ? commentsView(allComments) : null),
      feedback.el,
      h("details", { class: "raw-row" },
        h("summary", {}, "Row"),
        h("dl", { class: "kv ids" },
          h("dt", {}, "id"), h("dd", { class: "mono" }, row.id),
          h("dt", {}, "span_id"), h("dd", { class: "mono" }, row.span_id || ""),
          h("dt", {}, "root_span_id"), h("dd", { class: "mono" }, row.root_span_id || "")),
        jsonTree(row)));
    detail.setAttribute("aria-labelledby", "detail-title");
    if (active) {
      active.focus();
      if (caret) active.setSelectionRange(caret[0], caret[1]);
    }
  }

  // Feedback shows at once: applied to the row on screen, then read back from the collector.
  function saved(id, kind, item) {
    const entry = spans.find((s) => s.row.id === id);
    if (entry && kind === "thumbs") entry.row.scores = { ...(entry.row.scores || {}), ...item.scores };
    if (entry && kind === "expected") entry.row.expected = item.expected;
    if (kind === "comment") pendingComments.set(id, [...(pendingComments.get(id) || []), item.comment]);
    draw();
    reload();
  }

  function draw() {
    drawTree();
    drawDetail();
  }

  function select(i, focus) {
    if (i < 0 || i >= spans.length) return;
    focusIndex = i;
    selectedId = spans[i].row.id;
    detailOpen = true;
    ctx.setQuery({ span: spans[i].row.id === (spans[0] && spans[0].row.id) ? null : selectedId });
    draw();
    if (focus && tree.children[i]) tree.children[i].focus();
  }

  function closeDetail() {
    detailOpen = false;
    draw();
    if (tree.children[focusIndex]) tree.children[focusIndex].focus();
  }

  async function reload() {
    const mine = ++generation;   // a late answer to an older reload must not win
    try {
      const rows = await fetchTrace(projectId, rootSpanId, controller.signal);
      if (mine !== generation) return;
      // The trace endpoint returns the trace's comment rows with its spans; they show in
      // the detail of the span they are about (origin.id), never in the tree.
      spans = flattenTree(rows.filter((r) => !isComment(r)));
      const when = (r) => String(r.created || "");
      comments = rows.filter(isComment).sort((a, b) => when(a).localeCompare(when(b)));
      if (!selectedId || !spans.some((s) => s.row.id === selectedId)) {
        selectedId = spans.length ? spans[0].row.id : null;
      }
      focusIndex = selectedIndex();
      const root = spans[0] && spans[0].row;
      if (root) {
        heading.textContent = spanName(root);
        setCrumbs(spanName(root));
        const started = spanStart(root);
        const seconds = spanSeconds(root);
        const avg = root.scores_avg || {};
        replace(summary,
          started ? h("span", {}, started.toLocaleString()) : null,
          h("span", {}, seconds === null ? "running" : duration(seconds)),
          h("span", {}, `${spans.length} span${spans.length === 1 ? "" : "s"}`),
          spanTokens(root) !== null ? h("span", {}, `${spanTokens(root).toLocaleString()} tokens`) : null,
          Object.keys(avg).length ? h("span", { class: "trace-scores", "aria-label": "Trace scores, averaged" },
            Object.entries(avg).sort(([a], [b]) => a.localeCompare(b))
              .map(([n, v]) => scoreChip(n, v, `${n}: average over the whole trace`))) : null);
      }
      draw();
    } catch (err) {
      if (err.name !== "AbortError") ctx.showError(err);
    }
  }

  function onKey(event) {
    if (event.target.closest("input, textarea, select, dialog")) {
      if (event.key === "Escape" && event.target.closest(".detail")) event.target.blur();
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const inTree = tree.contains(event.target);
    if (event.key === "Escape") {
      event.preventDefault();
      if (detailOpen) closeDetail();
      else ctx.navigate(backHref);
    } else if (event.key === "j" || (inTree && event.key === "ArrowDown")) {
      event.preventDefault();
      select(Math.min(focusIndex + (inTree ? 1 : 0), spans.length - 1), true);
    } else if (event.key === "k" || (inTree && event.key === "ArrowUp")) {
      event.preventDefault();
      select(Math.max(focusIndex - (inTree ? 1 : 0), 0), true);
    } else if (inTree && event.key === "Home") {
      event.preventDefault();
      select(0, true);
    } else if (inTree && event.key === "End") {
      event.preventDefault();
      select(spans.length - 1, true);
    } else if (inTree && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      select(focusIndex, true);
    }
  }

  document.addEventListener("keydown", onKey);
  reload().then(() => {
    if (tree.children[focusIndex] && !document.activeElement.closest("input, textarea")) {
      tree.children[focusIndex].focus();
    }
  });

  return {
    destroy() {
      controller.abort();
      document.removeEventListener("keydown", onKey);
    },
    onLive() { reload(); },
  };
}
