#!/usr/bin/env node
'use strict';

// Usage: compare_batch.js LIST [--rtol R] [--atol A]
//
// LIST has one case per line: MODEL_A <tab> MODEL_B <tab> INPUT_DIR. For each
// case both models run in ONNX Runtime (CPU) on the inputs and their outputs
// are compared as compare_models.js does (B is the reference). A case whose
// reference model B cannot run in ONNX Runtime is skipped (ORT's own limits);
// one where A fails but B runs is a failure (slmops wrote something ORT
// rejects). One process for all cases: loading ORT once is most of the cost.
//
// Prints one line per failure and a closing "N passed, N failed, N skipped"
// line. Exit status 0 when nothing failed, 1 otherwise.

const fs = require('node:fs');
const { runModel, oneLine } = require('./lib/ort_runner');
const { compareOutputs } = require('./lib/compare');

async function main(argv) {
  let rtol = 1e-5;
  let atol = 1e-6;
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rtol') rtol = Number(argv[++i]);
    else if (argv[i] === '--atol') atol = Number(argv[++i]);
    else positional.push(argv[i]);
  }
  if (positional.length !== 1 || !(rtol >= 0) || !(atol >= 0))
    throw new Error('usage: compare_batch.js LIST [--rtol R] [--atol A]');
  const lines = fs.readFileSync(positional[0], 'utf8').split('\n').filter((l) => l.trim() !== '');
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const line of lines) {
    const [modelA, modelB, inputDir] = line.split('\t');
    let outB;
    try {
      outB = await runModel(modelB, inputDir);
    } catch (err) {
      skipped++;
      continue;
    }
    try {
      const outA = await runModel(modelA, inputDir);
      const { equal, summary } = compareOutputs(outA, outB, rtol, atol);
      if (equal) passed++;
      else {
        failed++;
        console.log(`FAIL ${modelA}: ${summary}`);
      }
    } catch (err) {
      failed++;
      console.log(`FAIL ${modelA}: ${oneLine(err)}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`compare_batch: ${oneLine(err)}\n`);
    process.exit(1);
  });
