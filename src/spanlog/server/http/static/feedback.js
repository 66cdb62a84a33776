// Feedback on one span from the page: thumbs up / down (the score `thumbs`, 1 or 0), a
// comment, and editing `expected`, all through the collector's feedback endpoint.

import { sendFeedback } from "./api.js";
import { h } from "./dom.js";

// Drawn inline: emoji depend on the fonts of the machine (a bare server may have none).
const THUMB_PATH = "M7 11v9H4a1 1 0 0 1-1-1v-7a1 1 0 0 1 1-1h3zm0 0l4-7a2 2 0 0 1 3 1.8V10h4.6"
  + "a2 2 0 0 1 2 2.4l-1.3 6A2 2 0 0 1 17.3 20H7";

function thumbIcon(down) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", THUMB_PATH);
  if (down) path.setAttribute("transform", "rotate(180 12 12)");
  svg.appendChild(path);
  return svg;
}

/** The score name the thumbs buttons write. */
export const THUMBS = "thumbs";

function expectedText(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

/**
 * A feedback form for the span `row`. `onSaved(kind, item)` runs after the collector took it.
 * The form keeps what the user typed across `update(row)` calls (live refreshes).
 */
export function feedbackPanel(projectId, row, ctx, onSaved) {
  let current = row;
  let expectedDirty = false;
  const status = h("p", { class: "fb-status muted small", role: "status", "aria-live": "polite" });

  async function submit(kind, item, doneText) {
    status.textContent = "Saving…";
    try {
      await sendFeedback(projectId, [{ id: current.id, source: "app", ...item }]);
      status.textContent = doneText;
      onSaved(kind, item);
      return true;
    } catch (err) {
      status.textContent = `Not saved: ${err.message}`;
      ctx.showError(err);
      return false;
    }
  }

  const up = h("button", {
    type: "button", class: "thumb up", "aria-pressed": "false", title: "Good (thumbs = 1)",
    onclick: () => submit("thumbs", { scores: { [THUMBS]: 1 } }, "Saved: good"),
  }, thumbIcon(false), " Good");
  const down = h("button", {
    type: "button", class: "thumb down", "aria-pressed": "false", title: "Bad (thumbs = 0)",
    onclick: () => submit("thumbs", { scores: { [THUMBS]: 0 } }, "Saved: bad"),
  }, thumbIcon(true), " Bad");

  const comment = h("textarea", {
    id: "fb-comment", rows: "2", placeholder: "Add a comment (Ctrl+Enter to send)",
    "aria-label": "Comment",
  });
  async function sendComment() {
    const text = comment.value.trim();
    if (!text) {
      comment.focus();
      return;
    }
    if (await submit("comment", { comment: text }, "Comment saved")) comment.value = "";
  }
  comment.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      sendComment();
    }
  });

  const expected = h("textarea", {
    id: "fb-expected", rows: "3", spellcheck: "false", class: "mono",
    "aria-describedby": "fb-expected-help",
    oninput: () => { expectedDirty = true; },
  });
  expected.value = expectedText(row.expected);
  async function saveExpected() {
    const text = expected.value;
    let value = text;
    // JSON when it parses (objects, numbers, quoted strings), plain text otherwise.
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
    if (await submit("expected", { expected: value }, "Expected saved")) expectedDirty = false;
  }

  const el = h("section", { class: "feedback", "aria-labelledby": "fb-title" },
    h("h3", { id: "fb-title" }, "Feedback"),
    h("div", { class: "thumbs", role: "group", "aria-label": "Rate this span" }, up, down),
    h("div", { class: "fb-field" },
      comment,
      h("button", { type: "button", onclick: sendComment }, "Comment")),
    h("details", { class: "fb-expected" },
      h("summary", {}, "Edit expected"),
      h("label", { for: "fb-expected", class: "small muted", id: "fb-expected-help" },
        "JSON, or plain text. Saved as this span's expected value."),
      expected,
      h("div", { class: "row-actions" },
        h("button", { type: "button", onclick: saveExpected }, "Save expected"))),
    status);

  function update(next) {
    current = next;
    const score = next.scores ? next.scores[THUMBS] : undefined;
    up.setAttribute("aria-pressed", String(score === 1));
    down.setAttribute("aria-pressed", String(score === 0));
    if (!expectedDirty) expected.value = expectedText(next.expected);
  }

  update(row);
  return { el, update, id: row.id };
}
