'use strict';

// Minimal reader/writer for ONNX TensorProto messages (the *.pb files of
// ONNX's test_data_set_N folders), written against onnx.proto with no
// protobuf dependency.
//
// A decoded tensor is a plain object:
//   { name: string, dataType: number (TensorProto.DataType code),
//     dims: number[], data: TypedArray | string[] }
// where `data` uses the typed array that onnxruntime-node expects for the
// type (see DTYPES below).
//
// Supported TensorProto fields: dims=1, data_type=2, float_data=4,
// int32_data=5, string_data=6, int64_data=7, name=8, raw_data=9,
// double_data=10, uint64_data=11; repeated numeric fields may be packed or
// not. Unknown fields (doc_string, metadata_props, ...) are skipped;
// externally stored and segmented tensors are rejected rather than silently
// read as empty.

const os = require('node:os');

// raw_data is little-endian; we copy it byte for byte into typed arrays.
if (os.endianness() !== 'LE') {
  throw new Error('tensor_proto.js assumes a little-endian host');
}

// Protobuf wire types.
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

// TensorProto field numbers.
const F_DIMS = 1;
const F_DATA_TYPE = 2;
const F_SEGMENT = 3;
const F_FLOAT_DATA = 4;
const F_INT32_DATA = 5;
const F_STRING_DATA = 6;
const F_INT64_DATA = 7;
const F_NAME = 8;
const F_RAW_DATA = 9;
const F_DOUBLE_DATA = 10;
const F_UINT64_DATA = 11;
const F_DATA_LOCATION = 14;

const DATA_LOCATION_EXTERNAL = 1;

// TensorProto.DataType codes this harness supports, i.e. those that
// onnxruntime-node can pass in and out of a CPU session. For each: the ORT
// type name, the typed array ORT uses, and which typed field holds the
// values when raw_data is not used. Not supported: BFLOAT16, FLOAT8*,
// COMPLEX* (no ORT JS type) and INT4/UINT4 (ORT JS has the type names, but
// the 1.30 Node binding rejects such inputs and aborts on such outputs).
const DTYPES = new Map([
  [1, { ort: 'float32', array: Float32Array, field: F_FLOAT_DATA }],
  [2, { ort: 'uint8', array: Uint8Array, field: F_INT32_DATA }],
  [3, { ort: 'int8', array: Int8Array, field: F_INT32_DATA }],
  [4, { ort: 'uint16', array: Uint16Array, field: F_INT32_DATA }],
  [5, { ort: 'int16', array: Int16Array, field: F_INT32_DATA }],
  [6, { ort: 'int32', array: Int32Array, field: F_INT32_DATA }],
  [7, { ort: 'int64', array: BigInt64Array, field: F_INT64_DATA }],
  [8, { ort: 'string', array: null, field: F_STRING_DATA }],
  [9, { ort: 'bool', array: Uint8Array, field: F_INT32_DATA }],
  // float16 values are kept as their IEEE half bit patterns.
  [10, { ort: 'float16', array: Uint16Array, field: F_INT32_DATA }],
  [11, { ort: 'float64', array: Float64Array, field: F_DOUBLE_DATA }],
  [12, { ort: 'uint32', array: Uint32Array, field: F_UINT64_DATA }],
  [13, { ort: 'uint64', array: BigUint64Array, field: F_UINT64_DATA }],
]);

// ORT type name -> TensorProto.DataType code.
const CODE_BY_ORT_TYPE = new Map([...DTYPES].map(([code, t]) => [t.ort, code]));

/** Description of a supported data type code; throws for others. */
function dtypeInfo(code) {
  const info = DTYPES.get(code);
  if (!info) throw new Error(`unsupported tensor data_type ${code}`);
  return info;
}

/** Whether an ORT tensor type name is one of the supported types. */
function isSupportedOrtType(ortType) {
  return CODE_BY_ORT_TYPE.has(ortType);
}

/** TensorProto.DataType code for an ORT tensor type name; throws for others. */
function codeForOrtType(ortType) {
  const code = CODE_BY_ORT_TYPE.get(ortType);
  if (code === undefined) throw new Error(`unsupported ORT tensor type '${ortType}'`);
  return code;
}

/** Number of elements of a tensor with the given dims (1 for a scalar). */
function elementCount(dims) {
  return dims.reduce((n, d) => n * d, 1);
}

// ---------------------------------------------------------------------------
// Decoding

/** Sequential reader over a protobuf-encoded byte range. */
class Reader {
  constructor(buf, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  atEnd() {
    return this.pos >= this.end;
  }

  need(n) {
    if (this.pos + n > this.end) throw new Error('truncated protobuf message');
  }

  /** Unsigned varint as a BigInt (up to 64 bits). */
  varint() {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      this.need(1);
      const byte = this.buf[this.pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return BigInt.asUintN(64, value);
    }
    throw new Error('malformed varint');
  }

  /** A varint that must fit a non-negative JS number (tags, lengths). */
  smallVarint() {
    const v = this.varint();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('varint out of range');
    return Number(v);
  }

  float32() {
    this.need(4);
    const v = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return v;
  }

  float64() {
    this.need(8);
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A length-delimited field's payload, as a Buffer view (no copy). */
  bytes() {
    const len = this.smallVarint();
    this.need(len);
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  /** Skips a field of the given wire type. */
  skip(wire) {
    switch (wire) {
      case WIRE_VARINT: this.varint(); break;
      case WIRE_FIXED64: this.need(8); this.pos += 8; break;
      case WIRE_LEN: this.bytes(); break;
      case WIRE_FIXED32: this.need(4); this.pos += 4; break;
      default: throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

/**
 * Reads one element or a packed run of a repeated scalar field into `out`.
 * Protobuf parsers must accept both encodings whatever the .proto says.
 */
function readRepeated(reader, wire, elemWire, readOne, out, fieldName) {
  if (wire === WIRE_LEN) {
    const payload = reader.bytes();
    const sub = new Reader(payload);
    while (!sub.atEnd()) out.push(readOne(sub));
  } else if (wire === elemWire) {
    out.push(readOne(reader));
  } else {
    throw new Error(`bad wire type ${wire} for ${fieldName}`);
  }
}

function expectWire(wire, expected, fieldName) {
  if (wire !== expected) throw new Error(`bad wire type ${wire} for ${fieldName}`);
}

/**
 * Decodes a serialized TensorProto (Buffer) into a tensor object as
 * described at the top of this file.
 */
function decodeTensorProto(buf) {
  const r = new Reader(buf);
  const dims = [];
  let dataType = 0;
  let name = '';
  let raw = null;
  // Values of the typed *_data fields, keyed by field number.
  const typed = new Map([
    [F_FLOAT_DATA, []], [F_INT32_DATA, []], [F_STRING_DATA, []],
    [F_INT64_DATA, []], [F_DOUBLE_DATA, []], [F_UINT64_DATA, []],
  ]);

  const asInt32 = (rd) => Number(BigInt.asIntN(32, rd.varint()));
  const asInt64 = (rd) => BigInt.asIntN(64, rd.varint());
  const asUint64 = (rd) => rd.varint();

  while (!r.atEnd()) {
    const key = r.smallVarint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    switch (field) {
      case F_DIMS: {
        const raw64 = [];
        readRepeated(r, wire, WIRE_VARINT, asInt64, raw64, 'dims');
        for (const d of raw64) {
          if (d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`invalid dim ${d}`);
          dims.push(Number(d));
        }
        break;
      }
      case F_DATA_TYPE:
        expectWire(wire, WIRE_VARINT, 'data_type');
        dataType = asInt32(r);
        break;
      case F_FLOAT_DATA:
        readRepeated(r, wire, WIRE_FIXED32, (rd) => rd.float32(), typed.get(field), 'float_data');
        break;
      case F_INT32_DATA:
        readRepeated(r, wire, WIRE_VARINT, asInt32, typed.get(field), 'int32_data');
        break;
      case F_STRING_DATA:
        expectWire(wire, WIRE_LEN, 'string_data');
        typed.get(field).push(r.bytes());
        break;
      case F_INT64_DATA:
        readRepeated(r, wire, WIRE_VARINT, asInt64, typed.get(field), 'int64_data');
        break;
      case F_NAME:
        expectWire(wire, WIRE_LEN, 'name');
        name = r.bytes().toString('utf8');
        break;
      case F_RAW_DATA:
        expectWire(wire, WIRE_LEN, 'raw_data');
        raw = r.bytes();
        break;
      case F_DOUBLE_DATA:
        readRepeated(r, wire, WIRE_FIXED64, (rd) => rd.float64(), typed.get(field), 'double_data');
        break;
      case F_UINT64_DATA:
        readRepeated(r, wire, WIRE_VARINT, asUint64, typed.get(field), 'uint64_data');
        break;
      case F_SEGMENT:
        throw new Error('segmented tensors are not supported');
      case F_DATA_LOCATION:
        expectWire(wire, WIRE_VARINT, 'data_location');
        if (asInt32(r) === DATA_LOCATION_EXTERNAL) {
          throw new Error('tensors with external data are not supported');
        }
        break;
      default:
        r.skip(wire);
    }
  }

  const info = dtypeInfo(dataType);
  const count = elementCount(dims);
  const label = name ? `tensor '${name}'` : 'tensor';
  let data;

  if (info.ort === 'string') {
    if (raw !== null) throw new Error(`${label}: string tensor with raw_data`);
    data = typed.get(F_STRING_DATA).map((b) => b.toString('utf8'));
  } else if (raw !== null) {
    const byteLength = count * info.array.BYTES_PER_ELEMENT;
    if (raw.length !== byteLength) {
      throw new Error(`${label}: raw_data has ${raw.length} bytes, expected ${byteLength}`);
    }
    // Copy into a fresh, correctly aligned array.
    data = new info.array(count);
    new Uint8Array(data.buffer).set(raw);
  } else {
    const values = typed.get(info.field);
    // The typed array constructors perform the narrowing the spec asks for
    // (e.g. int32_data -> int8, uint64_data -> uint32).
    data = info.array === BigInt64Array || info.array === BigUint64Array
      ? info.array.from(values)
      : info.array.from(values, Number);
  }

  if (data.length !== count) {
    throw new Error(`${label}: holds ${data.length} values, dims [${dims}] need ${count}`);
  }
  return { name, dataType, dims, data };
}

// ---------------------------------------------------------------------------
// Encoding

/** Accumulates protobuf-encoded chunks. */
class Writer {
  constructor() {
    this.chunks = [];
  }

  varint(value) {
    let v = BigInt.asUintN(64, BigInt(value));
    const bytes = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      bytes.push(byte);
    } while (v !== 0n);
    this.chunks.push(Buffer.from(bytes));
  }

  tag(field, wire) {
    this.varint(field * 8 + wire);
  }

  /** A length-delimited field holding the bytes of any typed array. */
  lenDelimited(field, view) {
    this.tag(field, WIRE_LEN);
    this.varint(view.byteLength);
    this.chunks.push(Buffer.from(view.buffer, view.byteOffset, view.byteLength));
  }

  finish() {
    return Buffer.concat(this.chunks);
  }
}

/**
 * Serializes a tensor object ({name, dataType, dims, data}) as a
 * TensorProto, the way onnx.numpy_helper.from_array does: dims, data_type,
 * name, and raw_data (string_data for strings). Fields are written in
 * field-number order, as protobuf serializers do.
 */
function encodeTensorProto({ name, dataType, dims, data }) {
  const info = dtypeInfo(dataType);
  const count = elementCount(dims);
  const w = new Writer();

  // dims is declared without [packed = true], so write one entry per dim.
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`invalid dim ${d}`);
    w.tag(F_DIMS, WIRE_VARINT);
    w.varint(d);
  }
  w.tag(F_DATA_TYPE, WIRE_VARINT);
  w.varint(dataType);

  if (info.ort === 'string') {
    if (!Array.isArray(data) || data.length !== count) {
      throw new Error(`string tensor '${name}': expected ${count} strings`);
    }
    for (const s of data) w.lenDelimited(F_STRING_DATA, Buffer.from(String(s), 'utf8'));
  }
  if (name) w.lenDelimited(F_NAME, Buffer.from(name, 'utf8'));
  if (info.ort !== 'string') {
    if (!(data instanceof info.array) || data.length !== count) {
      throw new Error(`tensor '${name}': data does not match type ${info.ort} and dims [${dims}]`);
    }
    // Written even when empty, so the tensor's storage is unambiguous.
    w.lenDelimited(F_RAW_DATA, data);
  }
  return w.finish();
}

module.exports = {
  DTYPES,
  dtypeInfo,
  isSupportedOrtType,
  codeForOrtType,
  elementCount,
  decodeTensorProto,
  encodeTensorProto,
};
