// Logs through the unmodified braintrust TypeScript SDK into a spanlog collector
// (tests/server/test_braintrust_ts.py), configured as docs/typescript.md says: the collector's
// URL in BRAINTRUST_APP_URL, its key in BRAINTRUST_API_KEY, the project in code.
// Usage: node log.mjs PROJECT MODE
// MODE "traces": several traces of nested traced/wrapTraced spans with metadata and scores,
// a span continued from another's export(), a logger by project id, logFeedback with a score
// and a comment, one span larger than the collector's request limit (the overflow upload),
// then flush. MODE "dataset" / "experiment": a call spanlog does not serve.
// Prints one JSON object (the ids to look for, or the error) as its last line.
import { initDataset, initExperiment, initLogger, traced, wrapTraced } from "braintrust";

const [project, mode] = process.argv.slice(2);

async function traces() {
  const logger = initLogger({ projectName: project });

  const retrieve = wrapTraced(async function retrieve(query) {
    return [`doc about ${query}`, "another doc"];
  });
  const answer = wrapTraced(
    async (query, docs) => `${query}: ${docs.length} docs`,
    { name: "answer", type: "llm" },
  );

  const traces = [];
  for (const user of ["user-1", "user-2", "user-3"]) {
    traces.push(await traced(async (root) => {
      root.log({ input: { user }, metadata: { user_id: user, app: "ts" }, tags: ["ts"] });
      const output = await traced(async (step) => {
        const docs = await retrieve(user);
        step.log({ metadata: { retriever: "bm25" }, scores: { recall: 0.5 } });
        return answer(user, docs);
      }, { name: "plan", type: "task" });
      root.log({ output, scores: { quality: 1 } });
      // The string another service gets to continue this trace (e.g. in a request header).
      const exported = await root.export();
      return { id: root.id, span_id: root.spanId, root_span_id: root.rootSpanId, output,
               exported };
    }, { name: "handle_request", type: "task" }));
  }
  await traced((span) => span.log({ output: "resumed", metadata: { user_id: "user-2" } }),
               { name: "resumed", parent: traces[1].exported });

  // A logger given the project's id instead of its name.
  const byId = initLogger({ projectId: await logger.id, setCurrent: false });
  const other = byId.startSpan({ name: "by_id" });
  other.log({ input: "q", output: "a", metadata: { user_id: "by-id" } });
  other.end();

  logger.logFeedback({ id: traces[0].id, scores: { thumbs_up: 0 }, comment: "wrong tone",
                       metadata: { reviewer: "ann" }, source: "app" });

  const big = logger.startSpan({ name: "huge", type: "llm" });
  big.log({ input: "x".repeat(300_000), output: "ok", metadata: { user_id: "big" } });
  big.end();

  await logger.flush();
  console.log(JSON.stringify({ traces, big: big.id, by_id: other.id }));
}

async function unsupported() {
  // Initialising is lazy: the first await of the object's id registers it.
  const object = mode === "dataset"
    ? initDataset({ project, dataset: "golden" })
    : initExperiment(project, { experiment: "nightly" });
  try {
    await object.id;
    console.log(JSON.stringify({ error: null }));
  } catch (error) {
    console.log(JSON.stringify({ error: String(error?.message ?? error) }));
  }
}

await (mode === "traces" ? traces() : unsupported());
