// ONNX Runtime as the peer of distill-data's local teacher: a simple loop over prompts, each
// prefilled then decoded greedily with the KV cache, one sequence at a time, generating exactly
// as many tokens as slmops did for that prompt. Prints {"tokens", "seconds", "tokens_per_s"}.
// Usage: node ort_distill.js MODEL.onnx ROWS.json THREADS   (ROWS: [{"ids": [...], "n": N}, ...])
const fs = require('fs');
const {ort, kvDecoder} = require('./ort_kv.js');
async function main() {
  const [model, rowsFile, thrArg] = process.argv.slice(2);
  const rows = JSON.parse(fs.readFileSync(rowsFile, 'utf8'));
  const s = await ort.InferenceSession.create(model, {intraOpNumThreads: Number(thrArg), interOpNumThreads: 1});
  const {feeds, argmaxLast, nextPast} = kvDecoder(s);
  const generate = async (ids, n) => {
    let out = await s.run(feeds(ids, null, 0));
    let len = ids.length;
    for (let k = 1; k < n; ++k) {
      out = await s.run(feeds([argmaxLast(out.logits)], nextPast(out), len));
      len += 1;
    }
  };
  await generate(rows[0].ids, 2);  // warm-up
  let tokens = 0;
  const t0 = process.hrtime.bigint();
  for (const r of rows) {
    await generate(r.ids, r.n);
    tokens += r.n;
  }
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({tokens, seconds: sec, tokens_per_s: tokens / sec}));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
