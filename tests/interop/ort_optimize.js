#!/usr/bin/env node
'use strict';

// Usage: ort_optimize.js LEVEL MODEL OUT [MODEL OUT ...]
//
// Saves ONNX Runtime's own optimized graph of each MODEL to OUT: a CPU session with
// graphOptimizationLevel LEVEL ('basic', 'extended', 'all') and optimizedModelFilePath OUT.
// The optimize interop test compares slmops' node count with this graph's (ONNX Runtime
// folds and fuses at session creation; 'basic' uses standard ONNX ops only).
// Exit status 0 when every model was saved; else 1, one line per failure on stderr
// ("ort_optimize: MODEL: why").

const { loadOrt, oneLine } = require('./lib/ort_runner');

async function main(argv) {
  if (argv.length < 3 || argv.length % 2 !== 1) throw new Error('usage: ort_optimize.js LEVEL MODEL OUT [MODEL OUT ...]');
  const ort = loadOrt();
  const level = argv[0];
  let failed = 0;
  for (let i = 1; i < argv.length; i += 2) {
    try {
      const session = await ort.InferenceSession.create(argv[i], {
        executionProviders: ['cpu'],
        graphOptimizationLevel: level,
        optimizedModelFilePath: argv[i + 1],
        logSeverityLevel: 4,
      });
      await session.release();
    } catch (err) {
      process.stderr.write(`ort_optimize: ${argv[i]}: ${oneLine(err)}\n`);
      failed++;
    }
  }
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (rc) => process.exit(rc),
  (err) => {
    process.stderr.write(`ort_optimize: ${oneLine(err)}\n`);
    process.exit(1);
  });
