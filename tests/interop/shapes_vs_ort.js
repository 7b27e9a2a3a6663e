'use strict';

// The types `slmops inspect --json` infers (formats/shape_infer.cpp) against the tensors ONNX
// Runtime actually computes, value by value.
//
//   node shapes_vs_ort.js SLMOPS NPZ_TO_PB SOURCE_DIR [--every N]
//
// Models: the fixtures (tests/fixtures/*.onnx) on their evaluation inputs, three quantized
// copies of them (MatMulNBits, blocked DequantizeLinear at opset 21, DynamicQuantizeMatMul:
// the com.microsoft schemas and newer-opset fallback), and every model (or every Nth with
// --every N) of libonnx-testdata's node, pytorch-converted, pytorch-operator and simple
// folders in sorted path order, on test_data_set_0. A temporary copy of each model lists every node output of
// the main graph as a graph output, so ORT returns all of them, not only the real outputs.
//
// For every value both sides know: the dtype must be equal, the rank equal, and every dim
// slmops states as a number equal to ORT's; a symbolic dim matches any size, but one symbol
// must stand for one size within a run. A model ORT cannot load or run with the given
// inputs is skipped (counted). Fails on any mismatch, when a fixture value is left untyped,
// or when fewer than 50 testdata models are typed in full.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { loadOrt, createSession, readInputDir, oneLine } = require('./lib/ort_runner');
const { dtypeInfo } = require('./lib/tensor_proto');

const [slmops, npzToPb, srcDir, ...rest] = process.argv.slice(2);
if (!slmops || !npzToPb || !srcDir) {
  console.error('usage: node shapes_vs_ort.js SLMOPS NPZ_TO_PB SOURCE_DIR [--every N]');
  process.exit(2);
}
const every = rest[0] === '--every' ? Number(rest[1]) : 1;
const MIN_TESTDATA_FULLY_TYPED = 50;
const TESTDATA = '/usr/share/libonnx-testdata/data';

// ORT's tensor type names -> slmops dtype names (ir/dtype.cpp).
const DTYPE_OF_ORT = {
  float32: 'float', float64: 'double', float16: 'float16', bfloat16: 'bfloat16', int8: 'int8', uint8: 'uint8',
  int16: 'int16', uint16: 'uint16', int32: 'int32', uint32: 'uint32', int64: 'int64', uint64: 'uint64',
  bool: 'bool', string: 'string',
};
// onnxruntime-node aborts the process on int4/uint4 outputs: such values are never requested.
const NEVER_REQUEST = new Set(['int4', 'uint4', 'float4e2m1']);

// ---------------------------------------------------------------------------------------------
// A model copy with extra graph outputs, by editing the protobuf bytes: ModelProto.graph is
// field 7, GraphProto.output field 12, ValueInfoProto.name field 1. Repeated fields may be
// appended anywhere, so the graph message gets new output entries at its end.

function readVarint(buf, pos) {
  let v = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[pos++];
    v |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [v, pos];
    shift += 7n;
  }
}

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}

function lengthDelimited(field, payload) {
  return Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
}

function withExtraOutputs(modelBytes, names) {
  const parts = [];
  let graph = null;
  let pos = 0;
  while (pos < modelBytes.length) {
    const start = pos;
    let key;
    [key, pos] = readVarint(modelBytes, pos);
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) {
      [, pos] = readVarint(modelBytes, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      let len;
      [len, pos] = readVarint(modelBytes, pos);
      const body = modelBytes.subarray(pos, pos + Number(len));
      pos += Number(len);
      if (field === 7) {
        graph = body;
        parts.push(null);
        continue;
      }
    } else {
      throw new Error(`unexpected wire type ${wire} in ModelProto`);
    }
    parts.push(modelBytes.subarray(start, pos));
  }
  if (!graph) throw new Error('model has no graph');
  const extra = names.map((n) => lengthDelimited(12, lengthDelimited(1, Buffer.from(n, 'utf8'))));
  const newGraph = lengthDelimited(7, Buffer.concat([graph, ...extra]));
  return Buffer.concat(parts.map((p) => (p === null ? newGraph : p)));
}

// ---------------------------------------------------------------------------------------------

const totals = {
  models: 0, skipped: 0, values: 0, dtypeChecked: 0, shapeChecked: 0, untyped: 0, noShape: 0, mismatches: 0,
  testdataFullyTyped: 0, fixtureUntyped: 0,
};
const failures = [];

function inspect(modelPath) {
  const out = execFileSync(slmops, ['-q', 'inspect', '--json', modelPath], { maxBuffer: 1 << 28 });
  return JSON.parse(out.toString());
}

function compareShape(value, dims, symbols) {
  const shape = value.shape;
  if (shape.length !== dims.length) return `rank ${shape.length} ([${shape}]) but ORT gives [${dims}]`;
  for (let i = 0; i < shape.length; ++i) {
    const d = shape[i];
    if (typeof d === 'number' && d !== dims[i]) return `dim ${i} is ${d} ([${shape}]) but ORT gives [${dims}]`;
    if (typeof d === 'string') {
      if (symbols.has(d) && symbols.get(d) !== dims[i])
        return `symbol '${d}' is ${symbols.get(d)} elsewhere but ${dims[i]} here (ORT [${dims}])`;
      symbols.set(d, dims[i]);
    }
  }
  return null;
}

// Feeds for `session` from test_data_set tensors: by TensorProto name when it names an input,
// else in file order to the inputs not claimed by name (ort_runner's rule).
function feedsFor(session, tensors) {
  const ort = loadOrt();
  const names = session.inputNames;
  const claimed = new Set(tensors.map((t) => t.name).filter((n) => names.includes(n)));
  const unclaimed = names.filter((n) => !claimed.has(n));
  const feeds = {};
  for (const t of tensors) {
    const name = names.includes(t.name) ? t.name : unclaimed.shift();
    if (name === undefined) throw new Error('more input files than model inputs');
    feeds[name] = new ort.Tensor(dtypeInfo(t.dataType).ort, t.data, t.dims);
  }
  return feeds;
}

async function runWithOutputs(modelPath, inputDir, names, tmp) {
  const copy = path.join(tmp, 'all_outputs.onnx');
  fs.writeFileSync(copy, withExtraOutputs(fs.readFileSync(modelPath), names));
  const session = await createSession(copy);
  try {
    const feeds = feedsFor(session, readInputDir(inputDir));
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

// Checks one model; `kind` is 'fixture' or 'testdata'.
async function checkModel(label, modelPath, inputDir, kind, tmp) {
  let info;
  try {
    info = inspect(modelPath);
  } catch (err) {
    failures.push(`${label}: slmops inspect failed: ${oneLine(err)}`);
    totals.mismatches++;
    return;
  }
  const values = info.values.filter((v) => !v.subgraph && (v.kind === 'node_output' || v.graph_output));
  const outputs = new Set(info.values.filter((v) => !v.subgraph && v.graph_output).map((v) => v.name));
  const extra = values.filter((v) => !outputs.has(v.name) && !NEVER_REQUEST.has(v.dtype)).map((v) => v.name);
  let results;
  try {
    results = await runWithOutputs(modelPath, inputDir, extra, tmp);
  } catch (err) {
    try {
      // Some graphs do not accept every value as an output (ORT refuses, e.g., an output
      // that is also a node's only input in a fused pattern): fall back to the real outputs.
      results = await runWithOutputs(modelPath, inputDir, [], tmp);
    } catch (err2) {
      totals.skipped++;
      if (kind === 'fixture') failures.push(`${label}: ORT cannot run it: ${oneLine(err2)}`);
      return;
    }
  }
  totals.models++;
  const symbols = new Map();
  let untyped = 0;
  let mismatches = 0;
  for (const v of values) {
    const r = results[v.name];
    if (!r || typeof r.type !== 'string' || !Array.isArray(r.dims)) continue;  // not run, or not a tensor
    totals.values++;
    if (v.dtype === null) {
      untyped++;
      continue;
    }
    totals.dtypeChecked++;
    const ortType = DTYPE_OF_ORT[r.type] || r.type;
    let problem = ortType !== v.dtype ? `dtype ${v.dtype} but ORT gives ${ortType}` : null;
    if (!problem) {
      if (v.shape === null) {
        totals.noShape++;
        untyped++;
        continue;
      }
      totals.shapeChecked++;
      problem = compareShape(v, r.dims.map(Number), symbols);
    }
    if (problem) {
      mismatches++;
      failures.push(`${label}: value '${v.name}': ${problem}`);
    }
  }
  totals.untyped += untyped;
  totals.mismatches += mismatches;
  if (kind === 'testdata' && untyped === 0) totals.testdataFullyTyped++;
  if (kind === 'fixture' && untyped > 0) {
    totals.fixtureUntyped += untyped;
    failures.push(`${label}: ${untyped} values without an inferred dtype and shape`);
  }
  console.log(`${mismatches ? 'FAIL' : 'ok  '} ${label}: ${values.length} values, ${untyped} untyped, ${mismatches} mismatches`);
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slmops-shapes-'));
  try {
    const fx = path.join(srcDir, 'tests', 'fixtures');
    const data = { cnn_digits: 'cnn_digits_test.npz', gpt_bytes: 'lm_eval.npz', llama_bytes: 'lm_eval.npz' };
    const fixtures = [];
    for (const [name, npz] of Object.entries(data)) {
      const dir = path.join(tmp, `${name}-data`);
      execFileSync(npzToPb, [path.join(fx, `${name}.onnx`), path.join(fx, npz), dir, '--samples', '2']);
      fixtures.push([name, path.join(fx, `${name}.onnx`), dir]);
    }
    // Quantized copies: com.microsoft ops (MatMulNBits, DynamicQuantizeMatMul) and opset 21.
    const quantized = [
      ['llama_bytes.int4', 'llama_bytes', ['--mode', 'int4-weight']],
      ['llama_bytes.int4-qdq', 'llama_bytes', ['--mode', 'int4-weight', '--format', 'qdq', '--quantize-embeddings', 'true']],
      ['gpt_bytes.int8-dynamic', 'gpt_bytes', ['--mode', 'int8-dynamic']],
    ];
    for (const [label, base, args] of quantized) {
      const out = path.join(tmp, `${label}.onnx`);
      try {
        execFileSync(slmops, ['-q', 'quantize', ...args, path.join(fx, `${base}.onnx`), '-o', out], { stdio: 'pipe' });
      } catch (err) {
        failures.push(`${label}: slmops quantize failed: ${oneLine(err)}`);
        totals.mismatches++;
        continue;
      }
      fixtures.push([label, out, path.join(tmp, `${base}-data`)]);
    }
    for (const [label, model, dir] of fixtures) await checkModel(label, model, dir, 'fixture', tmp);

    const models = [];
    for (const sub of ['node', 'pytorch-converted', 'pytorch-operator', 'simple']) {
      for (const d of fs.readdirSync(path.join(TESTDATA, sub))) {
        const m = path.join(TESTDATA, sub, d, 'model.onnx');
        if (fs.existsSync(m)) models.push(m);
      }
    }
    models.sort();
    let k = 0;
    for (const m of models) {
      if (k++ % every !== 0) continue;
      const dir = path.join(path.dirname(m), 'test_data_set_0');
      if (!fs.existsSync(dir)) continue;
      await checkModel(path.relative(TESTDATA, path.dirname(m)), m, dir, 'testdata', tmp);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`${totals.models} models checked (${totals.skipped} skipped: ORT cannot run them), ` +
              `${totals.values} values: ${totals.dtypeChecked} dtypes and ${totals.shapeChecked} shapes checked, ` +
              `${totals.untyped} without an inferred type or shape, ${totals.mismatches} mismatches; ` +
              `${totals.testdataFullyTyped} testdata models typed in full`);
  for (const f of failures) console.log(`  ${f}`);
  if (totals.testdataFullyTyped < MIN_TESTDATA_FULLY_TYPED)
    console.log(`FAIL: fewer than ${MIN_TESTDATA_FULLY_TYPED} testdata models typed in full`);
  const ok = totals.mismatches === 0 && totals.fixtureUntyped === 0 && failures.length === 0 &&
             totals.testdataFullyTyped >= MIN_TESTDATA_FULLY_TYPED;
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(`shapes_vs_ort: ${oneLine(err)}`);
  process.exit(1);
});
