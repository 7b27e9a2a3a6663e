// Runs a built decoder (model.onnx with the GenAI/Optimum I/O) in ONNX Runtime: prefill, then
// greedy decoding with the KV cache, checking each step's logits against a full recompute
// without cache. Prints JSON {prefill_logits, tokens, max_cache_diff}.
// Usage: node kv_check.js MODEL.onnx IDS(comma-separated) STEPS
const path = require('path');
const ort = require(path.join(__dirname, '..', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [model, idsArg, stepsArg] = process.argv.slice(2);
  const ids = idsArg.split(',').map(Number);
  const steps = Number(stepsArg || 8);
  const s = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'disabled' });
  const pastNames = s.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const meta = s.inputMetadata ? null : null;
  void meta;
  // kv heads and head dim from the first past input's declared shape
  const decl = s.inputMetadata.find ? s.inputMetadata.find((m) => m.name === pastNames[0]) : null;
  const kv = decl ? decl.shape[1] : Number(process.env.KV);
  const hd = decl ? decl.shape[3] : Number(process.env.HD);
  const i64 = (a, dims) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), dims);
  const run = async (tokens, past, pastLen) => {
    const feeds = {
      input_ids: i64(tokens, [1, tokens.length]),
      attention_mask: i64(new Array(pastLen + tokens.length).fill(1), [1, pastLen + tokens.length]),
      position_ids: i64(tokens.map((_, k) => pastLen + k), [1, tokens.length]),
    };
    for (const n of pastNames) feeds[n] = past ? past[n] : new ort.Tensor('float32', new Float32Array(0), [1, kv, 0, hd]);
    return s.run(feeds);
  };
  const last = (logits) => {
    const [, t, v] = logits.dims;
    return Array.from(logits.data.slice((t - 1) * v, t * v));
  };
  const argmax = (a) => a.reduce((bi, x, i) => (x > a[bi] ? i : bi), 0);
  let out = await run(ids, null, 0);
  const prefill = Array.from(out.logits.data);
  const seq = ids.slice();
  let maxDiff = 0;
  const tokens = [];
  for (let k = 0; k < steps; ++k) {
    const next = argmax(last(out.logits));
    tokens.push(next);
    const past = {};
    for (const n of pastNames) past[n] = out[n.replace('past_key_values', 'present')];
    out = await run([next], past, seq.length);
    seq.push(next);
    const full = await run(seq, null, 0);
    const a = last(out.logits), b = last(full.logits);
    for (let i = 0; i < a.length; ++i) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  }
  console.log(JSON.stringify({ prefill_logits: prefill, tokens, max_cache_diff: maxDiff }));
}
main().catch((e) => { console.error(e.message); process.exit(1); });
