// One measurement of bench/pyodide_loop_gap.py: spanlog in real Pyodide (the npm pyodide that
// tests/runtimes/cloudflare installs, the version workerd uses) under Node, with a 1 ms
// setTimeout ticker on the same JS thread. Node's fetch reaches the collector on 127.0.0.1.
//
//   node bench/pyodide_loop_gap.mjs CONFIG.json    (CONFIG: written by pyodide_loop_gap.py)
//
// Prints one JSON line on stdout: the ticker's gaps for the idle baseline and for the phase,
// and what the Python half reported. Everything Python prints goes to stderr.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const note = (...args) => process.stderr.write(args.join(" ") + "\n");
const { loadPyodide } = await import(pathToFileURL(path.join(config.pyodideDir, "pyodide.mjs")));

const started = performance.now();
const pyodide = await loadPyodide({
  stdout: (line) => note("[py]", line),
  stderr: (line) => note("[py:err]", line),
});
const loadMs = performance.now() - started;

function copyTree(hostDir, pyDir) {
  pyodide.FS.mkdirTree(pyDir);
  for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
    const host = path.join(hostDir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "__pycache__") copyTree(host, `${pyDir}/${entry.name}`);
    } else if (entry.name.endsWith(".py") || entry.name === "py.typed") {
      pyodide.FS.writeFile(`${pyDir}/${entry.name}`, fs.readFileSync(host));
    }
  }
}
copyTree(config.spanlogPackage, "/bench/site/spanlog");
pyodide.FS.writeFile("/bench/pyodide_loop_gap.py", fs.readFileSync(config.benchFile));
pyodide.runPython(`
import sys
sys.path[:0] = ["/bench", "/bench/site"]
${config.compile ? 'import compileall; compileall.compile_dir("/bench/site/spanlog", quiet=1)' : ""}
`);
const bench = pyodide.pyimport("pyodide_loop_gap");

// --- the ticker: a setTimeout(…, 1) chain, the gaps between its wake-ups -------------------
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function measure(seconds, work) {
  const gaps = [];
  const ends = [];
  let on = true;
  let last = performance.now();
  const t0 = last;
  const tick = () => {
    const now = performance.now();
    gaps.push(now - last);
    ends.push(now);
    last = now;
    if (on) setTimeout(tick, 1);
  };
  setTimeout(tick, 1);
  await sleep(config.leadMs);
  const workStart = performance.now();
  const result = await work();
  const workEnd = performance.now();
  while (performance.now() - t0 < seconds * 1000) await sleep(5);
  on = false;
  await sleep(5); // the last tick
  return { gaps, ends: ends.map((t) => t - workStart), workMs: workEnd - workStart,
           windowMs: performance.now() - t0, ...result };
}

async function callPython(name) {
  const proxy = await bench.pyodide_phase(name, config.bound, config.seconds);
  const out = proxy.toJs({ dict_converter: Object.fromEntries });
  proxy.destroy();
  return out;
}

// Node's process CPU time in seconds (process.cpuUsage(): Node 20 has no per-thread figure,
// and /proc's schedstat is only updated at scheduler ticks). It counts V8's helper threads
// too (garbage collection, compiling hot WebAssembly), so the Python half takes the smaller
// of a step's CPU and wall time: an upper bound of what the step cost the JS thread.
const cpuSeconds = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};
// Node loads its fetch (undici) on the first call, ~35 ms on the calling thread: in the first
// trace's flush that would be Node's cost, not spanlog's (workerd's fetch is built in). So
// one request warms it first, unless --cold-fetch.
if (config.warmFetch) await (await fetch(`${config.url}/version`)).arrayBuffer();
bench.pyodide_setup(config.url, config.project, config.bigBytes, config.profile, cpuSeconds);
let warm = null;
if (config.phase !== "first") warm = await callPython("warm");
const base = await measure(config.seconds, () => callPython("idle"));
const phase = await measure(config.seconds, () => callPython(config.phase));
// Exit once the line is written: a pipe takes it in pieces, and exit() would cut it short.
process.stdout.write(JSON.stringify({ loadMs, pyodide: pyodide.version, warm, base, phase })
                     + "\n", () => process.exit(0));
