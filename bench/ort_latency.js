#!/usr/bin/env node
'use strict';

// ONNX Runtime side of bench/executor_bench.sh. Two commands:
//
//   node bench/ort_latency.js time MODEL --shape NAME=DxDxD... [--shape ...]
//        [--threads N] [--samples K] [--warmup W] [--seed S] [--opt LEVEL]
//     Creates a CPU session (intraOpNumThreads N, interOpNumThreads 1, sequential execution,
//     graphOptimizationLevel LEVEL: 'all' unless --opt or $ORT_GRAPH_OPT says otherwise), feeds random inputs of the given shapes (float inputs
//     uniform in [0,1), integer inputs in [0,100), like `slmops evaluate --random`), runs W
//     untimed warm-up runs, then K timed runs, and prints one JSON line:
//       {"latency_ms":{"p50":..,"p90":..,"p99":..,"mean":..,"batches":K},"cpu_ms":{"p50":..},
//        "timing":"native-sync",..}
//     cpu_ms is the process CPU time (process.cpuUsage: all threads, user + system) of a run:
//     on a busy machine wall time also counts waiting for a core, CPU time does not.
//     Each timed run is one synchronous call of the native binding's InferenceSession.run
//     (dist/binding of onnxruntime-node), timed with process.hrtime. The public
//     `await session.run()` adds a setImmediate turn and a promise (7-40 us on this machine),
//     which would flatter slmops on the small models. If the binding cannot be used, the script
//     falls back to the public API and says so ("timing":"public-await").
//
//   node bench/ort_latency.js reference MODEL OUT_DIR (--npz FILE | --shape NAME=D..)
//        [--threads N] [--seed S] [--rtol R] [--atol A] [--opt LEVEL]
//     Writes a test_data_set folder: OUT_DIR/input_K.pb (the model inputs, by name from the
//     .npz, or random from --shape) and OUT_DIR/output_K.pb (ORT's outputs with the same
//     session options), for `slmops evaluate MODEL --check --data OUT_DIR`. With --npz, an
//     array named like a model output (the PyTorch reference) is compared with ORT's output
//     too; the script exits 3 if they differ beyond |a-b| <= atol + rtol*|b|.
//
// Errors: one line on stderr starting with "ort_latency: ", exit 1.

const fs = require('node:fs');
const path = require('node:path');

const INTEROP = path.resolve(__dirname, '..', 'tests', 'interop');
const ORT_NODE = path.join(INTEROP, 'node_modules', 'onnxruntime-node');
const { encodeTensorProto, codeForOrtType, dtypeInfo } = require(path.join(INTEROP, 'lib', 'tensor_proto.js'));

function die(msg, code = 1) {
  process.stderr.write(`ort_latency: ${msg}\n`);
  process.exit(code);
}

function loadOrt() {
  let ort;
  try {
    ort = require(ORT_NODE);
  } catch (err) {
    die(`cannot load onnxruntime-node from ${ORT_NODE} (${err.message.split('\n')[0]}); ` +
        `run 'ONNXRUNTIME_NODE_INSTALL=skip npm ci' in ${INTEROP}`);
  }
  ort.env.logLevel = 'fatal';
  return ort;
}

// graphOptimizationLevel: 'all' (what users deploy) unless --opt or the ORT_GRAPH_OPT
// environment variable (as tests/interop/lib/ort_runner.js) names another level. The bench
// writes its references for quantized models at 'basic': at 'all' ORT fuses QDQ groups and
// may quantize activations differently, which is not the graph's arithmetic.
const OPT_LEVELS = ['disabled', 'basic', 'extended', 'all'];

function sessionOptions(threads, opt) {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: opt,
    logSeverityLevel: 4,
  };
}

// ---- arguments -------------------------------------------------------------------------

function parseArgs(argv, positionalCount) {
  const a = { pos: [], shapes: [], threads: 1, samples: 50, warmup: 5, seed: 1, rtol: 1e-4, atol: 1e-5, npz: null,
    opt: process.env.ORT_GRAPH_OPT || 'all' };
  const num = (flag, v, int) => {
    const x = Number(v);
    if (v === undefined || !Number.isFinite(x) || (int && (!Number.isInteger(x) || x < 0))) die(`${flag}: bad value '${v}'`);
    return x;
  };
  for (let i = 0; i < argv.length; ++i) {
    const f = argv[i];
    if (f === '--shape') {
      const s = argv[++i] || '';
      const m = /^([^=]+)=(\d+(?:x\d+)*)$/.exec(s);
      if (!m) die(`--shape '${s}': expected NAME=DxDxD (e.g. input_ids=1x64)`);
      a.shapes.push({ name: m[1], dims: m[2].split('x').map(Number) });
    } else if (f === '--threads') a.threads = num(f, argv[++i], true);
    else if (f === '--samples') a.samples = num(f, argv[++i], true);
    else if (f === '--warmup') a.warmup = num(f, argv[++i], true);
    else if (f === '--seed') a.seed = num(f, argv[++i], true);
    else if (f === '--rtol') a.rtol = num(f, argv[++i], false);
    else if (f === '--atol') a.atol = num(f, argv[++i], false);
    else if (f === '--npz') a.npz = argv[++i];
    else if (f === '--opt') a.opt = argv[++i];
    else if (f.startsWith('--')) die(`unknown option ${f}`);
    else a.pos.push(f);
  }
  if (a.pos.length !== positionalCount) die(`expected ${positionalCount} positional argument(s), got ${a.pos.length}`);
  if (a.threads < 1) die('--threads must be at least 1');
  if (!OPT_LEVELS.includes(a.opt)) die(`graph optimization level '${a.opt}' (--opt or ORT_GRAPH_OPT): expected one of ${OPT_LEVELS.join(', ')}`);
  return a;
}

// ---- inputs ----------------------------------------------------------------------------

// mulberry32: a small seeded generator, so reference inputs are reproducible.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ORT_ARRAYS = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
  int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

function randomTensor(ort, type, dims, next) {
  const Arr = ORT_ARRAYS[type];
  if (!Arr) die(`random inputs of type ${type} are not supported`);
  const n = dims.reduce((x, y) => x * y, 1);
  const data = new Arr(n);
  for (let k = 0; k < n; ++k) {
    if (type === 'float32' || type === 'float64') data[k] = next();
    else if (type === 'bool') data[k] = next() < 0.5 ? 0 : 1;
    else if (type === 'int64') data[k] = BigInt(Math.floor(next() * 100));
    else data[k] = Math.floor(next() * 100);
  }
  return new ort.Tensor(type, data, dims);
}

function randomFeeds(ort, session, shapes, seed) {
  const next = rng(seed);
  const feeds = {};
  for (const m of session.inputMetadata) {
    const given = shapes.find((s) => s.name === m.name);
    let dims;
    if (given) dims = given.dims;
    else if (m.shape.every((d) => typeof d === 'number')) dims = m.shape;
    else die(`input '${m.name}' has symbolic dims [${m.shape}]; give its shape with --shape ${m.name}=...`);
    feeds[m.name] = randomTensor(ort, m.type, dims, next);
  }
  for (const s of shapes)
    if (!session.inputNames.includes(s.name)) die(`--shape ${s.name}: the model has no input '${s.name}' (inputs: ${session.inputNames})`);
  return feeds;
}

// ---- .npz reading (np.savez: a zip of stored .npy members) --------------------------------

function readNpz(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    die(`cannot read ${file}: ${err.message}`);
  }
  // End of central directory: the last "PK\5\6" record.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65535); --i)
    if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  if (eocd < 0) die(`${file}: not a zip archive`);
  let count = buf.readUInt16LE(eocd + 10);
  let off = buf.readUInt32LE(eocd + 16);
  if (off === 0xffffffff || count === 0xffff) {
    const loc = eocd - 20;  // zip64 end of central directory locator
    if (loc < 0 || buf.readUInt32LE(loc) !== 0x07064b50) die(`${file}: bad zip64 archive`);
    const z = Number(buf.readBigUInt64LE(loc + 8));
    count = Number(buf.readBigUInt64LE(z + 32));
    off = Number(buf.readBigUInt64LE(z + 48));
  }
  const arrays = {};
  for (let e = 0; e < count; ++e) {
    if (buf.readUInt32LE(off) !== 0x02014b50) die(`${file}: bad central directory`);
    const method = buf.readUInt16LE(off + 10);
    let csize = buf.readUInt32LE(off + 20);
    let usize = buf.readUInt32LE(off + 24);
    const nlen = buf.readUInt16LE(off + 28), xlen = buf.readUInt16LE(off + 30), clen = buf.readUInt16LE(off + 32);
    let local = buf.readUInt32LE(off + 42);
    const name = buf.toString('utf8', off + 46, off + 46 + nlen);
    // zip64 extra field: the 64-bit values of the fields that are 0xffffffff, in order.
    for (let x = off + 46 + nlen; x + 4 <= off + 46 + nlen + xlen;) {
      const id = buf.readUInt16LE(x), sz = buf.readUInt16LE(x + 2);
      if (id === 1) {
        let p = x + 4;
        if (usize === 0xffffffff) { usize = Number(buf.readBigUInt64LE(p)); p += 8; }
        if (csize === 0xffffffff) { csize = Number(buf.readBigUInt64LE(p)); p += 8; }
        if (local === 0xffffffff) { local = Number(buf.readBigUInt64LE(p)); p += 8; }
      }
      x += 4 + sz;
    }
    off += 46 + nlen + xlen + clen;
    if (method !== 0) die(`${file}: member ${name} is compressed (np.savez_compressed is not supported)`);
    if (buf.readUInt32LE(local) !== 0x04034b50) die(`${file}: bad local header for ${name}`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    arrays[name.replace(/\.npy$/, '')] = parseNpy(buf.subarray(start, start + usize), `${file}:${name}`);
  }
  return arrays;
}

const NPY_TYPES = { '<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array], '<i8': ['int64', BigInt64Array],
  '<i4': ['int32', Int32Array], '|u1': ['uint8', Uint8Array], '|i1': ['int8', Int8Array], '|b1': ['bool', Uint8Array] };

function parseNpy(b, what) {
  if (b.toString('latin1', 0, 6) !== '\x93NUMPY') die(`${what}: not a .npy array`);
  const major = b[6];
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = b.toString('latin1', hstart, hstart + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) die(`${what}: cannot parse the .npy header ${header}`);
  if (fortran[1] === 'True') die(`${what}: Fortran-order arrays are not supported`);
  const t = NPY_TYPES[descr[1]];
  if (!t) die(`${what}: dtype ${descr[1]} is not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const n = dims.reduce((x, y) => x * y, 1);
  const bytes = b.subarray(hstart + hlen);
  const copy = new Uint8Array(n * t[1].BYTES_PER_ELEMENT);
  copy.set(bytes.subarray(0, copy.length));
  return { type: t[0], dims, data: new t[1](copy.buffer) };
}

// ---- commands --------------------------------------------------------------------------

// Nearest rank on the sorted sample: the definition slmops evaluate uses (tools/eval_metrics).
function percentile(sorted, p) {
  const k = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, k === 0 ? 0 : k - 1)];
}

async function cmdTime(argv) {
  const a = parseArgs(argv, 1);
  if (a.samples < 1) die('--samples must be at least 1');
  const ort = loadOrt();
  const model = a.pos[0];
  if (!fs.existsSync(model)) die(`model not found: ${model}`);
  const opts = sessionOptions(a.threads, a.opt);
  const session = await ort.InferenceSession.create(model, opts);
  const feeds = randomFeeds(ort, session, a.shapes, a.seed);

  // The native session: same options, same model, called synchronously.
  let run, timing;
  try {
    const { binding, initOrt } = require(path.join(ORT_NODE, 'dist', 'binding.js'));
    initOrt();
    const native = new binding.InferenceSession();
    native.loadModel(model, opts);
    const fetches = {};
    for (const n of session.outputNames) fetches[n] = null;
    native.run(feeds, fetches, {});
    run = () => native.run(feeds, fetches, {});
    timing = 'native-sync';
  } catch (err) {
    run = () => session.run(feeds);
    timing = 'public-await';
  }
  for (let i = 0; i < a.warmup; ++i) await run();
  const ms = [], cpu = [];
  for (let i = 0; i < a.samples; ++i) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await run();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e3);
  }
  const mean = ms.reduce((x, y) => x + y, 0) / ms.length;
  ms.sort((x, y) => x - y);
  cpu.sort((x, y) => x - y);
  const out = {
    model, ort: ort.env.versions.node, timing, threads: a.threads, graph_optimization_level: a.opt,
    shapes: Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.dims])),
    latency_ms: { p50: percentile(ms, 50), p90: percentile(ms, 90), p99: percentile(ms, 99), mean, batches: ms.length },
    cpu_ms: { p50: percentile(cpu, 50) },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function toProto(name, t) {
  const code = codeForOrtType(t.type);
  let data = t.data;
  // tensor_proto's array for this dtype (float16 bit patterns etc.) may differ; copy bytes.
  const Arr = dtypeInfo(code).array;
  if (Arr && !(data instanceof Arr)) {
    const c = new Arr(data.length);
    new Uint8Array(c.buffer).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    data = c;
  }
  return encodeTensorProto({ name, dataType: code, dims: [...t.dims], data });
}

async function cmdReference(argv) {
  const a = parseArgs(argv, 2);
  const ort = loadOrt();
  const [model, outDir] = a.pos;
  if (!fs.existsSync(model)) die(`model not found: ${model}`);
  const session = await ort.InferenceSession.create(model, sessionOptions(a.threads, a.opt));
  let feeds, npz = null;
  if (a.npz) {
    npz = readNpz(a.npz);
    feeds = {};
    for (const name of session.inputNames) {
      if (!npz[name]) die(`${a.npz} has no array '${name}' for model input '${name}' (arrays: ${Object.keys(npz)})`);
      feeds[name] = new ort.Tensor(npz[name].type, npz[name].data, npz[name].dims);
    }
  } else {
    feeds = randomFeeds(ort, session, a.shapes, a.seed);
  }
  const results = await session.run(feeds);
  fs.mkdirSync(outDir, { recursive: true });
  session.inputNames.forEach((n, i) => fs.writeFileSync(path.join(outDir, `input_${i}.pb`), toProto(n, feeds[n])));
  session.outputNames.forEach((n, i) => fs.writeFileSync(path.join(outDir, `output_${i}.pb`), toProto(n, results[n])));
  const summary = { model, graph_optimization_level: a.opt, inputs: Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.dims])) };
  if (npz) {
    // ORT against the PyTorch reference stored next to the inputs.
    summary.vs_npz = {};
    let bad = null;
    for (const n of session.outputNames) {
      const ref = npz[n];
      if (!ref) continue;
      const got = results[n].data;
      if (got.length !== ref.data.length) die(`output ${n}: ORT has ${got.length} elements, ${a.npz} has ${ref.data.length}`);
      let maxAbs = 0, worst = 0;
      for (let k = 0; k < got.length; ++k) {
        const d = Math.abs(got[k] - ref.data[k]);
        maxAbs = Math.max(maxAbs, d);
        worst = Math.max(worst, d - (a.atol + a.rtol * Math.abs(ref.data[k])));
      }
      summary.vs_npz[n] = { max_abs_diff: maxAbs, within_tolerance: worst <= 0 };
      if (worst > 0 && !bad) bad = `output ${n}: ORT differs from ${a.npz} by up to ${maxAbs} (rtol ${a.rtol} atol ${a.atol})`;
    }
    if (bad) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
      die(bad, 3);
    }
  }
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

(async () => {
  const [cmd, ...rest] = process.argv.slice(2);
  try {
    if (cmd === 'time') await cmdTime(rest);
    else if (cmd === 'reference') await cmdReference(rest);
    else die('usage: ort_latency.js time MODEL --shape NAME=D.. [--threads N] [--samples K] [--warmup W] | ' +
             'reference MODEL OUT_DIR (--npz FILE | --shape NAME=D..) [--threads N]');
  } catch (err) {
    die(String(err && err.message ? err.message : err).replace(/\s*\n\s*/g, ' '));
  }
})();
