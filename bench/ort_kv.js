// Feeds for a decoder with a KV cache (input_ids, attention_mask, position_ids,
// past_key_values.N.* -> logits, present.N.*) in ONNX Runtime, shared by bench/ort_decode.js and
// bench/ort_distill.js.
const path = require('path');
const ort = require(path.join(__dirname, '..', 'tests', 'interop', 'node_modules', 'onnxruntime-node'));

// {pastNames, feeds(tokens, past, pastLen), argmaxLast(logits), nextPast(out)} for a session.
function kvDecoder(s) {
  const pastNames = s.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const meta = s.inputMetadata.find((m) => m.name === pastNames[0]);
  const i64 = (a, dims) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), dims);
  const feeds = (tokens, past, pastLen) => {
    const f = {
      input_ids: i64(tokens, [1, tokens.length]),
      attention_mask: i64(new Array(pastLen + tokens.length).fill(1), [1, pastLen + tokens.length]),
      position_ids: i64(tokens.map((_, k) => pastLen + k), [1, tokens.length]),
    };
    for (const n of pastNames)
      f[n] = past ? past[n] : new ort.Tensor('float32', new Float32Array(0), [1, meta.shape[1], 0, meta.shape[3]]);
    return f;
  };
  const argmaxLast = (l) => {
    const [, t, v] = l.dims;
    const d = l.data;
    let b = (t - 1) * v;
    for (let i = (t - 1) * v; i < t * v; ++i) if (d[i] > d[b]) b = i;
    return b - (t - 1) * v;
  };
  const nextPast = (out) => {
    const past = {};
    for (const n of pastNames) past[n] = out[n.replace('past_key_values', 'present')];
    return past;
  };
  return {pastNames, feeds, argmaxLast, nextPast};
}

module.exports = {ort, kvDecoder};
