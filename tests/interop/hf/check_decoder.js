// A decoder built by `slmops convert HF_DIR` against the checkpoint's reference
// (tests/fixtures/hf/*/expected.npz, made with transformers' model definitions): in ONNX Runtime,
// the prefill logits, then 32 greedy steps with the KV cache (tokens and each step's logits).
// Usage: node check_decoder.js MODEL.onnx EXPECTED.npz TOL [--kv-kept]
// --kv-kept: compare tokens with greedy_ids_kv_cache_kept (longrope: HF drops its cache when
// the length passes the pretrained one; a cached decoder keeps it). Prints one JSON line.
const path = require('path');
const ort = require(path.join(__dirname, '..', 'node_modules', 'onnxruntime-node'));
const { readNpz } = require('./npz');

async function main() {
  const [model, npzFile, tolArg, flag] = process.argv.slice(2);
  const tol = Number(tolArg);
  const ref = readNpz(npzFile);
  const s = await ort.InferenceSession.create(model);
  const pastNames = s.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const meta = s.inputMetadata.find((m) => m.name === pastNames[0]);
  const [kv, hd] = [meta.shape[1], meta.shape[3]];
  const i64 = (a, dims) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), dims);
  const run = (tokens, past, pastLen) => {
    const feeds = {
      input_ids: i64(tokens, [1, tokens.length]),
      attention_mask: i64(new Array(pastLen + tokens.length).fill(1), [1, pastLen + tokens.length]),
      position_ids: i64(tokens.map((_, k) => pastLen + k), [1, tokens.length]),
    };
    for (const n of pastNames) feeds[n] = past ? past[n] : new ort.Tensor('float32', new Float32Array(0), [1, kv, 0, hd]);
    return s.run(feeds);
  };
  const maxDiff = (a, b) => { let m = 0; for (let i = 0; i < a.length; ++i) m = Math.max(m, Math.abs(a[i] - b[i])); return m; };
  const ids = Array.from(ref.input_ids.data, Number);
  let out = await run(ids, null, 0);
  const prefill = maxDiff(out.logits.data, ref.logits.data);
  let longDiff = null;
  if (ref.long_input_ids) {
    const lo = await run(Array.from(ref.long_input_ids.data, Number), null, 0);
    longDiff = maxDiff(lo.logits.data, ref.long_logits.data);
  }
  const want = Array.from((flag === '--kv-kept' ? ref.greedy_ids_kv_cache_kept : ref.greedy_ids).data, Number);
  const V = out.logits.dims[2];
  const tokens = [];
  let stepDiff = 0, stepsCompared = 0;
  let len = ids.length;
  for (let k = 0; k < want.length; ++k) {
    const t = out.logits.dims[1];
    const last = out.logits.data.subarray((t - 1) * V, t * V);
    if (flag !== '--kv-kept' || k < 17) {
      stepDiff = Math.max(stepDiff, maxDiff(last, ref.step_logits.data.subarray(k * V, (k + 1) * V)));
      ++stepsCompared;
    }
    let best = 0;
    for (let i = 1; i < V; ++i) if (last[i] > last[best]) best = i;
    tokens.push(best);
    const past = {};
    for (const n of pastNames) past[n] = out[n.replace('past_key_values', 'present')];
    out = await run([best], past, len);
    len += 1;
  }
  const same = tokens.every((t, i) => t === want[i]);
  const ok = prefill <= tol && stepDiff <= tol && same && (longDiff === null || longDiff <= tol);
  console.log(JSON.stringify({ ok, prefill_max_diff: prefill, step_max_diff: stepDiff, steps_compared: stepsCompared,
                               long_prompt_max_diff: longDiff, tokens_equal: same, tokens }));
  process.exit(ok ? 0 : 1);
}
main().catch((e) => { console.error(e.message); process.exit(2); });
