#!/usr/bin/env node
'use strict';

// Usage: gen_quant_models.js OUT_DIR
//
// Writes one small ONNX model per quantization op (and per interesting variant) for the
// slmops-vs-ONNX Runtime interop test (quant_interop.sh):
//   OUT_DIR/<case>/model.onnx
//   OUT_DIR/<case>/test_data_set_0/input_<i>.pb   random but fixed inputs
//   OUT_DIR/<case>/tolerance                      "rtol atol" for float outputs
// Integer outputs are compared bit for bit. int4/uint4 never appear as model inputs or
// outputs (ORT 1.30's Node binding cannot carry them): they live in initializers or between
// a QuantizeLinear and a DequantizeLinear.
//
// ModelProto is written with a small protobuf encoder (field numbers from onnx.proto).

const fs = require('node:fs');
const path = require('node:path');
const { encodeTensorProto } = require('../lib/tensor_proto');

// ---------------------------------------------------------------------------
// protobuf encoding

class W {
  constructor() { this.parts = []; }
  varint(v) {
    let x = BigInt.asUintN(64, BigInt(v));
    const out = [];
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      out.push(b);
    } while (x);
    this.parts.push(Buffer.from(out));
    return this;
  }
  tag(f, wire) { return this.varint(f * 8 + wire); }
  int(f, v) { return this.tag(f, 0).varint(v); }
  bytes(f, buf) {
    this.tag(f, 2).varint(buf.length);
    this.parts.push(Buffer.from(buf));
    return this;
  }
  str(f, s) { return this.bytes(f, Buffer.from(s, 'utf8')); }
  msg(f, w) { return this.bytes(f, w.done()); }
  float(f, v) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.tag(f, 5);
    this.parts.push(b);
    return this;
  }
  done() { return Buffer.concat(this.parts); }
}

const T = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, FLOAT16: 10, UINT4: 21, INT4: 22,
};

// A tensor: { name, type, dims, raw (Buffer) }.
function tensorMsg(t) {
  const w = new W();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.type);
  w.str(8, t.name);
  w.bytes(9, t.raw);
  return w;
}

function valueInfo(name, type, dims) {
  const shape = new W();
  for (const d of dims) shape.msg(1, typeof d === 'string' ? new W().str(2, d) : new W().int(1, d));
  const tt = new W().int(1, type).msg(2, shape);
  return new W().str(1, name).msg(2, new W().msg(1, tt));
}

function attrMsg(name, v) {
  const w = new W().str(1, name);
  if (typeof v === 'number' && Number.isInteger(v) && !(v instanceof Float)) return w.int(3, v).int(20, 2);
  if (v instanceof Float) return w.float(2, v.v).int(20, 1);
  if (typeof v === 'string') return w.str(4, v).int(20, 3);
  if (Array.isArray(v)) {
    for (const x of v) w.int(8, x);
    return w.int(20, 7);
  }
  throw new Error(`attribute ${name}: unsupported value`);
}
class Float { constructor(v) { this.v = v; } }
const f32 = (v) => new Float(v);

// model: { opsets: {domain: version}, nodes: [{op, domain, inputs, outputs, attrs}],
//          inputs: [{name, type, dims, data}], outputs: [{name, type, dims}], inits: [tensor] }
function modelBytes(m) {
  const g = new W();
  m.nodes.forEach((n, i) => {
    const nw = new W();
    for (const x of n.inputs) nw.str(1, x);
    for (const x of n.outputs) nw.str(2, x);
    nw.str(3, `n${i}`).str(4, n.op);
    for (const [k, v] of Object.entries(n.attrs || {})) nw.msg(5, attrMsg(k, v));
    if (n.domain) nw.str(7, n.domain);
    g.msg(1, nw);
  });
  g.str(2, 'g');
  for (const t of m.inits || []) g.msg(5, tensorMsg(t));
  for (const x of m.inputs) g.msg(11, valueInfo(x.name, x.type, x.dims));
  for (const x of m.outputs) g.msg(12, valueInfo(x.name, x.type, x.dims));
  const mw = new W().int(1, m.ir || 10).str(2, 'slmops-quant-interop');
  mw.msg(7, g);
  for (const [domain, version] of Object.entries(m.opsets)) {
    const o = new W();
    if (domain) o.str(1, domain);
    o.int(2, version);
    mw.msg(8, o);
  }
  return mw.done();
}

// ---------------------------------------------------------------------------
// deterministic data

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

const count = (dims) => dims.reduce((a, b) => a * b, 1);

function floats(r, n, lo = -1, hi = 1) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; ++i) a[i] = lo + (hi - lo) * r();
  return a;
}
function ints(r, n, lo, hi, Arr) {
  const a = new Arr(n);
  for (let i = 0; i < n; ++i) a[i] = lo + Math.floor(r() * (hi - lo + 1));
  return a;
}
function rawOf(arr) { return Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength); }
function toHalf(arr) {
  // float32 -> float16 bits, round to nearest even.
  const out = new Uint16Array(arr.length);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < arr.length; ++i) {
    f[0] = arr[i];
    const x = u[0], sign = (x >>> 16) & 0x8000, e = (x >>> 23) & 0xff, m = x & 0x7fffff;
    let h;
    if (e === 255) h = sign | 0x7c00 | (m ? 0x200 : 0);
    else {
      const ee = e - 127 + 15;
      if (ee >= 31) h = sign | 0x7c00;
      else if (ee <= 0) {
        if (ee < -10) h = sign;
        else {
          const mm = m | 0x800000, shift = 14 - ee;
          let v = mm >>> shift;
          const rem = mm & ((1 << shift) - 1), half = 1 << (shift - 1);
          if (rem > half || (rem === half && (v & 1))) v++;
          h = sign | v;
        }
      } else {
        let v = (ee << 10) | (m >>> 13);
        const rem = m & 0x1fff;
        if (rem > 0x1000 || (rem === 0x1000 && (v & 1))) v++;
        h = sign | v;
      }
    }
    out[i] = h;
  }
  return out;
}
// Packs 4-bit values (signed or not), low nibble first.
function pack4(vals) {
  const out = Buffer.alloc((vals.length + 1) >> 1);
  vals.forEach((v, i) => { out[i >> 1] |= (v & 0xf) << ((i & 1) * 4); });
  return out;
}

const init = (name, type, dims, arr) => ({ name, type, dims, raw: Buffer.isBuffer(arr) ? arr : rawOf(arr) });
const ARR = { [T.FLOAT]: Float32Array, [T.UINT8]: Uint8Array, [T.INT8]: Int8Array, [T.UINT16]: Uint16Array,
  [T.INT16]: Int16Array, [T.INT32]: Int32Array, [T.FLOAT16]: Uint16Array };

// ---------------------------------------------------------------------------
// cases

const cases = [];
function add(name, m, tol = [1e-4, 1e-6]) { cases.push({ name, m, tol }); }

// Inputs that hit exact ties (x / scale = k + 0.5) and saturation for a power-of-two scale.
function tieFloats(r, n, scale, span) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; ++i) {
    const k = Math.floor(r() * span * 2) - span;
    a[i] = i % 3 === 0 ? (k + 0.5) * scale : (i % 3 === 1 ? k * scale * 1.37 : (r() - 0.5) * span * 4 * scale);
  }
  return a;
}

function qdqCases() {
  const r = rng(1);
  // QuantizeLinear, per tensor, uint8 (opset 10 and 13) and int8.
  for (const [op, type, zp] of [[10, T.UINT8, 128], [13, T.INT8, -3], [13, T.UINT8, 0]]) {
    const dims = [3, 4, 5];
    add(`quantize_${type === T.UINT8 ? 'u8' : 's8'}_opset${op}_zp${zp}`, {
      opsets: { '': op },
      nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['y'] }],
      inputs: [{ name: 'x', type: T.FLOAT, dims, data: tieFloats(r, count(dims), 0.5, 200) }],
      inits: [init('s', T.FLOAT, [], new Float32Array([0.5])), init('z', type, [], new ARR[type]([zp]))],
      outputs: [{ name: 'y', type, dims }],
    });
  }
  // Per axis (axis 1 and -1), non power of two scales.
  for (const [axis, type] of [[1, T.INT8], [-1, T.UINT8]]) {
    const dims = [2, 6, 7];
    const ch = axis === 1 ? 6 : 7;
    add(`quantize_axis${axis}_${type === T.UINT8 ? 'u8' : 's8'}`, {
      opsets: { '': 13 },
      nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['y'], attrs: { axis } }],
      inputs: [{ name: 'x', type: T.FLOAT, dims, data: floats(r, count(dims), -20, 20) }],
      inits: [init('s', T.FLOAT, [ch], floats(r, ch, 0.03, 0.2)),
        init('z', type, [ch], ints(r, ch, type === T.UINT8 ? 100 : -10, type === T.UINT8 ? 150 : 10, ARR[type]))],
      outputs: [{ name: 'y', type, dims }],
    });
  }
  // 16-bit (opset 21), per tensor and per axis; no zero point -> output_dtype.
  for (const type of [T.INT16, T.UINT16]) {
    const dims = [4, 33];
    add(`quantize_${type === T.INT16 ? 's16' : 'u16'}_axis0`, {
      opsets: { '': 21 },
      nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['y'], attrs: { axis: 0 } }],
      inputs: [{ name: 'x', type: T.FLOAT, dims, data: floats(r, count(dims), -3000, 3000) }],
      inits: [init('s', T.FLOAT, [4], new Float32Array([0.03125, 0.05, 0.1, 0.0625])),
        init('z', type, [4], new ARR[type](type === T.INT16 ? [0, -100, 300, 7] : [32768, 30000, 0, 65000]))],
      outputs: [{ name: 'y', type, dims }],
    });
  }
  add('quantize_output_dtype_int8', {
    opsets: { '': 21 },
    nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's'], outputs: ['y'], attrs: { output_dtype: T.INT8 } }],
    inputs: [{ name: 'x', type: T.FLOAT, dims: [50], data: tieFloats(r, 50, 0.25, 150) }],
    inits: [init('s', T.FLOAT, [], new Float32Array([0.25]))],
    outputs: [{ name: 'y', type: T.INT8, dims: [50] }],
  });
  // Blocked int8 quantize (opset 21).
  {
    const dims = [5, 40];
    add('quantize_blocked_s8', {
      opsets: { '': 21 },
      nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['y'], attrs: { axis: 1, block_size: 16 } }],
      inputs: [{ name: 'x', type: T.FLOAT, dims, data: floats(r, count(dims), -5, 5) }],
      inits: [init('s', T.FLOAT, [5, 3], floats(r, 15, 0.02, 0.05)), init('z', T.INT8, [5, 3], ints(r, 15, -5, 5, Int8Array))],
      outputs: [{ name: 'y', type: T.INT8, dims }],
    });
  }
  // int4 / uint4 round trip: Q then DQ (the 4-bit tensor stays inside the model).
  for (const [type, lo, hi] of [[T.INT4, -8, 7], [T.UINT4, 0, 15]]) {
    const dims = [3, 8];
    const zps = ints(r, 3, lo, hi, Int8Array);
    add(`qdq_${type === T.INT4 ? 'int4' : 'uint4'}_axis0`, {
      opsets: { '': 21 },
      nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['q'], attrs: { axis: 0 } },
        { op: 'DequantizeLinear', inputs: ['q', 's', 'z'], outputs: ['y'], attrs: { axis: 0 } }],
      inputs: [{ name: 'x', type: T.FLOAT, dims, data: tieFloats(r, count(dims), 0.5, 12) }],
      inits: [init('s', T.FLOAT, [3], new Float32Array([0.5, 0.25, 1])), init('z', type, [3], pack4(Array.from(zps)))],
      outputs: [{ name: 'y', type: T.FLOAT, dims }],
    }, [0, 0]);
  }
  // Blocked int4 / uint4 weights dequantized and multiplied (the opset-21 MatMulNBits alternative).
  // The dequantized weights are a graph output too: otherwise ORT's level-2 optimizer fuses
  // DQ + MatMul into MatMulNBits with accuracy level 4 by default
  // (session.qdq_matmulnbits_accuracy_level), quantizing A to int8 and changing the result by
  // ~1%; slmops computes the model as written.
  for (const [type, lo, hi, withZp] of [[T.INT4, -8, 7, false], [T.UINT4, 0, 15, true]]) {
    const K = 64, N = 12, bs = 32;
    const q = ints(r, K * N, lo, hi, Int8Array);
    const inits = [init('w', type, [K, N], pack4(Array.from(q))), init('s', T.FLOAT, [K / bs, N], floats(r, (K / bs) * N, 0.01, 0.1))];
    const dq = ['w', 's'];
    if (withZp) {
      inits.push(init('z', type, [K / bs, N], pack4(Array.from(ints(r, (K / bs) * N, lo, hi, Int8Array)))));
      dq.push('z');
    }
    add(`dq_blocked_${type === T.INT4 ? 'int4' : 'uint4'}_matmul`, {
      opsets: { '': 21 },
      nodes: [{ op: 'DequantizeLinear', inputs: dq, outputs: ['wf'], attrs: { axis: 0, block_size: bs } },
        { op: 'MatMul', inputs: ['a', 'wf'], outputs: ['y'] }],
      inputs: [{ name: 'a', type: T.FLOAT, dims: [3, K], data: floats(r, 3 * K) }],
      inits,
      outputs: [{ name: 'y', type: T.FLOAT, dims: [3, N] }, { name: 'wf', type: T.FLOAT, dims: [K, N] }],
    }, [1e-4, 1e-5]);
  }
  // DequantizeLinear: uint8 per tensor (opset 10), int8 per axis, int32, 16-bit, fp16 scale.
  const dqs = [
    ['u8_opset10', 10, T.UINT8, [4, 5], 0, [0.1], [128]],
    ['s8_axis1', 13, T.INT8, [2, 3, 4], 1, [0.5, 0.03, 7], [-2, 0, 5]],
    ['s32', 13, T.INT32, [10], 0, [0.001], null],
    ['s16_axis0', 21, T.INT16, [3, 9], 0, [0.25, 0.5, 1e-3], [1000, -5, 0]],
    ['u16', 21, T.UINT16, [17], 0, [0.01], [40000]],
  ];
  for (const [nm, op, type, dims, axis, sc, zp] of dqs) {
    const lohi = { [T.UINT8]: [0, 255], [T.INT8]: [-128, 127], [T.INT32]: [-100000, 100000],
      [T.INT16]: [-32768, 32767], [T.UINT16]: [0, 65535] }[type];
    const node = { op: 'DequantizeLinear', inputs: ['x', 's'], outputs: ['y'] };
    const inits = [init('s', T.FLOAT, sc.length > 1 ? [sc.length] : [], new Float32Array(sc))];
    if (zp) {
      inits.push(init('z', type, zp.length > 1 ? [zp.length] : [], new ARR[type](zp)));
      node.inputs.push('z');
    }
    if (sc.length > 1) node.attrs = { axis };
    add(`dequantize_${nm}`, {
      opsets: { '': op }, nodes: [node], inits,
      inputs: [{ name: 'x', type, dims, data: ints(r, count(dims), lohi[0], lohi[1], ARR[type]) }],
      outputs: [{ name: 'y', type: T.FLOAT, dims }],
    }, [0, 0]);
  }
  add('dequantize_fp16_scale', {
    opsets: { '': 19 },
    nodes: [{ op: 'DequantizeLinear', inputs: ['x', 's', 'z'], outputs: ['y'] }],
    inputs: [{ name: 'x', type: T.INT8, dims: [20], data: ints(r, 20, -128, 127, Int8Array) }],
    inits: [init('s', T.FLOAT16, [], toHalf(new Float32Array([0.0371]))), init('z', T.INT8, [], new Int8Array([3]))],
    outputs: [{ name: 'y', type: T.FLOAT16, dims: [20] }],
  }, [0, 0]);
  add('quantize_fp16_input', {
    opsets: { '': 19 },
    nodes: [{ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['y'] }],
    inputs: [{ name: 'x', type: T.FLOAT16, dims: [40], data: toHalf(tieFloats(r, 40, 0.125, 100)) }],
    inits: [init('s', T.FLOAT16, [], toHalf(new Float32Array([0.125]))), init('z', T.UINT8, [], new Uint8Array([120]))],
    outputs: [{ name: 'y', type: T.UINT8, dims: [40] }],
  });
  // DynamicQuantizeLinear: all positive, all negative, mixed.
  for (const [nm, lo, hi] of [['mixed', -3, 5], ['positive', 0.5, 9], ['negative', -7, -0.1]]) {
    const dims = [3, 11];
    add(`dynamicquantizelinear_${nm}`, {
      opsets: { '': 11 },
      nodes: [{ op: 'DynamicQuantizeLinear', inputs: ['x'], outputs: ['y', 'ys', 'yz'] }],
      inputs: [{ name: 'x', type: T.FLOAT, dims, data: floats(r, count(dims), lo, hi) }],
      outputs: [{ name: 'y', type: T.UINT8, dims }, { name: 'ys', type: T.FLOAT, dims: [] },
        { name: 'yz', type: T.UINT8, dims: [] }],
    }, [0, 0]);
  }
}

function integerMatmulCases() {
  const r = rng(2);
  const range = (t) => (t === T.UINT8 ? [0, 255] : [-128, 127]);
  // MatMulInteger: types, zero points per tensor / per column, batching.
  const mm = [
    ['u8u8', T.UINT8, T.UINT8, [7, 33], [33, 9], 'scalar'],
    ['u8s8', T.UINT8, T.INT8, [5, 64], [64, 17], 'column'],
    ['s8s8', T.INT8, T.INT8, [4, 40], [40, 6], 'scalar'],
    ['s8u8', T.INT8, T.UINT8, [3, 20], [20, 5], 'scalar'],
    ['u8s8_batched_a', T.UINT8, T.INT8, [2, 3, 31], [31, 18], 'none'],
    ['u8u8_batched_b', T.UINT8, T.UINT8, [3, 12], [2, 12, 7], 'scalar'],
    ['u8s8_extreme', T.UINT8, T.INT8, [4, 300], [300, 20], 'extreme'],
    // Batched A with zero points: one product over all rows; N > 64 reaches the 4-panel tile.
    ['u8u8_batched_a_zp', T.UINT8, T.UINT8, [3, 4, 70], [70, 66], 'column'],
  ];
  for (const [nm, ta, tb, da, db, zpm] of mm) {
    const N = db[db.length - 1], M = da[da.length - 2];
    let A = ints(r, count(da), ...range(ta), ARR[ta]);
    let B = ints(r, count(db), ...range(tb), ARR[tb]);
    if (zpm === 'extreme') {
      A = new Uint8Array(count(da)).fill(255);
      B = new Int8Array(count(db)).fill(-128);
      for (let i = 0; i < B.length; i += 3) B[i] = 127;
    }
    const node = { op: 'MatMulInteger', inputs: ['a', 'b'], outputs: ['y'] };
    const inits = [init('b', tb, db, B)];
    if (zpm === 'scalar' || zpm === 'column') {
      inits.push(init('za', ta, [], ints(r, 1, ...range(ta), ARR[ta])));
      inits.push(init('zb', tb, zpm === 'column' ? [N] : [], ints(r, zpm === 'column' ? N : 1, ...range(tb), ARR[tb])));
      node.inputs.push('za', 'zb');
    }
    const od = [...(da.length > db.length ? da.slice(0, -2) : db.slice(0, -2)), M, N];
    add(`matmulinteger_${nm}`, {
      opsets: { '': 13 }, nodes: [node], inits,
      inputs: [{ name: 'a', type: ta, dims: da, data: A }],
      outputs: [{ name: 'y', type: T.INT32, dims: od }],
    }, [0, 0]);
  }
  // QLinearMatMul.
  const ql = [
    ['u8u8', T.UINT8, T.UINT8, T.UINT8, [6, 40], [40, 10], false],
    ['u8s8_percol', T.UINT8, T.INT8, T.UINT8, [5, 64], [64, 12], true],
    ['s8s8', T.INT8, T.INT8, T.INT8, [2, 3, 50], [50, 7], false],
  ];
  for (const [nm, ta, tb, ty, da, db, percol] of ql) {
    const N = db[db.length - 1], M = da[da.length - 2];
    const inits = [
      init('as', T.FLOAT, [], new Float32Array([0.023])),
      init('az', ta, [], ints(r, 1, ...range(ta), ARR[ta])),
      init('b', tb, db, ints(r, count(db), ...range(tb), ARR[tb])),
      init('bs', T.FLOAT, percol ? [N] : [], floats(r, percol ? N : 1, 0.005, 0.02)),
      init('bz', tb, percol ? [N] : [], percol ? new Int8Array(N) : ints(r, 1, ...range(tb), ARR[tb])),
      init('ys', T.FLOAT, [], new Float32Array([0.37])),
      init('yz', ty, [], ints(r, 1, ty === T.UINT8 ? 100 : -10, ty === T.UINT8 ? 140 : 10, ARR[ty])),
    ];
    add(`qlinearmatmul_${nm}`, {
      opsets: { '': 13 },
      nodes: [{ op: 'QLinearMatMul', inputs: ['a', 'as', 'az', 'b', 'bs', 'bz', 'ys', 'yz'], outputs: ['y'] }],
      inits,
      inputs: [{ name: 'a', type: ta, dims: da, data: ints(r, count(da), ...range(ta), ARR[ta]) }],
      outputs: [{ name: 'y', type: ty, dims: [...da.slice(0, -2), M, N] }],
    }, [0, 0]);
  }
}

function convCases() {
  const r = rng(3);
  const range = (t) => (t === T.UINT8 ? [0, 255] : [-128, 127]);
  const outDim = (i, k, s, d, p0, p1) => Math.floor((i + p0 + p1 - ((k - 1) * d + 1)) / s) + 1;
  const convs = [
    // name, X type, W type, X dims, W dims, attrs
    ['2d_pads_strides', T.UINT8, T.UINT8, [1, 3, 9, 8], [4, 3, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 1] }],
    ['2d_dilation_group', T.UINT8, T.UINT8, [2, 4, 7, 7], [6, 2, 3, 2], { dilations: [2, 1], group: 2, pads: [0, 1, 2, 0] }],
    ['1d', T.UINT8, T.UINT8, [1, 2, 15], [3, 2, 4], { strides: [3] }],
    ['2d_u8s8', T.UINT8, T.INT8, [1, 2, 6, 6], [3, 2, 3, 3], { pads: [1, 1, 1, 1] }],
    ['2d_same_upper', T.UINT8, T.UINT8, [1, 2, 7, 6], [2, 2, 3, 3], { auto_pad: 'SAME_UPPER', strides: [2, 2] }],
  ];
  const outDims = (xd, wd, a) => {
    const rk = xd.length - 2;
    const s = a.strides || Array(rk).fill(1), d = a.dilations || Array(rk).fill(1), p = a.pads || Array(2 * rk).fill(0);
    const od = [xd[0], wd[0]];
    for (let i = 0; i < rk; ++i) {
      if (a.auto_pad === 'SAME_UPPER') od.push(Math.ceil(xd[2 + i] / s[i]));
      else od.push(outDim(xd[2 + i], wd[2 + i], s[i], d[i], p[i], p[i + rk]));
    }
    return od;
  };
  for (const [nm, tx, tw, xd, wd, attrs] of convs) {
    add(`convinteger_${nm}`, {
      opsets: { '': 13 },
      nodes: [{ op: 'ConvInteger', inputs: ['x', 'w', 'xz', 'wz'], outputs: ['y'], attrs }],
      inits: [init('w', tw, wd, ints(r, count(wd), ...range(tw), ARR[tw])),
        init('xz', tx, [], ints(r, 1, ...range(tx), ARR[tx])), init('wz', tw, [], ints(r, 1, ...range(tw), ARR[tw]))],
      inputs: [{ name: 'x', type: tx, dims: xd, data: ints(r, count(xd), ...range(tx), ARR[tx]) }],
      outputs: [{ name: 'y', type: T.INT32, dims: outDims(xd, wd, attrs) }],
    }, [0, 0]);
  }
  const qconvs = [
    ['u8s8_perchannel_bias', T.UINT8, T.INT8, T.UINT8, [1, 3, 8, 8], [5, 3, 3, 3], { pads: [1, 1, 1, 1] }, true, true],
    ['u8u8_pertensor', T.UINT8, T.UINT8, T.UINT8, [2, 2, 6, 5], [4, 2, 2, 2], { strides: [2, 1] }, false, false],
    ['s8s8_depthwise', T.INT8, T.INT8, T.INT8, [1, 4, 7, 7], [4, 1, 3, 3], { group: 4, pads: [1, 1, 1, 1] }, true, true],
    ['u8s8_1d', T.UINT8, T.INT8, T.UINT8, [1, 3, 20], [2, 3, 5], { dilations: [2] }, false, true],
  ];
  for (const [nm, tx, tw, ty, xd, wd, attrs, perch, bias] of qconvs) {
    const M = wd[0];
    const inits = [
      init('xs', T.FLOAT, [], new Float32Array([0.02])),
      init('xz', tx, [], ints(r, 1, ...range(tx), ARR[tx])),
      init('w', tw, wd, ints(r, count(wd), ...range(tw), ARR[tw])),
      init('ws', T.FLOAT, perch ? [M] : [], floats(r, perch ? M : 1, 0.002, 0.01)),
      init('wz', tw, perch ? [M] : [], perch ? new ARR[tw](M) : ints(r, 1, ...range(tw), ARR[tw])),
      init('ys', T.FLOAT, [], new Float32Array([0.05])),
      init('yz', ty, [], ints(r, 1, ty === T.UINT8 ? 110 : -5, ty === T.UINT8 ? 140 : 5, ARR[ty])),
    ];
    const ins = ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz'];
    if (bias) {
      inits.push(init('b', T.INT32, [M], ints(r, M, -2000, 2000, Int32Array)));
      ins.push('b');
    }
    add(`qlinearconv_${nm}`, {
      opsets: { '': 13 },
      nodes: [{ op: 'QLinearConv', inputs: ins, outputs: ['y'], attrs }],
      inits,
      inputs: [{ name: 'x', type: tx, dims: xd, data: ints(r, count(xd), ...range(tx), ARR[tx]) }],
      outputs: [{ name: 'y', type: ty, dims: outDims(xd, wd, attrs) }],
    }, [0, 0]);
  }
}

function nbitsCases() {
  const r = rng(4);
  // name, bits, block, K, N, A dims (last K), zero points ('none' | 'packed' | 'float'), bias, accuracy, fp16
  const nb = [];
  for (const bs of [16, 32, 64, 128, 256])
    for (const acc of [0, 4]) nb.push([`b4_bs${bs}_acc${acc}`, 4, bs, 256, 24, [1, 256], bs === 64 ? 'none' : 'packed', bs === 32, acc, false]);
  nb.push(['b4_bs32_sym_m5', 4, 32, 160, 40, [1, 5, 160], 'none', true, 0, false]);
  nb.push(['b4_bs32_sym_m5_acc4', 4, 32, 160, 40, [1, 5, 160], 'none', true, 4, false]);
  nb.push(['b4_bs128_zp_m7_acc4', 4, 128, 384, 33, [7, 384], 'packed', false, 4, false]);
  nb.push(['b4_bs32_k_tail', 4, 32, 100, 16, [2, 100], 'packed', false, 0, false]);
  nb.push(['b4_bs32_k_tail_acc4', 4, 32, 100, 16, [1, 100], 'packed', false, 4, false]);
  nb.push(['b4_bs64_floatzp', 4, 64, 256, 20, [3, 256], 'float', false, 0, false]);
  nb.push(['b4_bs32_floatzp_acc4', 4, 32, 128, 20, [1, 128], 'float', true, 4, false]);
  nb.push(['b4_bs32_m80', 4, 32, 256, 48, [80, 256], 'packed', true, 0, false]);
  nb.push(['b8_bs32', 8, 32, 128, 24, [1, 128], 'packed', false, 0, false]);
  nb.push(['b8_bs32_acc4', 8, 32, 128, 24, [2, 128], 'packed', false, 4, false]);
  nb.push(['b8_bs128_sym_acc4', 8, 128, 256, 24, [1, 256], 'none', true, 4, false]);
  nb.push(['b8_bs16_acc0', 8, 16, 64, 10, [3, 64], 'none', false, 0, false]);
  nb.push(['b4_bs32_fp16', 4, 32, 128, 16, [2, 128], 'packed', true, 0, true]);
  nb.push(['b2_bs32', 2, 32, 128, 16, [1, 128], 'packed', false, 0, false]);
  for (const [nm, bits, bs, K, N, ad, zpk, bias, acc, fp16] of nb) {
    const kb = Math.ceil(K / bs), blob = (bs * bits) / 8;
    const B = ints(r, N * kb * blob, 0, 255, Uint8Array);
    // Zero the padding of the last block (as the quantizer writes it).
    const ft = fp16 ? T.FLOAT16 : T.FLOAT;
    const conv = (a) => (fp16 ? toHalf(a) : a);
    const inits = [init('b', T.UINT8, [N, kb, blob], B), init('s', ft, [N * kb], conv(floats(r, N * kb, 0.002, 0.02)))];
    const ins = ['a', 'b', 's'];
    if (zpk === 'packed') {
      inits.push(init('z', T.UINT8, [N * Math.ceil((kb * bits) / 8)], ints(r, N * Math.ceil((kb * bits) / 8), 0, 255, Uint8Array)));
      ins.push('z');
    } else if (zpk === 'float') {
      inits.push(init('z', ft, [N * kb], conv(floats(r, N * kb, 0, (1 << bits) - 1))));
      ins.push('z');
    }
    if (bias) {
      while (ins.length < 5) ins.push('');
      inits.push(init('bias', ft, [N], conv(floats(r, N, -0.5, 0.5))));
      ins.push('bias');
    }
    const od = [...ad.slice(0, -1), N];
    add(`matmulnbits_${nm}`, {
      opsets: { '': 21, 'com.microsoft': 1 },
      nodes: [{ op: 'MatMulNBits', domain: 'com.microsoft', inputs: ins, outputs: ['y'],
        attrs: { K, N, bits, block_size: bs, accuracy_level: acc } }],
      inits,
      inputs: [{ name: 'a', type: ft, dims: ad, data: conv(floats(r, count(ad), -2, 2)) }],
      outputs: [{ name: 'y', type: ft, dims: od }],
    }, fp16 ? [2e-3, 2e-3] : [1e-4, 2e-5]);
  }
}

function contribCases() {
  const r = rng(5);
  const ms = 'com.microsoft';
  // DynamicQuantizeMatMul: int8 / uint8 B, per tensor / per column scale, zero points, bias.
  const dq = [
    ['s8_pertensor', T.INT8, [4, 64], [64, 16], false, false, true],
    ['u8_zp_percol', T.UINT8, [2, 3, 50], [50, 12], true, true, false],
    ['s8_percol_bias', T.INT8, [1, 100], [100, 30], true, false, true],
  ];
  for (const [nm, tb, da, db, percol, zp, bias] of dq) {
    const N = db[1];
    const inits = [init('b', tb, db, ints(r, count(db), tb === T.UINT8 ? 0 : -128, tb === T.UINT8 ? 255 : 127, ARR[tb])),
      init('bs', T.FLOAT, percol ? [N] : [], floats(r, percol ? N : 1, 0.001, 0.01))];
    const ins = ['a', 'b', 'bs'];
    if (zp) {
      inits.push(init('bz', tb, percol ? [N] : [], ints(r, percol ? N : 1, 100, 150, ARR[tb])));
      ins.push('bz');
    }
    if (bias) {
      while (ins.length < 4) ins.push('');
      inits.push(init('bias', T.FLOAT, [N], floats(r, N)));
      ins.push('bias');
    }
    add(`dynamicquantizematmul_${nm}`, {
      opsets: { '': 17, [ms]: 1 },
      nodes: [{ op: 'DynamicQuantizeMatMul', domain: ms, inputs: ins, outputs: ['y'] }],
      inits,
      inputs: [{ name: 'a', type: T.FLOAT, dims: da, data: floats(r, count(da), -3, 2) }],
      outputs: [{ name: 'y', type: T.FLOAT, dims: [...da.slice(0, -1), N] }],
    }, [1e-4, 1e-5]);
  }
  // Activations.
  const xd = [2, 3, 16];
  add('gelu', {
    opsets: { '': 17, [ms]: 1 },
    nodes: [{ op: 'Gelu', domain: ms, inputs: ['x'], outputs: ['y'] }],
    inits: [], inputs: [{ name: 'x', type: T.FLOAT, dims: xd, data: floats(r, count(xd), -6, 6) }],
    outputs: [{ name: 'y', type: T.FLOAT, dims: xd }],
  }, [1e-4, 1e-6]);
  add('fastgelu_bias', {
    opsets: { '': 17, [ms]: 1 },
    nodes: [{ op: 'FastGelu', domain: ms, inputs: ['x', 'b'], outputs: ['y'] }],
    inits: [init('b', T.FLOAT, [16], floats(r, 16))],
    inputs: [{ name: 'x', type: T.FLOAT, dims: xd, data: floats(r, count(xd), -6, 6) }],
    outputs: [{ name: 'y', type: T.FLOAT, dims: xd }],
  }, [1e-4, 1e-6]);
  add('biasgelu', {
    opsets: { '': 17, [ms]: 1 },
    nodes: [{ op: 'BiasGelu', domain: ms, inputs: ['x', 'b'], outputs: ['y'] }],
    inits: [init('b', T.FLOAT, [16], floats(r, 16))],
    inputs: [{ name: 'x', type: T.FLOAT, dims: xd, data: floats(r, count(xd), -6, 6) }],
    outputs: [{ name: 'y', type: T.FLOAT, dims: xd }],
  }, [1e-4, 1e-6]);
  // Normalizations.
  const H = 32, nd = [2, 5, H];
  add('skiplayernorm', {
    opsets: { '': 17, [ms]: 1 },
    nodes: [{ op: 'SkipLayerNormalization', domain: ms, inputs: ['x', 'skip', 'g', 'be', 'bi'],
      outputs: ['y', '', '', 'sum'], attrs: { epsilon: f32(1e-5) } }],
    inits: [init('g', T.FLOAT, [H], floats(r, H, 0.5, 1.5)), init('be', T.FLOAT, [H], floats(r, H)),
      init('bi', T.FLOAT, [H], floats(r, H))],
    inputs: [{ name: 'x', type: T.FLOAT, dims: nd, data: floats(r, count(nd), -2, 2) },
      { name: 'skip', type: T.FLOAT, dims: nd, data: floats(r, count(nd), -2, 2) }],
    outputs: [{ name: 'y', type: T.FLOAT, dims: nd }, { name: 'sum', type: T.FLOAT, dims: nd }],
  }, [1e-4, 1e-5]);
  add('skipsimplifiedlayernorm', {
    opsets: { '': 17, [ms]: 1 },
    nodes: [{ op: 'SkipSimplifiedLayerNormalization', domain: ms, inputs: ['x', 'skip', 'g'],
      outputs: ['y', '', '', 'sum'], attrs: { epsilon: f32(1e-6) } }],
    inits: [init('g', T.FLOAT, [H], floats(r, H, 0.5, 1.5))],
    inputs: [{ name: 'x', type: T.FLOAT, dims: nd, data: floats(r, count(nd), -2, 2) },
      { name: 'skip', type: T.FLOAT, dims: nd, data: floats(r, count(nd), -2, 2) }],
    outputs: [{ name: 'y', type: T.FLOAT, dims: nd }, { name: 'sum', type: T.FLOAT, dims: nd }],
  }, [1e-4, 1e-5]);
  add('simplifiedlayernorm_onnx_domain', {
    opsets: { '': 17 },
    nodes: [{ op: 'SimplifiedLayerNormalization', inputs: ['x', 'g'], outputs: ['y'], attrs: { axis: -1, epsilon: f32(1e-6) } }],
    inits: [init('g', T.FLOAT, [H], floats(r, H, 0.5, 1.5))],
    inputs: [{ name: 'x', type: T.FLOAT, dims: nd, data: floats(r, count(nd), -2, 2) }],
    outputs: [{ name: 'y', type: T.FLOAT, dims: nd }],
  }, [1e-4, 1e-5]);
}

// ---------------------------------------------------------------------------

function main(argv) {
  if (argv.length !== 1) throw new Error('usage: gen_quant_models.js OUT_DIR');
  const out = argv[0];
  qdqCases();
  integerMatmulCases();
  convCases();
  nbitsCases();
  contribCases();
  for (const c of cases) {
    const dir = path.join(out, c.name);
    const data = path.join(dir, 'test_data_set_0');
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(path.join(dir, 'model.onnx'), modelBytes(c.m));
    c.m.inputs.forEach((x, i) => {
      fs.writeFileSync(path.join(data, `input_${i}.pb`),
        encodeTensorProto({ name: x.name, dataType: x.type, dims: x.dims, data: x.data }));
    });
    fs.writeFileSync(path.join(dir, 'tolerance'), `${c.tol[0]} ${c.tol[1]}\n`);
  }
  process.stdout.write(`${cases.length}\n`);
}

try {
  main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`gen_quant_models: ${err.message}\n`);
  process.exit(1);
}
