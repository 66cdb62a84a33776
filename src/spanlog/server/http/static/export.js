// The logs table's download control: every row of the table's filter and time range (read from
// the URL when clicked: `filter`, `since`, `until`) as JSON Lines or CSV, through the
// collector's export endpoint (docs/protocol.md, "Export").
//
// Without an API key the browser downloads the endpoint's answer itself, streaming it to disk.
// A link cannot carry a Bearer key, so with one the page fetches the export and hands the
// browser the finished file (it then sits in the page's memory until saved).

import { ApiError, authHeaders, getKey } from "./api.js";
import { h } from "./dom.js";

/** The export URL for the table's current filter and range. */
export function exportUrl(projectId, format, everySpan) {
  const shown = new URLSearchParams(location.search);
  const query = new URLSearchParams({ format });
  for (const name of ["filter", "since", "until"]) {
    const value = shown.get(name);
    if (value) query.set(name, value);
  }
  if (!everySpan) query.set("roots_only", "true");
  return `/v1/project_logs/${encodeURIComponent(projectId)}/export?${query}`;
}

function save(href, filename) {
  const a = h("a", { href, download: filename || "", hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
}

function filenameOf(response, format) {
  const header = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(header);
  return match ? match[1] : `spanlog-export.${format}`;
}

export function downloadControl(projectId, showError) {
  const every = h("input", { type: "checkbox", id: "export-every-span" });
  const busy = h("span", { class: "muted small", role: "status", "aria-live": "polite" });

  async function download(format, button) {
    const url = exportUrl(projectId, format, every.checked);
    if (!getKey()) {
      save(url, "");
      return;
    }
    button.disabled = true;
    busy.textContent = "Preparing download…";
    try {
      const response = await fetch(url, { headers: authHeaders() });
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try {
          message = (await response.json()).error || message;
        } catch { /* not JSON: keep the status */ }
        throw new ApiError(response.status, message);
      }
      const blob = await response.blob();
      const href = URL.createObjectURL(blob);
      save(href, filenameOf(response, format));
      setTimeout(() => URL.revokeObjectURL(href), 60_000);
    } catch (err) {
      showError(err);
    } finally {
      button.disabled = false;
      busy.textContent = "";
    }
  }

  const button = (format, label) => {
    const b = h("button", {
      type: "button", class: "export-button", dataset: { format },
      title: `Download the traces of this filter and time range as ${label}`,
      onclick: () => download(format, b),
    }, label);
    return b;
  };
  return h("div", { class: "export", role: "group", "aria-label": "Download" },
    h("span", { class: "export-label" }, "Download"),
    button("jsonl", "JSONL"), button("csv", "CSV"),
    h("label", { class: "small", for: "export-every-span" }, every, " every span"),
    busy);
}
