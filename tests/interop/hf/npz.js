// Reads a stored (uncompressed) .npz, as np.savez and tests/fixtures/hf/make_checkpoints.py
// write it: {name: {dtype, shape, data}} with data a typed array (float32, int64 as BigInt64).
const fs = require('fs');

function parseNpy(buf) {
  if (buf.readUInt32BE(0) !== 0x934e554d) throw new Error('not an .npy member');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const body = buf.subarray(start + hlen);
  const copy = Buffer.from(body);  // aligned copy
  const ab = copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.length);
  const types = { '<f4': Float32Array, '<i8': BigInt64Array, '<f8': Float64Array, '<i4': Int32Array };
  if (!types[descr]) throw new Error(`npy dtype ${descr} not handled`);
  return { dtype: descr, shape, data: new types[descr](ab) };
}

function readNpz(file) {
  const buf = fs.readFileSync(file);
  const out = {};
  let p = 0;
  while (p + 30 <= buf.length && buf.readUInt32LE(p) === 0x04034b50) {
    const method = buf.readUInt16LE(p + 8);
    const size = buf.readUInt32LE(p + 18);
    const n = buf.readUInt16LE(p + 26), e = buf.readUInt16LE(p + 28);
    const name = buf.toString('utf8', p + 30, p + 30 + n);
    if (method !== 0) throw new Error(`${file}: ${name} is compressed`);
    const data = buf.subarray(p + 30 + n + e, p + 30 + n + e + size);
    out[name.replace(/\.npy$/, '')] = parseNpy(data);
    p += 30 + n + e + size;
  }
  return out;
}

module.exports = { readNpz };
