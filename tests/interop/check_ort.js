#!/usr/bin/env node
'use strict';

// Usage: check_ort.js
//
// Tells whether ONNX Runtime is usable here: loads onnxruntime-node,
// creates a CPU session on ONNX's test_relu model and runs it on its
// reference input. On success prints "onnxruntime-node <version>" and exits
// 0; otherwise prints one line starting with "check_ort: " on stderr and
// exits 1. Tests call this to decide whether to run or skip ORT checks.

const fs = require('node:fs');
const path = require('node:path');
const { readInputDir, runModel, ortVersion, oneLine } = require('./lib/ort_runner');

// Shipped by Debian's libonnx-testdata package.
const RELU_DIR = '/usr/share/libonnx-testdata/data/node/test_relu';

async function main() {
  const model = path.join(RELU_DIR, 'model.onnx');
  if (!fs.existsSync(model)) {
    throw new Error(`${model} not found (apt-get install libonnx-testdata)`);
  }
  const version = ortVersion();

  // Relu of the reference input: exactly max(x, 0) for every element.
  const inputDir = path.join(RELU_DIR, 'test_data_set_0');
  const [x] = readInputDir(inputDir);
  const [y] = await runModel(model, inputDir);
  const ok = y.data.length === x.data.length && x.data.every((v, i) => y.data[i] === Math.max(v, 0));
  if (!ok) throw new Error('test_relu produced wrong output');

  console.log(`onnxruntime-node ${version}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`check_ort: ${oneLine(err)}\n`);
    process.exit(1);
  });
