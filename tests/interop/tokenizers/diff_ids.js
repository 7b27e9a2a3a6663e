#!/usr/bin/env node
// compare.sh's helper. Compares slmops' tokenize output with the reference.
//   node diff_ids.js ids  REF_JSON OUT   OUT must be the ids on one line + "\n", as REF_JSON's ids
//   node diff_ids.js json REF_JSON OUT   OUT must be {"ids":[...],"tokens":[...]} equal to REF_JSON's
//   node diff_ids.js text REF_FILE OUT   OUT must be byte-equal to REF_FILE
// Exit 0 when equal; else prints what differs (first difference, windows of +-5) and exits 1.
'use strict';
const fs = require('fs');

const [mode, refFile, outFile] = process.argv.slice(2);
const W = 5;

function show(arr, lo, hi) {
  return arr.slice(lo, hi).map((x) => (typeof x === 'string' ? JSON.stringify(x) : String(x))).join(' ');
}

function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function reportIds(ref, got, tokens, what) {
  const i = firstDiff(ref, got);
  if (i < 0) return false;
  const lo = Math.max(0, i - W);
  console.log(`    ${what} differ at index ${i} (reference has ${ref.length}, slmops ${got.length})`);
  console.log(`    reference [${lo}..]: ${show(ref, lo, i + W + 1)}`);
  console.log(`    slmops    [${lo}..]: ${show(got, lo, i + W + 1)}`);
  if (tokens) console.log(`    reference tokens:  ${show(tokens, lo, i + W + 1)}`);
  return true;
}

const out = fs.readFileSync(outFile);
if (mode === 'text') {
  const ref = fs.readFileSync(refFile);
  if (Buffer.compare(ref, out) === 0) process.exit(0);
  let i = 0;
  while (i < ref.length && i < out.length && ref[i] === out[i]) i++;
  const lo = Math.max(0, i - 20);
  const esc = (b) => JSON.stringify(b.subarray(lo, i + 20).toString('latin1')).replace(/[\u0080-\u00ff]/g, (c) => '\\x' + c.charCodeAt(0).toString(16));
  console.log(`    text differs at byte ${i} (reference ${ref.length} bytes, slmops ${out.length})`);
  console.log(`    reference bytes [${lo}..]: ${esc(ref)}`);
  console.log(`    slmops    bytes [${lo}..]: ${esc(out)}`);
  process.exit(1);
}

const ref = JSON.parse(fs.readFileSync(refFile, 'utf8'));
if (mode === 'ids') {
  const s = out.toString('latin1');
  if (!/^(\d+( \d+)*)?\n$/.test(s)) {
    const got = s.split(/\s+/).filter((x) => x).map(Number);
    if (!reportIds(ref.ids, got, ref.tokens, 'ids')) console.log('    ids equal, but output is not "ids separated by single spaces" + one newline: ' + JSON.stringify(s.slice(0, 60)) + (s.length > 60 ? '...' : ''));
    process.exit(1);
  }
  const got = s.trim() === '' ? [] : s.trim().split(' ').map(Number);
  process.exit(reportIds(ref.ids, got, ref.tokens, 'ids') ? 1 : 0);
}
if (mode === 'json') {
  let got;
  try {
    got = JSON.parse(out.toString('utf8'));
  } catch (e) {
    console.log('    output is not JSON: ' + e.message);
    process.exit(1);
  }
  if (!got || !Array.isArray(got.ids) || !Array.isArray(got.tokens)) {
    console.log('    output JSON has no "ids" and "tokens" arrays');
    process.exit(1);
  }
  let bad = reportIds(ref.ids, got.ids, ref.tokens, 'ids');
  if (!bad) bad = reportIds(ref.tokens, got.tokens, null, 'tokens');
  process.exit(bad ? 1 : 0);
}
console.log('diff_ids: unknown mode ' + mode);
process.exit(2);
