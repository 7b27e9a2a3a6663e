#!/usr/bin/env node
'use strict';

// Usage: compare_models.js MODEL_A MODEL_B INPUT_DIR [--rtol R] [--atol A]
//
// Runs both models in ONNX Runtime (CPU) on INPUT_DIR/input_<i>.pb and
// compares their outputs: same number of outputs, same names in the same
// order, same dtypes and shapes, and values that agree. Floating-point
// elements (float32, float64, float16) agree when |a - b| <= atol + rtol*|b|,
// where a comes from MODEL_A and b from MODEL_B (the reference); NaN agrees
// with NaN and an infinity only with the same infinity. All other types must
// match exactly. Defaults: rtol 1e-5, atol 1e-6.
//
// Prints a one-line summary on stdout. Exit status: 0 if the outputs agree,
// 3 if they differ (the summary names the worst element), 1 if a model
// fails to load or run or the arguments are wrong (one line on stderr).

const { compareOutputs } = require('./lib/compare');
const { runModel, oneLine } = require('./lib/ort_runner');

const EXIT_EQUAL = 0;
const EXIT_ERROR = 1;
const EXIT_DIFFERENT = 3;

const USAGE = 'usage: compare_models.js MODEL_A MODEL_B INPUT_DIR [--rtol R] [--atol A]';

/** Parses the command line; throws with a usage message when malformed. */
function parseArgs(argv) {
  const positional = [];
  const tol = { rtol: 1e-5, atol: 1e-6 };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(rtol|atol)(?:=(.*))?$/.exec(argv[i]);
    if (!m) {
      positional.push(argv[i]);
      continue;
    }
    const text = m[2] !== undefined ? m[2] : argv[++i];
    const value = Number(text);
    if (text === undefined || text === '' || !Number.isFinite(value) || value < 0) {
      throw new Error(`--${m[1]} needs a non-negative number; ${USAGE}`);
    }
    tol[m[1]] = value;
  }
  if (positional.length !== 3) throw new Error(USAGE);
  const [modelA, modelB, inputDir] = positional;
  return { modelA, modelB, inputDir, ...tol };
}

async function main(argv) {
  const { modelA, modelB, inputDir, rtol, atol } = parseArgs(argv);
  const outA = await runModel(modelA, inputDir);
  const outB = await runModel(modelB, inputDir);
  const { equal, summary } = compareOutputs(outA, outB, rtol, atol);
  console.log(`compare_models: ${summary}`);
  return equal ? EXIT_EQUAL : EXIT_DIFFERENT;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`compare_models: ${oneLine(err)}\n`);
    process.exit(EXIT_ERROR);
  });
