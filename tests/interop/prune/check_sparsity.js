// Reads the weights of a model pruned by `slmops prune` and of its original straight from the
// ONNX files (no slmops code), and checks the sparsity each MatMul/Gemm/Conv weight has:
//   S (a fraction): zeros within one per output row of S * size (per tensor), and every
//     weight that is not zero unchanged when UNCHANGED is given (magnitude, wanda, n:m);
//     with --smallest also that no zeroed |w| exceeds a kept one (per-tensor magnitude);
//   N:M: in every group of M consecutive weights along the reduction axis of every output,
//     at most N are non-zero.
// Usage: node check_sparsity.js ORIGINAL.onnx PRUNED.onnx (S|N:M) [--unchanged] [--smallest]
// Prints one JSON line {ok, tensors: [{name, size, zeros, sparsity, ...}], problems: [...]}.
'use strict';
const path = require('path');
const { readModel } = require(path.join(__dirname, '..', 'lib', 'onnx_model.js'));

function main() {
  const [origFile, prunedFile, spec, ...flags] = process.argv.slice(2);
  const orig = readModel(origFile), pruned = readModel(prunedFile);
  const nm = spec.includes(':') ? spec.split(':').map(Number) : null;
  const S = nm ? null : Number(spec);
  const tensors = [], problems = [];
  for (const n of pruned.nodes) {
    if (!['MatMul', 'Gemm', 'Conv'].includes(n.op)) continue;
    const wname = n.inputs[1];
    const w = pruned.inits.get(wname), w0 = orig.inits.get(wname);
    if (!w || !w0 || w.dataType !== 1) continue;
    // (k, n) -> index: MatMul/Gemm B [K, N] (Gemm transB: [N, K]); Conv [O, rest].
    let K, N, at;
    if (n.op === 'Conv') { N = w.dims[0]; K = w.data.length / N; at = (k, o) => o * K + k; }
    else if (n.op === 'Gemm' && n.attrs.transB) { N = w.dims[0]; K = w.dims[1]; at = (k, o) => o * K + k; }
    else { K = w.dims[0]; N = w.dims[1]; at = (k, o) => k * N + o; }
    let zeros = 0, changed = 0, maxPruned = 0, minKept = Infinity;
    for (let i = 0; i < w.data.length; ++i) {
      if (w.data[i] === 0) { zeros++; maxPruned = Math.max(maxPruned, Math.abs(w0.data[i])); }
      else { minKept = Math.min(minKept, Math.abs(w0.data[i])); if (w.data[i] !== w0.data[i]) changed++; }
    }
    const t = { name: wname, op: n.op, K, N, size: w.data.length, zeros, sparsity: zeros / w.data.length };
    if (nm) {
      const [keep, M] = nm;
      let bad = 0;
      for (let o = 0; o < N; ++o)
        for (let k0 = 0; k0 < K; k0 += M) {
          let nz = 0;
          const len = Math.min(M, K - k0);
          for (let k = k0; k < k0 + len; ++k) nz += w.data[at(k, o)] !== 0;
          if (nz > Math.ceil(len * keep / M)) bad++;
        }
      t.bad_groups = bad;
      if (bad) problems.push(`${wname}: ${bad} groups of ${M} hold more than ${keep} non-zeros`);
    } else if (Math.abs(zeros - S * w.data.length) > N) {
      problems.push(`${wname}: ${zeros} zeros of ${w.data.length}, requested ${S} (allowed one per row: ${N})`);
    }
    if (flags.includes('--unchanged') && changed) problems.push(`${wname}: ${changed} kept weights changed`);
    if (flags.includes('--smallest') && maxPruned > minKept)
      problems.push(`${wname}: a pruned |w| ${maxPruned} exceeds a kept |w| ${minKept}`);
    tensors.push(t);
  }
  if (!tensors.length) problems.push('no pruned weight found');
  console.log(JSON.stringify({ ok: problems.length === 0, tensors, problems }));
}

main();
