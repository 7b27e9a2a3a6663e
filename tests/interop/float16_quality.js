#!/usr/bin/env node
'use strict';

// Usage: float16_quality.js cnn|lm FP32_MODEL FP32_INPUTS LOW_MODEL LOW_INPUTS [--min-agreement A]
//                           [--max-ppl-change R]
//
// Runs a float model and its 16-bit conversion (slmops convert --to fp16|bf16) in ONNX
// Runtime on the same data (each input folder holds input_K.pb in the model's own types, as
// slmops_npz_to_pb writes them) and prints one JSON line:
//   cnn: {"samples", "top1_agreement"}: argmax of the first output, per row;
//   lm:  {"samples", "tokens", "ppl_fp32", "ppl_low", "ppl_change", "top1_agreement"}: the
//        perplexity of next-token prediction from the logits [B, T, V] against input_0's ids.
// Exits 1 when top-1 agreement is below A (default 0.99) or, for lm, the relative
// perplexity change is above R (default 0.01).

const { halfToNumber } = require('./lib/compare');
const { readInputDir, runModel } = require('./lib/ort_runner');

function bf16ToFloat(b) {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setUint32(0, b << 16);
  return buf.getFloat32(0);
}

// The first output as floats, whatever its 16- or 32-bit type.
function floats(tensor) {
  if (tensor.dataType === 1) return Float32Array.from(tensor.data);
  if (tensor.dataType === 10) return Float32Array.from(tensor.data, halfToNumber);
  if (tensor.dataType === 16) return Float32Array.from(tensor.data, bf16ToFloat);
  throw new Error(`output '${tensor.name}' has element type ${tensor.dataType}, not a float`);
}

function argmaxRows(x, rows, width) {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; ++r) {
    let best = 0;
    for (let k = 1; k < width; ++k) if (x[r * width + k] > x[r * width + best]) best = k;
    out[r] = best;
  }
  return out;
}

// Mean negative log-likelihood of ids[b, t + 1] under logits[b, t, :].
function nll(logits, ids, B, T, V) {
  let sum = 0;
  let n = 0;
  for (let b = 0; b < B; ++b) {
    for (let t = 0; t + 1 < T; ++t) {
      const row = (b * T + t) * V;
      let max = -Infinity;
      for (let k = 0; k < V; ++k) max = Math.max(max, logits[row + k]);
      let z = 0;
      for (let k = 0; k < V; ++k) z += Math.exp(logits[row + k] - max);
      const target = Number(ids[b * T + t + 1]);
      sum += Math.log(z) + max - logits[row + target];
      ++n;
    }
  }
  return { mean: sum / n, tokens: n };
}

async function main(argv) {
  const positional = [];
  let minAgreement = 0.99;
  let maxPplChange = 0.01;
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--min-agreement') minAgreement = Number(argv[++i]);
    else if (argv[i] === '--max-ppl-change') maxPplChange = Number(argv[++i]);
    else positional.push(argv[i]);
  }
  if (positional.length !== 5 || !['cnn', 'lm'].includes(positional[0]))
    throw new Error('usage: float16_quality.js cnn|lm FP32_MODEL FP32_INPUTS LOW_MODEL LOW_INPUTS');
  const [kind, fpModel, fpInputs, lowModel, lowInputs] = positional;
  const [yf] = await runModel(fpModel, fpInputs);
  const [yl] = await runModel(lowModel, lowInputs);
  if (yf.dims.join('x') !== yl.dims.join('x'))
    throw new Error(`output shapes differ: ${yf.dims.join('x')} vs ${yl.dims.join('x')}`);
  const a = floats(yf);
  const b = floats(yl);
  const width = yf.dims[yf.dims.length - 1];
  const rows = a.length / width;
  const ta = argmaxRows(a, rows, width);
  const tb = argmaxRows(b, rows, width);
  let agree = 0;
  for (let r = 0; r < rows; ++r) agree += ta[r] === tb[r] ? 1 : 0;
  const result = { samples: yf.dims[0], top1_agreement: agree / rows };
  let ok = result.top1_agreement >= minAgreement;
  if (kind === 'lm') {
    const ids = readInputDir(fpInputs)[0].data;
    const [B, T, V] = yf.dims;
    const f = nll(a, ids, B, T, V);
    const l = nll(b, ids, B, T, V);
    result.tokens = f.tokens;
    result.ppl_fp32 = Math.exp(f.mean);
    result.ppl_low = Math.exp(l.mean);
    result.ppl_change = result.ppl_low / result.ppl_fp32 - 1;
    ok = ok && Math.abs(result.ppl_change) <= maxPplChange;
  }
  console.log(JSON.stringify(result));
  return ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`float16_quality: ${err.message.split('\n')[0]}`);
    process.exit(1);
  });
