// Reads an ONNX model's initializers and nodes straight from the file (a protobuf walk, no
// ONNX library): what the prune checks compare between a model and its pruned form.
'use strict';
const fs = require('fs');
const { decodeTensorProto } = require('./tensor_proto.js');

// Protobuf walking: yields [field, wire, value] of one message (value: Buffer for length-
// delimited fields, Number/BigInt for varints).
function* fields(buf) {
  let i = 0;
  const varint = () => {
    let r = 0n, s = 0n;
    for (;;) {
      const b = buf[i++];
      r |= BigInt(b & 0x7f) << s;
      if (!(b & 0x80)) return r;
      s += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const f = key >> 3, w = key & 7;
    if (w === 0) yield [f, w, varint()];
    else if (w === 2) {
      const n = Number(varint());
      yield [f, w, buf.subarray(i, i + n)];
      i += n;
    } else if (w === 1) { i += 8; yield [f, w, null]; }
    else if (w === 5) { i += 4; yield [f, w, null]; }
    else throw new Error(`wire type ${w}`);
  }
}

function readModel(file) {
  const model = fs.readFileSync(file);
  const inits = new Map(), nodes = [];
  for (const [f, , v] of fields(model)) {
    if (f !== 7) continue;  // ModelProto.graph
    for (const [gf, , gv] of fields(v)) {
      if (gf === 5) { const t = decodeTensorProto(gv); inits.set(t.name, t); }
      if (gf === 1) {  // NodeProto
        const n = { inputs: [], op: '', attrs: {} };
        for (const [nf, , nv] of fields(gv)) {
          if (nf === 1) n.inputs.push(nv.toString());
          if (nf === 4) n.op = nv.toString();
          if (nf === 3) n.name = nv.toString();
          if (nf === 5) {
            let an = '', ai = 0n;
            for (const [af, , av] of fields(nv)) { if (af === 1) an = av.toString(); if (af === 3) ai = av; }
            n.attrs[an] = Number(BigInt.asIntN(64, ai));
          }
        }
        nodes.push(n);
      }
    }
  }
  return { inits, nodes };
}

module.exports = { fields, readModel };
