// ONNX Runtime's decode speed on a decoder with a KV cache (the peer of `slmops generate`):
// prefill PROMPT_LEN tokens, then NEW greedy tokens one run each; prints JSON with prefill and
// decode tokens/s. Usage: node ort_decode.js MODEL.onnx PROMPT_IDS NEW THREADS
const path = require('path');
const ort = require(path.join(__dirname, '..', 'tests', 'interop', 'node_modules', 'onnxruntime-node'));
async function main() {
  const [model, idsArg, newArg, thrArg] = process.argv.slice(2);
  const ids = idsArg.split(',').map(Number);
  const steps = Number(newArg);
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: Number(thrArg), interOpNumThreads: 1 });
  const pastNames = s.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const meta = s.inputMetadata.find((m) => m.name === pastNames[0]);
  const i64 = (a, dims) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), dims);
  const feeds = (tokens, past, pastLen) => {
    const f = {
      input_ids: i64(tokens, [1, tokens.length]),
      attention_mask: i64(new Array(pastLen + tokens.length).fill(1), [1, pastLen + tokens.length]),
      position_ids: i64(tokens.map((_, k) => pastLen + k), [1, tokens.length]),
    };
    for (const n of pastNames) f[n] = past ? past[n] : new ort.Tensor('float32', new Float32Array(0), [1, meta.shape[1], 0, meta.shape[3]]);
    return f;
  };
  const argmaxLast = (l) => {
    const [, t, v] = l.dims; const d = l.data; let b = (t - 1) * v;
    for (let i = (t - 1) * v; i < t * v; ++i) if (d[i] > d[b]) b = i;
    return b - (t - 1) * v;
  };
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
    const past = {};
    for (const n of pastNames) past[n] = out[n.replace('past_key_values', 'present')];
    out = await s.run(feeds([next], past, len));
    len += 1;
  }
  const decode = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ prefill_tokens_per_s: ids.length / prefill, decode_tokens_per_s: steps / decode, tokens }));
}
main().catch((e) => { console.error(e.message); process.exit(1); });
