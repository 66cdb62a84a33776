// Live updates: the collector's server-sent event stream for one project, read with fetch()
// rather than EventSource because EventSource cannot send the Authorization header.

import { authHeaders } from "./api.js";

const RETRY_MS = [500, 1000, 2000, 5000, 10000];

/**
 * Follow `/v1/project_logs/{id}/live`; call `onChange(xactId)` whenever the project's latest
 * transaction id moves. `onState(connected)` reports the connection. Returns a stop function.
 */
export function followProject(projectId, onChange, onState = () => {}) {
  let stopped = false;
  let controller = null;
  let attempt = 0;
  let lastXact;             // undefined until the first event
  let timer = null;

  function handle(eventName, data) {
    if (eventName !== "xact") return;
    let xact;
    try {
      xact = JSON.parse(data).xact_id;
    } catch {
      return;
    }
    // The first event after (re)connecting counts as news too: rows may have landed between
    // the page's own fetch and the stream's start, or while it was disconnected.
    if (xact !== lastXact) onChange(xact);
    lastXact = xact;
  }

  async function connect() {
    if (stopped) return;
    controller = new AbortController();
    try {
      const response = await fetch(`/v1/project_logs/${encodeURIComponent(projectId)}/live`, {
        headers: { Accept: "text/event-stream", ...authHeaders() },
        signal: controller.signal,
        cache: "no-store",
      });
      if (!response.ok || !response.body) throw new Error(`live: ${response.status}`);
      attempt = 0;
      onState(true);
      lastXact = undefined;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let eventName = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) eventName = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (data.length) handle(eventName, data.join("\n"));
        }
      }
    } catch (err) {
      if (stopped) return;
    }
    onState(false);
    if (stopped) return;
    const wait = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
    attempt += 1;
    timer = setTimeout(connect, wait);
  }

  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (controller) controller.abort();
    onState(false);
  };
}

/**
 * `reload` (an async function) wrapped for live events: bursts are coalesced, with at most
 * one run in flight and one queued after it; nothing runs once `signal` is aborted.
 */
export function coalesced(reload, signal) {
  let running = null;
  const run = async () => {
    await reload();
    if (running && running.again && !signal.aborted) {
      running.again = false;
      return run();
    }
    running = null;
  };
  return () => {
    if (running) {
      running.again = true;
      return;
    }
    running = { again: false };
    run();
  };
}
