// ONNX Runtime's decode speed on a decoder with a KV cache (the peer of `slmops generate`):
// prefill PROMPT_LEN tokens, then NEW greedy tokens one run each; prints JSON with prefill and
// decode tokens/s. Usage: node ort_decode.js MODEL.onnx PROMPT_IDS NEW THREADS
const {ort, kvDecoder} = require('./ort_kv.js');
async function main() {
  const [model, idsArg, newArg, thrArg] = process.argv.slice(2);
  const ids = idsArg.split(',').map(Number);
  const steps = Number(newArg);
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: Number(thrArg), interOpNumThreads: 1 });
  const {feeds, argmaxLast, nextPast} = kvDecoder(s);
  await s.run(feeds(ids, null, 0));  // warm-up
  let t0 = process.hrtime.bigint();
  let out = await s.run(feeds(ids, null, 0));
  const prefill = Number(process.hrtime.bigint() - t0) / 1e9;
  let len = ids.length;
  const tokens = [];
  t0 = process.hrtime.bigint();
  for (let k = 0; k < steps; ++k) {
    const next = argmaxLast(out.logits);
    tokens.push(next);
    out = await s.run(feeds([next], nextPast(out), len));
    len += 1;
  }
  const decode = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ prefill_tokens_per_s: ids.length / prefill, decode_tokens_per_s: steps / decode, tokens }));
}
main().catch((e) => { console.error(e.message); process.exit(1); });
