// Reads a model pruned by `slmops prune --method structured` and its original straight from the
// ONNX files (no slmops code) and checks what structured pruning promises:
//   - the float parameter count drops by exactly EXPECTED_DROP (computed by the caller from
//     the model's shapes);
//   - every weight that shrank lost indices, never gained any: cut along one axis, what is left
//     is the original slices of that axis, in order, unchanged (units are removed, never
//     altered); cut along two (a Conv between two pruned layers), its values are original ones;
//   - no node is added, and the only nodes removed are shape arithmetic (a Reshape entry
//     computed from Shape -> Gather -> Unsqueeze that became a constant).
// With --refit (the readers' weights were re-fitted: --compensate) the values are not compared,
// only shapes, the parameter drop and the ops.
// Usage: node check_structured.js ORIGINAL.onnx PRUNED.onnx EXPECTED_DROP [--refit]
// Prints one JSON line {ok, params_before, params_after, shrunk: [{name, from, to}], problems}.
'use strict';
const path = require('path');
const { readModel } = require(path.join(__dirname, '..', 'lib', 'onnx_model.js'));

const floatTypes = new Set([1, 10, 11, 16]);
const count = (m) => [...m.inits.values()].filter((t) => floatTypes.has(t.dataType))
  .reduce((s, t) => s + t.data.length, 0);

// Whether `t` is `t0` with some indices of `axis` removed, the rest in order and unchanged.
function isSubSelection(t0, t, axis) {
  const outer = t0.dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = t0.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const len0 = t0.dims[axis], len = t.dims[axis];
  const slice = (x, L, o, a) => x.data.subarray((o * L + a) * inner, (o * L + a + 1) * inner);
  const same = (a, b) => a.every((v, i) => Object.is(v, b[i]));
  // Greedy in order: each kept index matches the first unused original index equal to it in
  // every outer block.
  let a0 = 0;
  for (let a = 0; a < len; ++a) {
    while (a0 < len0) {
      let ok = true;
      for (let o = 0; o < outer && ok; ++o) ok = same(slice(t, len, o, a), slice(t0, len0, o, a0));
      ++a0;
      if (ok) break;
      if (a0 === len0) return false;
    }
    if (a0 > len0) return false;
  }
  return true;
}

// Whether every value of `b` is a distinct value of `a` (a weight cut along two axes: a Conv
// whose input channels and output channels both shrank).
function isSubMultiset(a, b) {
  const have = new Map();
  for (const v of a) have.set(v, (have.get(v) || 0) + 1);
  for (const v of b) {
    const n = have.get(v) || 0;
    if (!n) return false;
    have.set(v, n - 1);
  }
  return true;
}

function main() {
  const [origFile, prunedFile, expected, flag] = process.argv.slice(2);
  const refit = flag === '--refit';
  const orig = readModel(origFile), pruned = readModel(prunedFile);
  const paramsBefore = count(orig), paramsAfter = count(pruned);
  const problems = [], shrunk = [];
  if (paramsBefore - paramsAfter !== Number(expected))
    problems.push(`float parameters ${paramsBefore} -> ${paramsAfter}: dropped ${paramsBefore - paramsAfter}, expected ${expected}`);
  for (const [name, t] of pruned.inits) {
    const t0 = orig.inits.get(name);
    if (!t0 || t0.dims.join() === t.dims.join()) continue;
    shrunk.push({ name, from: t0.dims, to: t.dims });
    const axes = t0.dims.map((d, i) => (d !== t.dims[i] ? i : -1)).filter((i) => i >= 0);
    if (t0.dims.length !== t.dims.length || axes.some((a) => t.dims[a] >= t0.dims[a]))
      problems.push(`${name}: [${t0.dims}] -> [${t.dims}] is not a cut`);
    else if (refit)
      continue;
    else if (axes.length === 1 && !isSubSelection(t0, t, axes[0]))
      problems.push(`${name}: what is left is not the original slices of axis ${axes[0]}, unchanged`);
    else if (axes.length > 1 && !isSubMultiset(t0.data, t.data))
      problems.push(`${name}: cut along axes ${axes}, but holds values the original does not`);
  }
  // Ops: none added; removed only the shape arithmetic of a Reshape entry that became a
  // constant (Shape -> Gather -> Unsqueeze, Constant).
  const tally = (m) => m.nodes.reduce((t, n) => t.set(n.op, (t.get(n.op) || 0) + 1), new Map());
  const before = tally(orig), after = tally(pruned);
  for (const [op, k] of after)
    if (k > (before.get(op) || 0)) problems.push(`${k - (before.get(op) || 0)} ${op} node(s) added`);
  for (const [op, k] of before)
    if (k > (after.get(op) || 0) && !['Constant', 'Shape', 'Gather', 'Unsqueeze'].includes(op))
      problems.push(`${k - (after.get(op) || 0)} ${op} node(s) removed`);
  if (!shrunk.length) problems.push('no weight shrank');
  console.log(JSON.stringify({ ok: problems.length === 0, params_before: paramsBefore, params_after: paramsAfter, shrunk, problems }));
}

main();
