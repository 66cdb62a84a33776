// Sessions: a project's traces grouped into conversations by the session key (a project
// setting, default metadata.session_id; docs/protocol.md, "Sessions").
//
// - /projects/<id>/sessions: the sessions, latest first, with counts and totals, paged; the
//   session key can be changed here.
// - /projects/<id>/sessions/<session id>: one session as a conversation, each trace's input
//   and output as chat turns in start order with its totals; a turn opens its trace.

import { ApiError, changeSettings, getSession, listSessions } from "./api.js";
import { chatMessages, duration, h, messageText, replace, shortTime, spanStart } from "./dom.js";

const PAGE = 50;
const enc = encodeURIComponent;

function when(seconds) {
  if (typeof seconds !== "number") return "";
  const date = new Date(seconds * 1000);
  return h("time", { datetime: date.toISOString(), title: date.toLocaleString() }, shortTime(date));
}

function cost(value) {
  return typeof value === "number" ? `$${value < 0.01 ? value.toFixed(4) : value.toFixed(2)}` : "–";
}

/** Totals as short labelled figures: duration, LLM calls, tokens, cost, errors. */
function figures(totals) {
  const t = totals || {};
  const items = [
    ["duration", t.duration === null || t.duration === undefined ? "–" : duration(t.duration)],
    ["LLM calls", String(t.llm_calls || 0)],
    ["tokens", (t.tokens || 0).toLocaleString()],
    ["cost", cost(t.estimated_cost)],
  ];
  return h("span", { class: "figures" },
    items.map(([label, value]) => h("span", { class: "figure" }, h("span", { class: "muted" }, `${label} `), value)),
    t.errors ? h("span", { class: "err-mark", title: "errors in this trace" }, `${t.errors} error${t.errors === 1 ? "" : "s"}`) : null);
}

/** The text of one side of a turn: a string, the last chat message, or JSON. */
function turnText(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  const chat = chatMessages(value);
  if (chat) return messageText(chat[chat.length - 1].content);
  if (typeof value === "object" && !Array.isArray(value) && "content" in value) return messageText(value.content);
  return JSON.stringify(value, null, 2);
}

function crumbs(ctx, projectId, last) {
  const logs = `/projects/${enc(projectId)}`;
  const set = (name) => ctx.setCrumbs([["Projects", "/"], [name, logs],
    ...(last ? [["Sessions", `${logs}/sessions`], [last, null]] : [["Sessions", null]])]);
  set(projectId);
  ctx.projectName(projectId).then(set);
}

export function sessionsPage(main, projectId, params, ctx) {
  const controller = new AbortController();
  let cursor = null;
  let sessions = [];
  crumbs(ctx, projectId, null);

  const tbody = h("tbody", {});
  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "more", hidden: true, onclick: () => load(true) }, "Load older sessions");
  const keyInput = h("input", { id: "session-key", name: "session_key", autocomplete: "off", spellcheck: "false" });
  const keyError = h("p", { class: "filter-error", role: "alert", hidden: true });
  const keyForm = h("form", { class: "session-key", onsubmit: (e) => { e.preventDefault(); saveKey(); } },
    h("label", { for: "session-key" }, "Session key"),
    h("div", { class: "filter-row" }, keyInput, h("button", { type: "submit" }, "Save")),
    h("p", { class: "muted small" }, "Traces whose root spans share this metadata field form one session."),
    keyError);

  replace(main, h("section", { class: "page sessions-page" },
    h("h1", {}, "Sessions"), keyForm,
    h("div", { class: "table-wrap" }, h("table", { class: "sessions", "aria-label": "Sessions, latest first" },
      h("thead", {}, h("tr", {}, ["Session", "Last trace", "Traces", "Totals"].map((c) => h("th", { scope: "col" }, c)))),
      tbody)),
    h("div", { class: "table-foot" }, status, more)));

  function row(session) {
    const href = `/projects/${enc(projectId)}/sessions/${enc(session.session_id)}`;
    return h("tr", { dataset: { sessionId: session.session_id } },
      h("td", { class: "col-session" }, h("a", { href, "data-nav": true }, session.session_id)),
      h("td", {}, when(session.last_start)),
      h("td", { class: "num" }, String(session.traces)),
      h("td", {}, figures(session.totals)));
  }

  function draw() {
    if (!sessions.length) {
      replace(tbody, h("tr", { class: "empty" }, h("td", { colspan: "4" },
        `No sessions yet: no root span has a text value at ${keyInput.value || "the session key"}.`)));
    } else {
      replace(tbody, sessions.map(row));
    }
    status.textContent = sessions.length ? `${sessions.length} session${sessions.length === 1 ? "" : "s"} shown` : "";
    more.hidden = !cursor;
  }

  async function load(next = false) {
    try {
      const page = await listSessions(projectId, { limit: PAGE, cursor: next ? cursor : null,
        since: params.get("since"), until: params.get("until") }, controller.signal);
      if (document.activeElement !== keyInput) keyInput.value = page.key;
      sessions = next ? sessions.concat(page.sessions) : page.sessions;
      cursor = page.cursor;
      draw();
    } catch (err) {
      ctx.showError(err);
    }
  }

  async function saveKey() {
    keyError.hidden = true;
    try {
      const settings = await changeSettings(projectId, { session_key: keyInput.value.trim() || null });
      keyInput.value = settings.session_key;
      cursor = null;
      await load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) {
        keyError.textContent = err.message;
        keyError.hidden = false;
      } else {
        ctx.showError(err);
      }
    }
  }

  load();
  return { destroy() { controller.abort(); } };
}

export function sessionPage(main, projectId, sessionId, params, ctx) {
  const controller = new AbortController();
  crumbs(ctx, projectId, sessionId);
  const summary = h("div", { class: "session-summary" });
  const turns = h("ol", { class: "chat conversation", "aria-label": "Conversation, oldest first" });
  const note = h("p", { class: "muted small", hidden: true });
  replace(main, h("section", { class: "page session-page" },
    h("h1", {}, h("span", { class: "muted" }, "Session "), sessionId), summary, note, turns));

  function turn(trace) {
    const href = `/projects/${enc(projectId)}/traces/${enc(trace.root_span_id)}`;
    const open = () => ctx.navigate(href);
    const output = trace.output === undefined || trace.output === null ? null : trace.output;
    const started = spanStart(trace);
    return h("li", {
      class: "turn", tabindex: "0", dataset: { rootSpanId: trace.root_span_id || "" },
      "aria-label": `Turn at ${shortTime(started)}: open its trace`,
      onclick: (e) => { if (!e.target.closest("a")) open(); },
      onkeydown: (e) => { if (e.key === "Enter") open(); },
    },
    h("div", { class: "msg role-user" }, h("div", { class: "chat-role" }, "user"),
      h("div", { class: "chat-text" }, turnText(trace.input))),
    output !== null
      ? h("div", { class: "msg role-assistant" }, h("div", { class: "chat-role" }, "assistant"),
        h("div", { class: "chat-text" }, turnText(output)))
      : (trace.error
        ? h("div", { class: "msg role-assistant turn-error" }, h("div", { class: "chat-role" }, "error"),
          h("div", { class: "chat-text" }, turnText(trace.error)))
        : null),
    h("div", { class: "turn-meta muted small" },
      started ? h("time", { datetime: started.toISOString(), title: started.toLocaleString() }, shortTime(started)) : null,
      " · ", figures(trace.trace_totals), " · ",
      h("a", { href, "data-nav": true }, "open trace")));
  }

  async function load() {
    try {
      const data = await getSession(projectId, sessionId, controller.signal);
      const s = data.session;
      replace(summary, h("p", {}, `${s.traces} trace${s.traces === 1 ? "" : "s"}, `,
        when(s.first_start), " – ", when(s.last_start), " · ", figures(s.totals)),
        h("p", { class: "muted small" }, `Grouped by ${data.key}.`));
      note.hidden = !data.truncated;
      note.textContent = data.truncated ? "Showing the 1,000 most recently updated traces of this session." : "";
      replace(turns, data.traces.map(turn));
    } catch (err) {
      ctx.showError(err);
    }
  }

  load();
  return {
    destroy() { controller.abort(); },
    onLive() { load(); },
  };
}
