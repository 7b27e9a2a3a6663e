#!/usr/bin/env node
'use strict';

// Usage: run_ort.js MODEL INPUT_DIR OUTPUT_DIR
//
// Runs MODEL in ONNX Runtime (CPU) on INPUT_DIR/input_<i>.pb and writes
// OUTPUT_DIR/output_<i>.pb, one TensorProto per model output in output
// order, each named after its output. See README.md for how inputs are
// matched to the model's inputs.
//
// Exit status: 0 on success; 1 on any failure, with one line on stderr
// starting with "run_ort: ".

const fs = require('node:fs');
const path = require('node:path');
const { encodeTensorProto } = require('./lib/tensor_proto');
const { runModel, oneLine } = require('./lib/ort_runner');

async function main(argv) {
  if (argv.length !== 3) throw new Error('usage: run_ort.js MODEL INPUT_DIR OUTPUT_DIR');
  const [model, inputDir, outputDir] = argv;

  const outputs = await runModel(model, inputDir);

  fs.mkdirSync(outputDir, { recursive: true });
  outputs.forEach((tensor, i) => {
    fs.writeFileSync(path.join(outputDir, `output_${i}.pb`), encodeTensorProto(tensor));
  });
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`run_ort: ${oneLine(err)}\n`);
    process.exit(1);
  });
