'use strict';

// Output comparison shared by compare_models.js and compare_batch.js.
// Floating-point elements (float32, float64, float16) agree when
// |a - b| <= atol + rtol*|b| (b is the reference); NaN agrees with NaN and an
// infinity only with the same infinity. All other types must match exactly.

const { DTYPES, dtypeInfo, elementCount } = require('./tensor_proto');

const FLOAT_TYPES = new Set(['float32', 'float64', 'float16']);


/** Decodes an IEEE 754 half-precision bit pattern to a JS number. */
function halfToNumber(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * The elements of a decoded tensor as an indexable list: float16 bit
 * patterns decoded to numbers, everything else as stored.
 */
function elementsOf(tensor) {
  const isHalf = dtypeInfo(tensor.dataType).ort === 'float16';
  return isHalf ? Float32Array.from(tensor.data, halfToNumber) : tensor.data;
}

/** Row-major multi-index of flat element `flat` in a tensor of `dims`. */
function multiIndex(flat, dims) {
  const idx = new Array(dims.length);
  for (let d = dims.length - 1; d >= 0; d--) {
    idx[d] = dims[d] === 0 ? 0 : flat % dims[d];
    flat = Math.floor(flat / dims[d]);
  }
  return idx;
}

/**
 * Whether mismatch `m` is worse than mismatch `than` (or `than` is null):
 * larger |a-b| / tolerance first (Infinity for exact types and NaNs), then
 * larger |a-b|.
 */
function isWorse(m, than) {
  if (than === null || m.ratio > than.ratio) return true;
  return m.ratio === than.ratio && m.diff > than.diff;
}

/**
 * Compares two same-typed, same-shaped outputs element by element.
 * Returns { mismatches, maxAbsDiff, worst } where worst is the worst
 * mismatching element (see isWorse), or null.
 */
function compareValues(a, b, rtol, atol) {
  const isFloat = FLOAT_TYPES.has(dtypeInfo(a.dataType).ort);
  const va = elementsOf(a);
  const vb = elementsOf(b);
  let mismatches = 0;
  let maxAbsDiff = 0;
  let worst = null;

  for (let i = 0; i < va.length; i++) {
    const x = va[i];
    const y = vb[i];
    let equal;
    let diff;
    let ratio;
    if (isFloat) {
      const tol = atol + rtol * Math.abs(y);
      diff = Math.abs(x - y);
      if (Number.isNaN(x) || Number.isNaN(y)) {
        equal = Number.isNaN(x) && Number.isNaN(y);
      } else {
        // x === y covers equal infinities, whose difference is NaN.
        equal = x === y || diff <= tol;
      }
      if (!equal) ratio = tol > 0 && Number.isFinite(diff) ? diff / tol : Infinity;
      if (Number.isFinite(diff)) maxAbsDiff = Math.max(maxAbsDiff, diff);
    } else {
      // Integers (BigInt for 64-bit), bools and strings: exact.
      equal = x === y;
      if (!equal) {
        diff = typeof x === 'string' ? NaN : Math.abs(Number(x) - Number(y));
        ratio = Infinity;
      }
    }
    if (!equal) {
      mismatches++;
      const m = { index: i, a: x, b: y, diff, ratio };
      if (isWorse(m, worst)) worst = m;
    }
  }
  return { mismatches, maxAbsDiff, worst };
}

function typeName(code) {
  return DTYPES.has(code) ? DTYPES.get(code).ort : `type ${code}`;
}

function formatValue(v) {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/**
 * Compares the output lists of the two models. Returns { equal, summary }.
 */
function compareOutputs(outA, outB, rtol, atol) {
  const tolText = `rtol ${rtol}, atol ${atol}`;
  if (outA.length !== outB.length) {
    return { equal: false, summary: `DIFFERENT: ${outA.length} outputs vs ${outB.length}` };
  }
  // Structure first: a name, dtype or shape mismatch makes values moot.
  for (let k = 0; k < outA.length; k++) {
    const [a, b] = [outA[k], outB[k]];
    if (a.name !== b.name) {
      return { equal: false, summary: `DIFFERENT: output ${k} is named '${a.name}' vs '${b.name}'` };
    }
    if (a.dataType !== b.dataType) {
      return {
        equal: false,
        summary: `DIFFERENT: output '${a.name}' dtype ${typeName(a.dataType)} vs ${typeName(b.dataType)}`,
      };
    }
    if (a.dims.join(',') !== b.dims.join(',')) {
      return { equal: false, summary: `DIFFERENT: output '${a.name}' shape [${a.dims}] vs [${b.dims}]` };
    }
  }

  let elements = 0;
  let mismatches = 0;
  let badOutputs = 0;
  let maxAbsDiff = 0;
  let worst = null;
  for (let k = 0; k < outA.length; k++) {
    const r = compareValues(outA[k], outB[k], rtol, atol);
    elements += elementCount(outA[k].dims);
    mismatches += r.mismatches;
    maxAbsDiff = Math.max(maxAbsDiff, r.maxAbsDiff);
    if (r.mismatches > 0) badOutputs++;
    if (r.worst && isWorse(r.worst, worst)) worst = { ...r.worst, output: outA[k] };
  }

  if (mismatches === 0) {
    return {
      equal: true,
      summary: `equal: ${outA.length} outputs, ${elements} elements, max |a-b| ${maxAbsDiff} (${tolText})`,
    };
  }
  const where = `output '${worst.output.name}' [${multiIndex(worst.index, worst.output.dims)}]`;
  const diffText = Number.isNaN(worst.diff) ? '' : ` |a-b| ${worst.diff}`;
  return {
    equal: false,
    summary: `DIFFERENT: ${mismatches} of ${elements} elements in ${badOutputs} of ${outA.length} outputs ` +
      `(${tolText}); worst: ${where} a=${formatValue(worst.a)} b=${formatValue(worst.b)}${diffText}`,
  };
}

module.exports = { compareOutputs, halfToNumber };
