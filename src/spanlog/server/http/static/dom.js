// Small DOM and formatting helpers shared by the viewer's pages. Every value from a log is
// put into the page as text, never as HTML, so a logged string cannot inject markup.

/** Create an element: h("a", {href: "/", class: "x", onclick: fn}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A one-line preview of any logged value, at most `max` characters. */
export function preview(value, max = 120) {
  if (value === undefined || value === null) return "";
  let text;
  if (typeof value === "string") {
    text = value;
  } else {
    const chat = chatMessages(value);
    if (chat) {
      const last = chat[chat.length - 1];
      text = messageText(last.content);
    } else if (isFlatObject(value)) {
      // {"question": "..."} reads better as "question: ..." in a one-line preview.
      text = Object.entries(value).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
    } else {
      try {
        text = JSON.stringify(value);
      } catch {
        text = String(value);
      }
    }
  }
  text = text.replace(/\s+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function isFlatObject(value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return false;
  const values = Object.values(value);
  return values.length > 0 && values.every((v) => v === null || typeof v !== "object");
}

/** The chat messages in `value`, if it is (or wraps) a list of `{role, content}`. */
export function chatMessages(value) {
  let list = value;
  if (list && !Array.isArray(list) && typeof list === "object" && Array.isArray(list.messages)) {
    list = list.messages;
  }
  if (!Array.isArray(list) || list.length === 0) return null;
  const ok = list.every((m) => m && typeof m === "object" && !Array.isArray(m)
    && typeof m.role === "string" && ("content" in m || "tool_calls" in m));
  return ok ? list : null;
}

/** Plain text of a chat message's content (a string or a list of parts). */
export function messageText(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => {
      if (typeof part === "string") return part;
      if (part && typeof part.text === "string") return part.text;
      if (part && part.type) return `[${part.type}]`;
      return JSON.stringify(part);
    }).join(" ");
  }
  return JSON.stringify(content);
}

/** Seconds as a short human duration: 850ms, 1.42s, 2m 05s. */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return `${m}m ${String(s).padStart(2, "0")}s`;
}

/**
 * US dollars as the collector's command line writes them: $12.34, $0.50, $0.0123 (three
 * significant digits below a dollar, so a fraction of a cent still shows); "–" when unknown.
 */
export function cost(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  const sign = value < 0 ? "-" : "";
  const magnitude = Math.abs(value);
  if (magnitude >= 1 || magnitude === 0) {
    return `${sign}$${magnitude.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  }
  if (magnitude < 1e-6) return `${sign}<$0.000001`;
  const [whole, fraction] = magnitude.toFixed(2 - Math.floor(Math.log10(magnitude))).split(".");
  return `${sign}$${whole}.${fraction.replace(/0+$/, "").padEnd(2, "0")}`;
}

/** A span's duration in seconds from its metrics, or null while it is still open. */
export function spanSeconds(row) {
  const m = (row && row.metrics) || {};
  if (typeof m.start === "number" && typeof m.end === "number") return m.end - m.start;
  return null;
}

/** Total tokens of a span from its metrics, or null. */
export function spanTokens(row) {
  const m = (row && row.metrics) || {};
  if (typeof m.tokens === "number") return m.tokens;
  const p = typeof m.prompt_tokens === "number" ? m.prompt_tokens : null;
  const c = typeof m.completion_tokens === "number" ? m.completion_tokens : null;
  if (p === null && c === null) return null;
  return (p || 0) + (c || 0);
}

/** A row's start as a Date: metrics.start, else created. */
export function spanStart(row) {
  const m = (row && row.metrics) || {};
  if (typeof m.start === "number") return new Date(m.start * 1000);
  if (row && row.created) {
    const d = new Date(row.created);
    if (!Number.isNaN(d.getTime())) return d;
  }
  return null;
}

const pad = (n) => String(n).padStart(2, "0");

/** Local time: "14:03:07" today, "Mar 4 14:03" otherwise. */
export function shortTime(date) {
  if (!date) return "";
  const now = new Date();
  if (date.toDateString() === now.toDateString()) {
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }
  const month = date.toLocaleString("en", { month: "short" });
  return `${month} ${date.getDate()} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export function spanName(row) {
  const attrs = (row && row.span_attributes) || {};
  return attrs.name || "(unnamed)";
}

export function spanType(row) {
  const attrs = (row && row.span_attributes) || {};
  return attrs.type || "";
}

/** A score in [0, 1] as a percentage string. */
export function percent(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return `${Math.round(value * 1000) / 10}%`;
}

/** A small coloured chip for a score. */
export function scoreChip(name, value, title, { showName = true } = {}) {
  const cls = typeof value !== "number" ? "none" : value >= 0.75 ? "good" : value >= 0.4 ? "mid" : "bad";
  return h("span", { class: `score ${cls}`, title: title || `${name}: ${percent(value)}` },
    showName ? [h("span", { class: "score-name" }, name), " "] : null, h("b", {}, percent(value)));
}

export function tagChips(tags) {
  if (!Array.isArray(tags)) return null;
  return tags.map((t) => h("span", { class: "tag" }, String(t)));
}
