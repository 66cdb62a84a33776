// The collector's HTTP API, as the viewer uses it. Every request carries the pasted API key
// (if any) as a Bearer token; a collector running "open" on loopback accepts none.

const KEY_STORAGE = "spanlog.apiKey";

/** An error answered by the collector: `status` plus its `{"error": ...}` message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage can be disabled (private windows); the key then lasts for this page only.
  }
}

export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function request(method, path, body, signal) {
  const init = { method, headers: { ...authHeaders() }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach the collector: ${err.message}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && typeof data.error === "string") ? data.error
      : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

const enc = encodeURIComponent;

export async function listProjects(signal) {
  const data = await request("GET", "/v1/project", undefined, signal);
  return (data && data.objects) || [];
}

export async function getProject(projectId, signal) {
  return request("GET", `/v1/project/${enc(projectId)}`, undefined, signal);
}

/**
 * One page of rows: `{events, cursor}`, most recently updated first. `since` and `until`
 * are passed as given (Unix seconds, ISO-8601, or "24h" back from now: docs/protocol.md).
 */
export async function fetchLogs(projectId, { filter, limit, cursor, rootsOnly, since, until } = {}, signal) {
  const body = {};
  if (filter) body.filter = filter;
  if (limit) body.limit = limit;
  if (cursor) body.cursor = cursor;
  if (rootsOnly) body.roots_only = true;
  if (since) body.since = since;
  if (until) body.until = until;
  const data = await request("POST", `/v1/project_logs/${enc(projectId)}/fetch`, body, signal);
  return { events: (data && data.events) || [], cursor: (data && data.cursor) || null };
}

/** Every span of one trace, each with `scores_avg` over itself and its descendants. */
export async function fetchTrace(projectId, rootSpanId, signal) {
  const data = await request(
    "GET", `/v1/project_logs/${enc(projectId)}/trace/${enc(rootSpanId)}`, undefined, signal);
  return (data && data.spans) || [];
}

/**
 * A project's figures over a time range (docs/protocol.md, "Aggregates"): `{buckets, series,
 * summary, since, until, bucket}`. `splitBy`: "model", "name", "tag" or nothing.
 */
export async function fetchAggregate(projectId, { since, until, splitBy, filter } = {}, signal) {
  const body = {};
  if (since) body.since = since;
  if (until) body.until = until;
  if (splitBy) body.split_by = splitBy;
  if (filter) body.filter = filter;
  return request("POST", `/v1/project_logs/${enc(projectId)}/aggregate`, body, signal);
}

export async function sendFeedback(projectId, items) {
  return request("POST", `/v1/project_logs/${enc(projectId)}/feedback`, { feedback: items });
}

/** A page of the project's sessions, latest first: `{key, sessions, cursor}`. */
export async function listSessions(projectId, { cursor, limit, since, until } = {}, signal) {
  const query = new URLSearchParams();
  if (limit) query.set("limit", String(limit));
  if (cursor) query.set("cursor", cursor);
  if (since) query.set("since", since);
  if (until) query.set("until", until);
  return request("GET", `/v1/project_logs/${enc(projectId)}/sessions?${query}`, undefined, signal);
}

/** One session: `{key, session, traces, truncated}`, its traces in start order. */
export async function getSession(projectId, sessionId, signal) {
  return request("GET", `/v1/project_logs/${enc(projectId)}/sessions/${enc(sessionId)}`,
    undefined, signal);
}

/** Set project settings (`null` resets one); returns every setting. */
export async function changeSettings(projectId, changes) {
  return request("PATCH", `/v1/project/${enc(projectId)}/settings`, changes);
}
