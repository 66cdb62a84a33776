// The time range of a page: a preset back from now, or a custom range from two
// datetime-local inputs. It lives in the URL as the fetch API's own `since` and `until`
// (docs/protocol.md, "Time ranges"), so a preset stays relative: `since=24h` means the last
// 24 hours at every fetch, live refreshes included, and a link shows the same window later.

import { h } from "./dom.js";

const PRESETS = [["", "All time"], ["1h", "Last hour"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"]];
const CUSTOM = "custom";
const AGO = /^(\d{1,6})\s*([smhdw])$/;
const UNIT = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** How many seconds back from now a relative `since` ("24h") reaches, else null. */
export function agoSeconds(value) {
  const m = AGO.exec(String(value || "").trim());
  return m ? Number(m[1]) * UNIT[m[2]] : null;
}

/** A `since`/`until` in Unix seconds or ISO-8601 as a Date (no zone: UTC, as the API reads it). */
function toDate(value) {
  const text = String(value || "").trim();
  if (!text || agoSeconds(text) !== null) return null;
  if (/^-?\d+(\.\d+)?$/.test(text)) return new Date(Number(text) * 1000);
  const zoned = !text.includes("T") || /([zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`;
  const date = new Date(zoned);
  return Number.isNaN(date.getTime()) ? null : date;
}

const pad = (n) => String(n).padStart(2, "0");

/** A Date as a datetime-local input shows it: local time, to the minute. */
function localInput(date) {
  if (!date) return "";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A datetime-local value (local time: that is how Date parses a time without a zone) as
 * ISO-8601 UTC, for the URL and the API. */
function utcText(value) {
  return new Date(value).toISOString().replace(/(:00)?\.000Z$/, "Z");
}

/**
 * The range picker for `{since, until}` as the URL has them. A preset applies at once; a
 * custom range once "Apply range" finds it valid. Either way `onChange({since, until})`.
 * `allTime: false` leaves out "All time" (the monitor charts a bounded range).
 * Returns `{element, showError(message, field)}` (an empty message clears it).
 */
export function rangeControl({ since, until }, onChange, { allTime = true } = {}) {
  const options = PRESETS.filter(([value]) => allTime || value);
  // A relative `since` typed into the URL ("30m") is kept as its own choice.
  if (!until && agoSeconds(since) !== null && !options.some(([v]) => v === since)) {
    options.push([since, `Last ${since}`]);
  }
  const preset = !until && options.some(([v]) => v === since);
  const select = h("select", { id: "range", name: "range" },
    options.map(([value, label]) => h("option", { value }, label)),
    h("option", { value: CUSTOM }, "Custom range…"));
  select.value = preset ? since : CUSTOM;
  const from = h("input", { id: "range-from", type: "datetime-local", value: localInput(toDate(since)),
    "aria-describedby": "range-error" });
  const to = h("input", { id: "range-to", type: "datetime-local", value: localInput(toDate(until)),
    "aria-describedby": "range-error" });
  const custom = h("span", { class: "range-custom", hidden: preset },
    h("label", { for: "range-from" }, "From"), from,
    h("label", { for: "range-to" }, "To"), to,
    h("button", { type: "submit" }, "Apply range"));
  const error = h("p", { id: "range-error", class: "filter-error", role: "alert", hidden: true });

  // `field`: which input is wrong; the collector's errors start with its name.
  function showError(message, field = /^since\b/.test(message || "") ? "since" : "until") {
    error.textContent = message || "";
    error.hidden = !message;
    for (const input of [from, to]) input.removeAttribute("aria-invalid");
    if (message) (field === "since" ? from : to).setAttribute("aria-invalid", "true");
  }

  let shown = since;   // the since in use, for a custom range to start from
  select.addEventListener("change", () => {
    custom.hidden = select.value !== CUSTOM;
    if (select.value === CUSTOM) {
      const ago = agoSeconds(shown);
      if (!from.value && ago !== null) from.value = localInput(new Date(Date.now() - ago * 1000));
      from.focus();
      return;
    }
    showError("");
    shown = select.value;
    onChange({ since: shown, until: "" });
  });

  function applyCustom(event) {
    event.preventDefault();
    if (!from.value && !to.value) {
      showError("Choose a start (From), an end (To), or both.", "since");
      return;
    }
    if (from.value && to.value && new Date(to.value) <= new Date(from.value)) {
      showError("“To” must be after “From”.", "until");
      return;
    }
    showError("");
    shown = from.value ? utcText(from.value) : "";
    onChange({ since: shown, until: to.value ? utcText(to.value) : "" });
  }

  const element = h("form", { class: "range", onsubmit: applyCustom },
    h("div", { class: "filter-row" }, h("label", { for: "range" }, "Time range"), select, custom),
    error);
  return { element, showError };
}
