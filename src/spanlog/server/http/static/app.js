// The viewer's shell: routing between pages, the API key dialog, error banner and the live
// connection for the project on screen. Pages live in their own modules.

import { ApiError, getKey, getProject, setKey } from "./api.js";
import { h, replace } from "./dom.js";
import { followProject } from "./live.js";
import { monitorPage } from "./monitor.js";
import { projectsPage } from "./projects.js";
import { logsPage } from "./logs.js";
import { sessionPage, sessionsPage } from "./sessions.js";
import { tracePage } from "./trace.js";

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const banner = document.getElementById("banner");
const liveDot = document.getElementById("live");
const keyDialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");

let page = null;          // the mounted page: {destroy(), onLive(xact)}
let live = null;          // {projectId, stop}
const projectNames = new Map();

/** The route for a location: which page and its parameters. */
function route(url) {
  const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "projects" && parts[2] === "monitor" && parts.length === 3) {
    return { page: "monitor", projectId: parts[1] };
  }
  if (parts[0] === "projects" && parts.length === 2) {
    return { page: "logs", projectId: parts[1] };
  }
  if (parts[0] === "projects" && parts[2] === "sessions" && parts.length <= 4) {
    return parts.length === 3 ? { page: "sessions", projectId: parts[1] }
      : { page: "session", projectId: parts[1], sessionId: parts[3] };
  }
  if (parts[0] === "projects" && parts[2] === "traces" && parts.length === 4) {
    return { page: "trace", projectId: parts[1], rootSpanId: parts[3] };
  }
  return { page: "projects" };
}

/** Go to `href` inside the app (history entry unless `replaceEntry`). */
export function navigate(href, { replaceEntry = false } = {}) {
  const url = new URL(href, location.href);
  if (url.href === location.href && !replaceEntry) return render();
  if (replaceEntry) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  return render();
}

/** Update the query string without re-rendering (e.g. the filter, the selected span). */
export function setQuery(params) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") url.searchParams.delete(k);
    else url.searchParams.set(k, v);
  }
  history.replaceState(null, "", url);
}

/** Show what went wrong; a 401/403 also offers the API key dialog. */
export function showError(err) {
  if (err && err.name === "AbortError") return;
  const needsKey = err instanceof ApiError && (err.status === 401 || err.status === 403);
  const text = needsKey
    ? (getKey() ? `The collector refused this API key: ${err.message}`
      : "This collector needs an API key.")
    : `Error: ${err && err.message ? err.message : err}`;
  replace(banner, h("span", {}, text),
    needsKey ? h("button", { type: "button", class: "primary", onclick: openKeyDialog }, "Enter API key") : null,
    h("button", { type: "button", class: "ghost", "aria-label": "Dismiss", onclick: clearError }, "×"));
  banner.hidden = false;
}

export function clearError() {
  banner.hidden = true;
  banner.replaceChildren();
}

/** The display name of a project, fetched once. */
export async function projectName(projectId) {
  if (projectNames.has(projectId)) return projectNames.get(projectId);
  try {
    const project = await getProject(projectId);
    const name = (project && project.name) || projectId;
    projectNames.set(projectId, name);
    return name;
  } catch (err) {
    return projectId;
  }
}

export function rememberProjectName(projectId, name) {
  projectNames.set(projectId, name);
}

/** Set the breadcrumb trail: list of [label, href|null]. */
export function setCrumbs(items) {
  replace(crumbs, items.map(([label, href], i) => [
    i > 0 ? h("span", { class: "sep", "aria-hidden": "true" }, "›") : null,
    href ? h("a", { href, "data-nav": true }, label)
      : h("span", { "aria-current": "page" }, label),
  ]));
  const last = items.length ? items[items.length - 1][0] : "";
  document.title = last ? `${last} · spanlog` : "spanlog";
}

function followLive(projectId) {
  if (live && live.projectId === projectId) return;
  if (live) live.stop();
  live = null;
  if (!projectId) return;
  const stop = followProject(projectId, (xact) => {
    if (page && page.onLive) page.onLive(xact);
  }, (connected) => {
    liveDot.hidden = !connected;
  });
  live = { projectId, stop };
}

async function render() {
  if (page) page.destroy();
  page = null;
  clearError();
  const r = route(new URL(location.href));
  const params = new URL(location.href).searchParams;
  const ctx = { navigate, setQuery, showError, clearError, setCrumbs, projectName, rememberProjectName };
  replace(main);
  if (r.page === "logs") {
    page = logsPage(main, r.projectId, params, ctx);
  } else if (r.page === "sessions") {
    page = sessionsPage(main, r.projectId, params, ctx);
  } else if (r.page === "session") {
    page = sessionPage(main, r.projectId, r.sessionId, params, ctx);
  } else if (r.page === "trace") {
    page = tracePage(main, r.projectId, r.rootSpanId, params, ctx);
  } else if (r.page === "monitor") {
    page = monitorPage(main, r.projectId, params, ctx);
  } else {
    page = projectsPage(main, ctx);
  }
  followLive(r.projectId || null);
}

// In-app links navigate without a reload; modified clicks still open new tabs.
document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-nav]");
  if (!a || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});

window.addEventListener("popstate", () => render());

function openKeyDialog() {
  keyInput.value = getKey();
  keyDialog.showModal();
  keyInput.focus();
}

document.getElementById("key-button").addEventListener("click", openKeyDialog);
keyDialog.addEventListener("close", () => {
  const action = keyDialog.returnValue;
  if (action === "save") setKey(keyInput.value.trim());
  else if (action === "clear") setKey("");
  else return;
  keyInput.value = "";
  // A new key may see other projects and restart the live stream with it.
  if (live) live.stop();
  live = null;
  projectNames.clear();
  render();
});

render();
