'use strict';

// Shared helpers for the interop scripts: loading onnxruntime-node, reading
// a test_data_set-style input folder, running a model on the CPU provider,
// and converting between ORT tensors and decoded TensorProtos.

const fs = require('node:fs');
const path = require('node:path');
const { codeForOrtType, decodeTensorProto, dtypeInfo, isSupportedOrtType } = require('./tensor_proto');

// ORT's own log severity: 0 verbose ... 3 error, 4 fatal. Errors surface as
// exceptions that the scripts report in one line, so keep the native logger
// from printing them a second time.
const ORT_LOG_SEVERITY = 4;

let ortModule = null;

/** Loads onnxruntime-node once; throws a readable error if it is missing. */
function loadOrt() {
  if (ortModule) return ortModule;
  try {
    ortModule = require('onnxruntime-node');
  } catch (err) {
    throw new Error(
      `cannot load onnxruntime-node (${err.message.split('\n')[0]}); ` +
      `run 'ONNXRUNTIME_NODE_INSTALL=skip npm ci' in ${path.resolve(__dirname, '..')}`);
  }
  ortModule.env.logLevel = 'fatal';
  return ortModule;
}

/** Version string of the loaded onnxruntime-node package. */
function ortVersion() {
  return loadOrt().env.versions.node;
}

/**
 * Creates a CPU inference session for the model file at `modelPath`. ORT's default graph
 * optimizations apply unless ORT_GRAPH_OPT names another level ('disabled', 'basic',
 * 'extended', 'all'): some of ORT's fusions change the arithmetic (DequantizeLinear(int4
 * blocked) + MatMul becomes MatMulNBits with int8 activations), so tests of a graph's
 * meaning compare against ORT's basic level and also run the default one.
 */
async function createSession(modelPath) {
  const ort = loadOrt();
  if (!fs.existsSync(modelPath)) throw new Error(`model not found: ${modelPath}`);
  try {
    return await ort.InferenceSession.create(modelPath, {
      executionProviders: ['cpu'],
      logSeverityLevel: ORT_LOG_SEVERITY,
      ...(process.env.ORT_GRAPH_OPT ? { graphOptimizationLevel: process.env.ORT_GRAPH_OPT } : {}),
    });
  } catch (err) {
    throw new Error(`cannot load model ${modelPath}: ${err.message}`);
  }
}

/**
 * Reads input_0.pb, input_1.pb, ... from `dir` (the layout of ONNX's
 * test_data_set_N folders). The files must be numbered 0..n-1 without gaps.
 * Returns the decoded tensors in index order.
 */
function readInputDir(dir) {
  let entries;
  try {
    entries = fs.readdirSync(dir);
  } catch (err) {
    throw new Error(`cannot read input dir ${dir}: ${err.message}`);
  }
  const indices = entries
    .map((f) => /^input_(\d+)\.pb$/.exec(f))
    .filter(Boolean)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  indices.forEach((idx, i) => {
    if (idx !== i) throw new Error(`input files in ${dir} are not numbered 0..n-1 (missing input_${i}.pb)`);
  });
  return indices.map((i) => {
    const file = path.join(dir, `input_${i}.pb`);
    try {
      return decodeTensorProto(fs.readFileSync(file));
    } catch (err) {
      throw new Error(`${file}: ${err.message}`);
    }
  });
}

/** Wraps a decoded TensorProto in an ort.Tensor. */
function toOrtTensor(tensor) {
  const ort = loadOrt();
  return new ort.Tensor(dtypeInfo(tensor.dataType).ort, tensor.data, tensor.dims);
}

/** Converts an ort.Tensor output to a decoded-TensorProto object. */
function fromOrtTensor(name, value) {
  if (!value || typeof value.type !== 'string' || !Array.isArray(value.dims)) {
    throw new Error(`output '${name}' is not a tensor (sequences, maps and optionals are not supported)`);
  }
  const dataType = codeForOrtType(value.type);
  const { array } = dtypeInfo(dataType);
  // Copy the data, so the result does not depend on ORT's output buffers
  // outliving the session (runModel releases it), into the array type used
  // throughout: float16 stays bit patterns even where ORT returns a
  // Float16Array.
  let data;
  if (array === null) {
    data = value.data.slice();
  } else {
    const src = value.data;
    data = new array(src.length);
    new Uint8Array(data.buffer).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
  }
  return { name, dataType, dims: [...value.dims], data };
}

/**
 * Builds the feeds for `session` from input tensors given in file order.
 * A tensor whose TensorProto name is one of the model's input names is fed
 * to that input; the other tensors go, in file order, to the inputs not
 * claimed by name (so with no names this is purely positional).
 */
function bindInputs(session, tensors) {
  const names = session.inputNames;
  if (tensors.length > names.length) {
    throw new Error(`${tensors.length} input files but the model has ${names.length} inputs`);
  }
  const targets = new Array(tensors.length);
  const claimed = new Set();
  tensors.forEach((tensor, i) => {
    if (!names.includes(tensor.name)) return;
    if (claimed.has(tensor.name)) throw new Error(`input '${tensor.name}' is given twice (input_${i}.pb)`);
    claimed.add(tensor.name);
    targets[i] = tensor.name;
  });
  const unclaimed = names.filter((n) => !claimed.has(n));
  tensors.forEach((tensor, i) => {
    if (targets[i] === undefined) targets[i] = unclaimed.shift();
  });

  const feeds = {};
  tensors.forEach((tensor, i) => {
    try {
      feeds[targets[i]] = toOrtTensor(tensor);
    } catch (err) {
      throw new Error(`input_${i}.pb for input '${targets[i]}': ${err.message}`);
    }
  });
  return feeds;
}

/**
 * Rejects models whose inputs or outputs this harness cannot pass: sequences,
 * maps and optionals (their .pb files are not TensorProtos) and tensor types
 * that onnxruntime-node cannot handle (int4/uint4 outputs abort the process,
 * so they must be caught before running).
 */
function checkSignature(session) {
  const check = (kind, metadata) => {
    for (const m of metadata) {
      if (m.isTensor === false) {
        throw new Error(`model ${kind} '${m.name}' is not a tensor; only tensor ${kind}s are supported`);
      }
      if (!isSupportedOrtType(m.type)) {
        throw new Error(`model ${kind} '${m.name}' has type ${m.type}, which this harness does not support`);
      }
    }
  };
  check('input', session.inputMetadata);
  check('output', session.outputMetadata);
}

/**
 * Loads `modelPath`, feeds it the tensors of `inputDir` (see readInputDir
 * and bindInputs) and runs it on the CPU. Returns the outputs as
 * decoded-TensorProto objects in the model's output order, each named after
 * its output.
 */
async function runModel(modelPath, inputDir) {
  const session = await createSession(modelPath);
  try {
    checkSignature(session);
    const feeds = bindInputs(session, readInputDir(inputDir));
    let results;
    try {
      results = await session.run(feeds);
    } catch (err) {
      throw new Error(`running ${modelPath} failed: ${err.message}`);
    }
    return session.outputNames.map((name) => fromOrtTensor(name, results[name]));
  } finally {
    await session.release();
  }
}

/** Collapses an error into a single line for the scripts' stderr message. */
function oneLine(err) {
  const msg = err && err.message ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

module.exports = {
  loadOrt,
  ortVersion,
  createSession,
  readInputDir,
  runModel,
  oneLine,
};
