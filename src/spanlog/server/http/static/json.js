// Logged values rendered readably: collapsible objects and arrays (native <details>, so the
// keyboard works without extra code), long strings folded, chat messages as a conversation.

import { h, chatMessages, messageText } from "./dom.js";

const FOLD_AT = 400;          // characters of a string shown before "show more"
const OPEN_DEPTH = 2;         // levels expanded at first
const OPEN_MAX_ITEMS = 30;    // bigger containers start collapsed

/** A string, folded when long; the fold opens and closes with a button. */
export function foldedString(text, cls = "j-str") {
  if (text.length <= FOLD_AT) return h("span", { class: cls }, text);
  const head = text.slice(0, FOLD_AT);
  const span = h("span", { class: `${cls} folded` }, head, "…");
  let open = false;
  const button = h("button", {
    type: "button",
    class: "link fold",
    "aria-expanded": "false",
    onclick: () => {
      open = !open;
      span.textContent = open ? text : `${head}…`;
      button.textContent = open ? "show less" : `show ${text.length - FOLD_AT} more characters`;
      button.setAttribute("aria-expanded", String(open));
    },
  }, `show ${text.length - FOLD_AT} more characters`);
  return h("span", { class: "fold-wrap" }, span, " ", button);
}

function scalar(value) {
  if (value === null) return h("span", { class: "j-null" }, "null");
  switch (typeof value) {
    case "string": return h("span", { class: "j-q" }, foldedString(value));
    case "number": return h("span", { class: "j-num" }, String(value));
    case "boolean": return h("span", { class: "j-bool" }, String(value));
    default: return h("span", {}, String(value));
  }
}

function summary(value) {
  if (Array.isArray(value)) return `[${value.length} item${value.length === 1 ? "" : "s"}]`;
  const n = Object.keys(value).length;
  return `{${n} key${n === 1 ? "" : "s"}}`;
}

/** A JSON value as a collapsible tree. */
export function jsonTree(value, depth = 0) {
  if (value === null || typeof value !== "object") return scalar(value);
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (entries.length === 0) return h("span", { class: "j-empty" }, Array.isArray(value) ? "[]" : "{}");
  const open = depth < OPEN_DEPTH && entries.length <= OPEN_MAX_ITEMS;
  const list = h("ul", { class: "j-list" }, entries.map(([key, child]) => {
    const nested = child !== null && typeof child === "object";
    const keyEl = h("span", { class: Array.isArray(value) ? "j-idx" : "j-key" }, String(key));
    if (nested && Object.keys(child).length > 0) {
      return h("li", {}, h("details", { open: depth + 1 < OPEN_DEPTH },
        h("summary", {}, keyEl, " ", h("span", { class: "j-sum" }, summary(child))),
        jsonTree(child, depth + 1)));
    }
    return h("li", {}, keyEl, h("span", { class: "j-colon" }, ": "), jsonTree(child, depth + 1));
  }));
  if (depth === 0) {
    return h("details", { class: "j-root", open },
      h("summary", {}, h("span", { class: "j-sum" }, summary(value))), list);
  }
  return list;
}

function conversation(messages) {
  return h("ol", { class: "chat" }, messages.map((m) => {
    const role = String(m.role);
    const parts = [];
    const text = messageText(m.content);
    if (text) parts.push(h("div", { class: "chat-text" }, foldedString(text, "chat-str")));
    if (Array.isArray(m.tool_calls) && m.tool_calls.length) {
      for (const call of m.tool_calls) {
        const fn = (call && call.function) || {};
        let args = fn.arguments;
        if (typeof args === "string") {
          try { args = JSON.parse(args); } catch { /* keep the raw string */ }
        }
        parts.push(h("div", { class: "chat-tool" },
          h("span", { class: "chat-tool-name" }, `→ ${fn.name || "tool call"}`), jsonTree(args, 1)));
      }
    }
    if (m.name) parts.unshift(h("div", { class: "chat-who" }, m.name));
    return h("li", { class: `msg role-${role.replace(/[^a-z_]/gi, "")}` },
      h("div", { class: "chat-role" }, role), parts);
  }));
}

/**
 * A logged field: chat messages as a conversation (with a switch to raw JSON), strings as
 * text, anything else as a collapsible tree.
 */
export function renderValue(value) {
  const chat = chatMessages(value);
  if (chat) {
    const raw = h("div", { class: "raw", hidden: true }, jsonTree(value));
    const pretty = conversation(chat);
    const toggle = h("button", {
      type: "button",
      class: "link",
      "aria-pressed": "false",
      onclick: () => {
        const showRaw = raw.hidden;
        raw.hidden = !showRaw;
        pretty.hidden = showRaw;
        toggle.textContent = showRaw ? "conversation" : "raw JSON";
        toggle.setAttribute("aria-pressed", String(showRaw));
      },
    }, "raw JSON");
    return h("div", { class: "value" }, h("div", { class: "value-tools" }, toggle), pretty, raw);
  }
  if (typeof value === "string") {
    return h("div", { class: "value text" }, foldedString(value, "j-text"));
  }
  return h("div", { class: "value" }, jsonTree(value));
}
