// Runs a Cloudflare Python Worker inside real Pyodide (npm pyodide, the version workerd uses)
// under Node, the way workerd drives a `class Default(WorkerEntrypoint)`:
//
// - the Python sources of PyPI workers-runtime-sdk are copied into Pyodide's file system, with
//   the two JS modules it imports from the runtime (`_pyodide_entrypoint_helper`, whose
//   patchWaitUntil follows workerd's: copy the Python awaitable, await it, destroy the copy;
//   and `_cloudflare_compat_flags`);
// - per request a fresh `ctx` (an ExecutionContext whose waitUntil collects promises) and an
//   instance `Default(ctx, env)`; `fetch` is called through workers' rpc conversions;
// - once the response is out, the invocation lives until every waitUntil promise settles;
//   then it is torn down: from that moment `fetch` rejects, as it does in a finished Workers
//   request, until the next request begins.
//
// Protocol: one JSON command per stdin line ({"request": {...}} or {"exit": true}); one JSON
// event per stdout line. Everything Python or the harness prints goes to stderr.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { loadPyodide } from "pyodide";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const note = (...args) => process.stderr.write(args.join(" ") + "\n");

// --- the network: Node's fetch reaches 127.0.0.1; a torn-down invocation has none ----------
const realFetch = globalThis.fetch;
let live = false;
let fetchesAfterTeardown = 0;
const assetFetches = [];
globalThis.fetch = async (resource, init) => {
  const url = String(resource?.url ?? resource);
  if (!/^https?:\/\/127\.0\.0\.1[:/]/.test(url)) {
    assetFetches.push(url); // only loopback exists here; anything else is a harness bug
    throw new TypeError(`harness: no network beyond 127.0.0.1 (${url})`);
  }
  if (!live) {
    fetchesAfterTeardown += 1;
    throw new TypeError("Network connection lost: the invocation has ended");
  }
  return realFetch(resource, init);
};

// --- Pyodide with the files a Worker bundle carries -----------------------------------------
const started = performance.now();
const pyodide = await loadPyodide({
  stdout: (line) => note("[py]", line),
  stderr: (line) => note("[py:err]", line),
});
const loadMs = performance.now() - started;

function copyTree(hostDir, pyDir, keep) {
  pyodide.FS.mkdirTree(pyDir);
  for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
    const host = path.join(hostDir, entry.name);
    const target = `${pyDir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== "__pycache__" && !entry.name.endsWith(".dist-info")) {
        copyTree(host, target, keep);
      }
    } else if (keep(entry.name)) {
      pyodide.FS.writeFile(target, fs.readFileSync(host));
    }
  }
}
const python = (name) => name.endsWith(".py") || name.endsWith(".pyi") || name === "py.typed";
copyTree(config.workersSdk, "/bundle/sdk", (n) => python(n) || n.endsWith(".js"));
copyTree(config.spanlogPackage, "/bundle/site/spanlog", python);
copyTree(config.workerDir, "/bundle/worker", python);

// workerd's patchWaitUntil: a Python awaitable handed to ctx.waitUntil is a borrowed proxy,
// so it is copied before the call returns and destroyed once it settles.
const patched = new WeakSet();
function patchWaitUntil(ctx) {
  if (Object.prototype.toString.call(ctx) !== "[object ExecutionContext]" || patched.has(ctx)) {
    return;
  }
  const original = ctx.waitUntil.bind(ctx);
  ctx.waitUntil = (p) => {
    original((async () => {
      if ("copy" in p) p = p.copy();
      await p;
      if ("destroy" in p) p.destroy();
    })());
  };
  patched.add(ctx);
}
let currentCtx = null;
pyodide.registerJsModule("_pyodide_entrypoint_helper", {
  patchWaitUntil,
  cloudflareWorkersModule: { env: config.env, waitUntil: (p) => currentCtx.waitUntil(p) },
  cloudflareSocketsModule: {},
  doAnImport: async (name) => { throw new Error(`harness: no JS module ${name}`); },
});
pyodide.registerJsModule("_cloudflare_compat_flags", {
  python_workflows_implicit_dependencies: false,
  python_request_headers_preserve_commas: false,
});

const driver = pyodide.runPython(`
import os, sys
sys.path[:0] = ["/bundle/worker", "/bundle/site", "/bundle/sdk"]
os.environ.update(${JSON.stringify(config.pythonEnviron ?? {})})
import importlib
from workers import python_from_rpc, python_to_rpc

entry = importlib.import_module(${JSON.stringify(config.module)})

async def call(cls_name, method, ctx, env, request):
    # What workerd's introspection.wrapper_func does for a WorkerEntrypoint method.
    instance = getattr(entry, cls_name)(ctx, env)
    result = await getattr(instance, method)(python_from_rpc(request))
    return python_to_rpc(result)

call
`);

// --- one request, the way workerd runs an invocation --------------------------------------
async function invoke(spec) {
  live = true;
  const promises = [];
  const ctx = {
    [Symbol.toStringTag]: "ExecutionContext",
    waitUntil: (p) => { promises.push(Promise.resolve(p)); },
    passThroughOnException: () => {},
  };
  currentCtx = ctx;
  const request = new Request(`https://worker.example${spec.path}`, {
    method: spec.method ?? "POST",
    headers: { "content-type": "application/json" },
    body: spec.body === undefined ? undefined : JSON.stringify(spec.body),
  });
  const t0 = performance.now();
  const response = await driver("Default", "fetch", ctx, config.env, request);
  const text = await response.text();
  const responseMs = performance.now() - t0;
  emit({ event: "response", status: response.status, body: text, responseMs,
         waitUntilCount: promises.length });
  // The platform keeps the invocation alive for waitUntil work, within a bound.
  const settled = await Promise.race([
    Promise.allSettled(promises).then((all) => all.map((r) => r.status === "fulfilled"
      ? "fulfilled" : `rejected: ${r.reason}`)),
    new Promise((resolve) => setTimeout(() => resolve(null), config.settleTimeoutMs)),
  ]);
  const settledMs = performance.now() - t0;
  live = false; // teardown: from here on fetch rejects
  currentCtx = null;
  emit({ event: "teardown", settled, settledMs, waitUntilCount: promises.length });
}

emit({ event: "ready", loadMs, pyodide: pyodide.version, assetFetches });
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const command = JSON.parse(line);
  if (command.exit) break;
  if (command.status) {
    emit({ event: "status", fetchesAfterTeardown, live });
    continue;
  }
  try {
    await invoke(command.request);
  } catch (error) {
    live = false;
    emit({ event: "error", message: String(error?.stack ?? error) });
  }
}
emit({ event: "exit", fetchesAfterTeardown, assetFetches });
process.exit(0);
