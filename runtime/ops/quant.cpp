// Quantization ops of the ONNX domain: QuantizeLinear / DequantizeLinear (opsets 10-23:
// per tensor, per axis, blocked; int4/uint4/int8/uint8/int16/uint16 and int32 for DQ; float,
// float16 and bfloat16 floats), DynamicQuantizeLinear, MatMulInteger and QLinearMatMul. The
// integer convolutions are in quant_conv.cpp; the com.microsoft ops in contrib.cpp.
//
// Numerics follow ONNX Runtime (the oracle): x / scale in float, saturate, round half to
// even; dequantize as float(int32(x) - zp) * scale; requantize an int32 accumulator as
// float(acc) * (a_scale * b_scale / y_scale), with those float products in that order.
#include <algorithm>
#include <cmath>

#include "runtime/kernels/qdq.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/ops/quant_common.h"

namespace slmops::runtime::ops::quant {

std::vector<float> float_values(const Tensor& t) {
  std::vector<float> v(t.numel());
  dispatch<kFloats | kHalfs | kSigned | kUnsigned>(t.dtype, "scale", [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.values<T>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = to_f32(p[i]);
  });
  return v;
}

std::vector<int32_t> int_values(const Tensor& t) {
  std::vector<int32_t> v(t.numel());
  if (t.dtype == DType::Int64 || t.dtype == DType::UInt32 || t.dtype == DType::UInt64) {
    auto w = to_int64s(t);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>(w[i]);
    return v;
  }
  const uint8_t* p = t.data.data();
  for (size_t i = 0; i < v.size(); ++i) v[i] = get_int(t.dtype, p, static_cast<int64_t>(i));
  return v;
}

bool stacks_into_one(const MatMulShape& s, size_t b_rank) {
  if (b_rank != 2 || s.a_batch.size() < 2) return false;
  for (size_t t = 0; t < s.a_batch.size(); ++t)
    if (s.a_batch[t] != static_cast<int64_t>(t)) return false;
  return true;
}

MatMulShape matmul_shape(const std::vector<int64_t>& a_in, const std::vector<int64_t>& b_in) {
  if (a_in.empty() || b_in.empty()) bad_input("MatMul inputs must have rank >= 1");
  std::vector<int64_t> a = a_in, b = b_in;
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  MatMulShape s;
  s.M = a[a.size() - 2];
  s.K = a.back();
  s.N = b.back();
  if (b[b.size() - 2] != s.K)
    bad_input("MatMul inner dimensions differ: A has K = {}, B has K = {}", s.K, b[b.size() - 2]);
  std::vector<int64_t> ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  std::vector<int64_t> batch = broadcast_shapes({ba, bb});
  s.out_dims = batch;
  if (!a1) s.out_dims.push_back(s.M);
  if (!b1) s.out_dims.push_back(s.N);
  const int64_t count = product(batch);
  auto sa = broadcast_strides(ba, batch), sb = broadcast_strides(bb, batch);
  s.a_batch.resize(count);
  s.b_batch.resize(count);
  std::vector<int64_t> idx(batch.size(), 0);
  for (int64_t t = 0; t < count; ++t) {
    int64_t ia = 0, ib = 0;
    for (size_t d = 0; d < batch.size(); ++d) {
      ia += idx[d] * sa[d];
      ib += idx[d] * sb[d];
    }
    s.a_batch[t] = ia;
    s.b_batch[t] = ib;
    for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }
  return s;
}

namespace {

// ---- QuantizeLinear / DequantizeLinear ---------------------------------------------------

// How the scale (and zero point) index into x: per tensor, per axis or blocked.
struct QdqLayout {
  int64_t pre = 1, dim = 1, post = 1;  // x viewed as [pre, dim, post] around the axis
  int64_t block = 0;                   // blocked: elements per block along the axis
  enum Mode { PerTensor, PerAxis, Blocked } mode = PerTensor;

  // Index of the scale for element i of x.
  int64_t scale_index(int64_t i) const {
    if (mode == PerTensor) return 0;
    const int64_t inner = i % post, a = (i / post) % dim;
    if (mode == PerAxis) return a;
    const int64_t outer = i / (post * dim);
    const int64_t blocks = (dim + block - 1) / block;
    return (outer * blocks + a / block) * post + inner;
  }
};

QdqLayout qdq_layout(const char* op, const Tensor& x, const Tensor& scale, const Tensor* zp, int64_t axis_attr,
                     int64_t block_size) {
  QdqLayout l;
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (scale.numel() == 1 && scale.dims.size() <= 1 && block_size == 0) {
    if (zp && zp->numel() != 1) bad_input("{}: the zero point must be a scalar when the scale is", op);
    return l;
  }
  const int64_t axis = normalize_axis(axis_attr, rank);
  l.pre = product(x.dims, 0, axis);
  l.dim = x.dims[axis];
  l.post = product(x.dims, axis + 1);
  if (block_size > 0) {
    l.mode = QdqLayout::Blocked;
    l.block = block_size;
    if (static_cast<int64_t>(scale.dims.size()) != rank) bad_input("{}: blocked scale must have x's rank", op);
    for (int64_t d = 0; d < rank; ++d) {
      const int64_t want = d == axis ? (x.dims[d] + block_size - 1) / block_size : x.dims[d];
      if (scale.dims[d] != want)
        bad_input("{}: blocked scale dimension {} is {}, expected {}", op, d, scale.dims[d], want);
    }
  } else {
    l.mode = QdqLayout::PerAxis;
    if (scale.dims.size() != 1 || scale.dims[0] != l.dim)
      bad_input("{}: per-axis scale must be 1-D of size {} (axis {})", op, l.dim, axis);
  }
  if (zp && zp->dims != scale.dims) bad_input("{}: the zero point and the scale have different shapes", op);
  return l;
}

DType quantize_output_type(const ir::Node& n, const OpContext& ctx) {
  if (ctx.has_input(2)) return ctx.in(2).dtype;
  const int64_t od = n.attr_int("output_dtype", 0);
  if (od == 0) return DType::UInt8;
  if (!ir::is_known_dtype(static_cast<int32_t>(od))) bad_input("QuantizeLinear: unknown output_dtype {}", od);
  return static_cast<DType>(od);
}

void quantize_linear(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& scale = ctx.in(1);
  const Tensor* zp = ctx.has_input(2) ? &ctx.in(2) : nullptr;
  const DType out_t = quantize_output_type(n, ctx);
  if (!is_quant_int(out_t))
    bad_input("QuantizeLinear to {} is not supported (integer types only)", ir::dtype_name(out_t));
  const QdqLayout l = qdq_layout("QuantizeLinear", x, scale, zp, n.attr_int("axis", 1), n.attr_int("block_size", 0));
  const auto sc = float_values(scale);
  const std::vector<int32_t> zps = zp ? int_values(*zp) : std::vector<int32_t>(sc.size(), 0);
  const QRange r = qrange(out_t);
  const int64_t count = static_cast<int64_t>(x.numel());
  if (x.dtype == DType::Float && l.mode == QdqLayout::PerTensor && (out_t == DType::UInt8 || out_t == DType::Int8)) {
    // The QDQ models' case: vectorized, the same values as quantize_value.
    Tensor& y = ctx.set_out(0, new_tensor(out_t, x.dims));
    const float* in = x.values<float>();
    uint8_t* out = y.mutable_values<uint8_t>();
    const float s = sc[0];
    const int32_t z = zps[0];
    ctx.pool->parallel_for(count, 1 << 16, [&](int64_t b, int64_t e) {
      if (out_t == DType::UInt8) kernels::quantize_f32_u8(in + b, e - b, s, z, out + b);
      else kernels::quantize_f32_s8(in + b, e - b, s, z, reinterpret_cast<int8_t*>(out) + b);
    });
    return;
  }
  Tensor& y = ctx.set_out(0, new_zero_tensor(out_t, x.dims));
  uint8_t* out = y.mutable_values<uint8_t>();
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.values<T>();
    auto body = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t s = l.scale_index(i);
        set_int(out_t, out, i, quantize_value(to_f32(in[i]), sc[s], zps[s], r));
      }
    };
    // Packed 4-bit outputs share bytes between neighbours: split on even boundaries.
    if (count < (1 << 15)) body(0, count);
    else
      ctx.pool->parallel_for((count + 1) / 2, 1 << 13, [&](int64_t b, int64_t e) { body(b * 2, std::min(count, e * 2)); });
  };
  switch (x.dtype) {
    case DType::Float: run(float{}); break;
    case DType::Float16: run(Half{}); break;
    case DType::BFloat16: run(BFloat16{}); break;
    case DType::Double: run(double{}); break;
    case DType::Int32: run(int32_t{}); break;
    default: unsupported_type(x.dtype, "QuantizeLinear input");
  }
}

void dequantize_linear(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& scale = ctx.in(1);
  const Tensor* zp = ctx.has_input(2) ? &ctx.in(2) : nullptr;
  if (!is_quant_int(x.dtype) && x.dtype != DType::Int32)
    bad_input("DequantizeLinear from {} is not supported (integer types only)", ir::dtype_name(x.dtype));
  if (zp && zp->dtype != x.dtype) bad_input("DequantizeLinear: the zero point type differs from x's");
  DType out_t = scale.dtype;
  if (int64_t od = n.attr_int("output_dtype", 0); od != 0) out_t = static_cast<DType>(od);
  const QdqLayout l =
      qdq_layout("DequantizeLinear", x, scale, zp, n.attr_int("axis", 1), n.attr_int("block_size", 0));
  const auto sc = float_values(scale);
  const std::vector<int32_t> zps = zp ? int_values(*zp) : std::vector<int32_t>(sc.size(), 0);
  Tensor& y = ctx.set_out(0, new_tensor(out_t, x.dims));
  const uint8_t* in = x.data.data();
  const int64_t count = static_cast<int64_t>(x.numel());
  if (out_t == DType::Float && l.mode == QdqLayout::PerTensor && (x.dtype == DType::UInt8 || x.dtype == DType::Int8)) {
    float* out = y.mutable_values<float>();
    const float s = sc[0];
    const int32_t z = zps[0];
    ctx.pool->parallel_for(count, 1 << 16, [&](int64_t b, int64_t e) {
      if (x.dtype == DType::UInt8) kernels::dequantize_u8_f32(in + b, e - b, s, z, out + b);
      else kernels::dequantize_s8_f32(reinterpret_cast<const int8_t*>(in) + b, e - b, s, z, out + b);
    });
    return;
  }
  dispatch<kFloats | kHalfs>(out_t, "DequantizeLinear output", [&](auto tag) {
    using T = decltype(tag);
    T* out = y.mutable_values<T>();
    auto body = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t s = l.scale_index(i);
        const int32_t q = static_cast<int32_t>(static_cast<uint32_t>(get_int(x.dtype, in, i)) -
                                               static_cast<uint32_t>(zps[s]));
        const float v = static_cast<float>(q) * sc[s];
        if constexpr (std::is_same_v<T, double>) out[i] = v;
        else out[i] = from_f32<T>(v);
      }
    };
    ctx.pool->parallel_for(count, 1 << 14, body);
  });
}

// ---- DynamicQuantizeLinear ---------------------------------------------------------------

// ONNX Runtime's uint8 parameters: the range widened to include 0, scale = (max - min) / 255
// (1 when the range is empty), zero point = round(clamp(0 - min / scale, 0, 255)).
void dynamic_params(const float* x, int64_t n, float& scale, uint8_t& zp) {
  float mn = 0.f, mx = 0.f;
  if (n > 0) kernels::min_max_f32(x, n, mn, mx);
  mn = std::min(mn, 0.f);
  mx = std::max(mx, 0.f);
  scale = mx == mn ? 1.0f : (mx - mn) / 255.0f;
  const float initial = 0.f - mn / scale;
  zp = static_cast<uint8_t>(std::nearbyintf(std::max(0.f, std::min(255.f, initial))));
}

void dynamic_quantize_linear(const ir::Node&, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.dtype != DType::Float) unsupported_type(x.dtype, "DynamicQuantizeLinear");
  const float* in = x.values<float>();
  const int64_t n = static_cast<int64_t>(x.numel());
  float scale;
  uint8_t zp;
  dynamic_params(in, n, scale, zp);
  Tensor& y = ctx.set_out(0, new_tensor(DType::UInt8, x.dims));
  uint8_t* out = y.mutable_values<uint8_t>();
  ctx.pool->parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    kernels::quantize_f32_u8(in + b, e - b, scale, zp, out + b);
  });
  if (ctx.output_count() > 1) ctx.set_out(1, Tensor::from_values<float>("", DType::Float, {}, {scale}));
  if (ctx.output_count() > 2) ctx.set_out(2, Tensor::from_values<uint8_t>("", DType::UInt8, {}, {zp}));
}

// ---- MatMulInteger / QLinearMatMul -------------------------------------------------------

bool is_int8ish(DType t) { return t == DType::UInt8 || t == DType::Int8; }

// Zero points of A (per row: [..., M, 1] or [M]) or B (per column: [..., 1, N] or [N]) for
// the matrix of batch index `batch`.
struct ZpView {
  std::vector<int32_t> values;
  int64_t per = 1;  // values per matrix: 1 (per tensor) or M / N
  int64_t matrices = 1;
  kernels::QZeroPoints get(int64_t batch) const {
    if (values.empty()) return {};
    if (per == 1 && matrices == 1) return {values.data(), false};
    return {values.data() + (batch % matrices) * per, per > 1};
  }
};

ZpView zp_view(const OpContext& ctx, size_t i, int64_t channels, const char* what) {
  ZpView z;
  if (!ctx.has_input(i)) return z;
  const Tensor& t = ctx.in(i);
  z.values = int_values(t);
  const int64_t n = static_cast<int64_t>(z.values.size());
  if (n == 1) return z;
  if (n % channels != 0) bad_input("{} has {} values, not a multiple of {}", what, n, channels);
  z.per = channels;
  z.matrices = n / channels;
  return z;
}

// A constant 2-D B packed at plan time, used when the run-time B is that same tensor.
struct PackedWeight {
  std::unique_ptr<kernels::QPackedB> packed;
  const Tensor* source = nullptr;
  void prepare(const ir::Node& n, size_t input, const PlanContext& pc) {
    const Tensor* b = constant_input(n, input, pc);
    if (!b || b->dims.size() != 2 || !is_int8ish(b->dtype)) return;
    packed = std::make_unique<kernels::QPackedB>(b->dims[0], b->dims[1], b->data.data(), b->dims[1],
                                                 b->dtype == DType::Int8);
    source = b;
  }
  const kernels::QPackedB* for_input(const Tensor& b) const {
    if (!packed || b.data.data() != source->data.data() || b.dims != source->dims) return nullptr;
    return packed.get();
  }
};

// Integer batched matmul into int32 `acc` (one M x N block per output matrix).
void integer_matmul(OpContext& ctx, const Tensor& A, const Tensor& B, const MatMulShape& s, const ZpView& za,
                    const ZpView& zb, const PackedWeight& pw, int32_t* acc) {
  const bool as = A.dtype == DType::Int8, bs = B.dtype == DType::Int8;
  const uint8_t* a = A.data.data();
  const uint8_t* b = B.data.data();
  const kernels::QPackedB* packed = pw.for_input(B);
  // A 2-D B under a batched A with per-tensor A zero point: one product of all A's rows
  // (the output blocks are consecutive), not one per batch matrix.
  if (stacks_into_one(s, B.dims.size()) && za.per == 1 && za.matrices == 1 && zb.matrices == 1) {
    const int64_t rows = static_cast<int64_t>(s.a_batch.size()) * s.M;
    if (packed) kernels::qgemm_packed(rows, a, s.K, as, za.get(0), *packed, zb.get(0), acc, s.N, ctx.pool);
    else kernels::qgemm(rows, s.N, s.K, a, s.K, as, za.get(0), b, s.N, bs, zb.get(0), acc, s.N, ctx.pool);
    return;
  }
  for (size_t t = 0; t < s.a_batch.size(); ++t) {
    const uint8_t* am = a + s.a_batch[t] * s.M * s.K;
    int32_t* c = acc + static_cast<int64_t>(t) * s.M * s.N;
    if (packed)
      kernels::qgemm_packed(s.M, am, s.K, as, za.get(s.a_batch[t]), *packed, zb.get(s.b_batch[t]), c, s.N, ctx.pool);
    else
      kernels::qgemm(s.M, s.N, s.K, am, s.K, as, za.get(s.a_batch[t]), b + s.b_batch[t] * s.K * s.N, s.N, bs,
                     zb.get(s.b_batch[t]), c, s.N, ctx.pool);
  }
}

struct MatMulIntegerKernel : Kernel {
  PackedWeight pw;
  void run(OpContext& ctx) override {
    const Tensor& A = ctx.in(0);
    const Tensor& B = ctx.in(1);
    if (!is_int8ish(A.dtype) || !is_int8ish(B.dtype))
      bad_input("MatMulInteger supports uint8/int8 inputs, got {} and {}", ir::dtype_name(A.dtype),
                ir::dtype_name(B.dtype));
    const MatMulShape s = matmul_shape(A.dims, B.dims);
    const ZpView za = zp_view(ctx, 2, s.M, "MatMulInteger a_zero_point");
    const ZpView zb = zp_view(ctx, 3, s.N, "MatMulInteger b_zero_point");
    Tensor& y = ctx.set_out(0, new_tensor(DType::Int32, s.out_dims));
    integer_matmul(ctx, A, B, s, za, zb, pw, y.mutable_values<int32_t>());
  }
};

struct QLinearMatMulKernel : Kernel {
  PackedWeight pw;
  void run(OpContext& ctx) override {
    const Tensor& A = ctx.in(0);
    const Tensor& B = ctx.in(3);
    if (!is_int8ish(A.dtype) || !is_int8ish(B.dtype))
      bad_input("QLinearMatMul supports uint8/int8 inputs, got {} and {}", ir::dtype_name(A.dtype),
                ir::dtype_name(B.dtype));
    const MatMulShape s = matmul_shape(A.dims, B.dims);
    const float a_scale = float_values(ctx.in(1))[0];
    const auto b_scale = float_values(ctx.in(4));
    const float y_scale = float_values(ctx.in(6))[0];
    const ZpView za = zp_view(ctx, 2, s.M, "QLinearMatMul a_zero_point");
    const ZpView zb = zp_view(ctx, 5, s.N, "QLinearMatMul b_zero_point");
    const Tensor& yzp_t = ctx.in(7);
    const DType out_t = yzp_t.dtype;
    if (!is_int8ish(out_t)) unsupported_type(out_t, "QLinearMatMul output");
    const int32_t yzp = int_values(yzp_t)[0];
    const QRange r = qrange(out_t);
    // Output scales per column (per matrix when b_scale is [..., 1, N]).
    std::vector<float> mult(b_scale.size());
    for (size_t i = 0; i < b_scale.size(); ++i) mult[i] = a_scale * b_scale[i] / y_scale;
    const int64_t scale_per = b_scale.size() == 1 ? 1 : s.N;
    if (b_scale.size() != 1 && static_cast<int64_t>(b_scale.size()) % s.N != 0)
      bad_input("QLinearMatMul b_scale has {} values for N = {}", b_scale.size(), s.N);
    const int64_t scale_mats = static_cast<int64_t>(b_scale.size()) / scale_per;

    const int64_t mats = static_cast<int64_t>(s.a_batch.size());
    std::vector<int32_t> acc(static_cast<size_t>(mats * s.M * s.N));
    integer_matmul(ctx, A, B, s, za, zb, pw, acc.data());
    Tensor& y = ctx.set_out(0, new_tensor(out_t, s.out_dims));
    uint8_t* out = y.mutable_values<uint8_t>();
    for (int64_t t = 0; t < mats; ++t) {
      const float* m = mult.data() + (s.b_batch[t] % scale_mats) * scale_per;
      for (int64_t i = 0; i < s.M; ++i)
        for (int64_t j = 0; j < s.N; ++j) {
          const int64_t o = (t * s.M + i) * s.N + j;
          out[o] = static_cast<uint8_t>(requantize_value(acc[o], m[scale_per == 1 ? 0 : j], yzp, r));
        }
    }
  }
};

// ---- QDQ groups as integer kernels (GraphRunner::plan_qdq) ----------------------------------

// The constant value of a node input (an initializer), or nullptr.
const Tensor* constant_of(const ir::Node& n, size_t i, const PlanContext& pc) { return constant_input(n, i, pc); }

// Input i of the group's node as the plan's constant (initializer or folded), or nullptr.
const Tensor* group_constant(const QdqGroup& g, size_t i) { return i < g.constant.size() ? g.constant[i] : nullptr; }

// DequantizeLinear(a) x DequantizeLinear(b) [+ DequantizeLinear(int32 bias)] [-> QuantizeLinear],
// as ONNX Runtime makes QLinearMatMul / QGemm (with the Q) or MatMulIntegerToFloat (without):
//   acc = sum_k (a_q - a_zp) * (b_q - b_zp[n]) (+ bias_q[n]), exact in int32
//   with Q:    y_q = clamp(rne(float(acc) * (a_scale * b_scale[n] / y_scale))) + y_zp
//   without:   y   = float(acc) * (a_scale * b_scale[n])
// MatMul takes any batched shapes (a constant 2-D b is packed once); Gemm (transA 0, alpha
// and beta 1) a 2-D a and b, b transposed or not.
struct QdqMatMulKernel : Kernel {
  bool gemm = false, trans_b = false;
  float a_scale = 1.f;
  int32_t a_zp = 0;
  DType a_type = DType::UInt8, b_type = DType::Int8;
  std::vector<float> b_scale;  // 1 or N
  std::vector<int32_t> b_zp;   // as b_scale
  std::vector<int32_t> bias;   // Gemm: N int32 values, or empty
  bool quantized_out = false;
  float y_scale = 1.f;
  int32_t y_zp = 0;
  DType y_type = DType::UInt8;
  std::unique_ptr<kernels::QPackedB> packed;
  const Tensor* packed_from = nullptr;

  // acc rows [m0, m1) x columns [n0, n1) of an [., N] block -> out (type y_type or float).
  void finish(const int32_t* acc, void* out, int64_t N, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
              const std::vector<float>& mult) const {
    const bool per_col = mult.size() != 1;
    for (int64_t i = m0; i < m1; ++i) {
      const int32_t* a = acc + i * N;
      if (!quantized_out && bias.empty()) {
        float* o = static_cast<float*>(out) + i * N;
        kernels::scale_s32_f32(a + n0, n1 - n0, nullptr, per_col ? mult.data() + n0 : mult.data(), per_col, nullptr,
                               o + n0);
      } else if (!quantized_out) {
        float* o = static_cast<float*>(out) + i * N;
        for (int64_t j = n0; j < n1; ++j) {
          const uint32_t v = static_cast<uint32_t>(a[j]) + (bias.empty() ? 0u : static_cast<uint32_t>(bias[j]));
          o[j] = static_cast<float>(static_cast<int32_t>(v)) * mult[per_col ? j : 0];
        }
      } else if (!per_col && bias.empty()) {
        uint8_t* o = static_cast<uint8_t*>(out) + i * N;
        if (y_type == DType::UInt8)
          kernels::requantize_s32_u8(a + n0, n1 - n0, 0, mult[0], 0.f, y_zp, o + n0);
        else
          kernels::requantize_s32_s8(a + n0, n1 - n0, 0, mult[0], 0.f, y_zp, reinterpret_cast<int8_t*>(o) + n0);
      } else {
        uint8_t* o = static_cast<uint8_t*>(out) + i * N;
        const QRange r = qrange(y_type);
        for (int64_t j = n0; j < n1; ++j) {
          const int32_t v =
              static_cast<int32_t>(static_cast<uint32_t>(a[j]) + (bias.empty() ? 0u : static_cast<uint32_t>(bias[j])));
          o[j] = static_cast<uint8_t>(requantize_value(v, mult[per_col ? j : 0], y_zp, r));
        }
      }
    }
  }

  void run(OpContext& ctx) override {
    const Tensor& A = ctx.in(0);
    const Tensor& B = ctx.in(1);
    if (A.dtype != a_type || B.dtype != b_type)
      bad_input("quantized inputs are {} and {}, the plan expected {} and {}", ir::dtype_name(A.dtype),
                ir::dtype_name(B.dtype), ir::dtype_name(a_type), ir::dtype_name(b_type));
    MatMulShape s;
    if (gemm) {
      if (A.dims.size() != 2 || B.dims.size() != 2) bad_input("Gemm needs 2-D inputs");
      s.M = A.dims[0], s.K = A.dims[1], s.N = trans_b ? B.dims[0] : B.dims[1];
      if ((trans_b ? B.dims[1] : B.dims[0]) != s.K) bad_input("Gemm inner dimensions differ");
      s.out_dims = {s.M, s.N};
      s.a_batch = s.b_batch = {0};
    } else {
      s = matmul_shape(A.dims, B.dims);
    }
    if ((b_scale.size() != 1 && static_cast<int64_t>(b_scale.size()) != s.N) ||
        (!bias.empty() && static_cast<int64_t>(bias.size()) != s.N))
      bad_input("the weight's scales or bias do not have N = {} values", s.N);
    std::vector<float> mult(b_scale.size());
    for (size_t i = 0; i < mult.size(); ++i)
      mult[i] = quantized_out ? a_scale * b_scale[i] / y_scale : a_scale * b_scale[i];
    Tensor& y = ctx.set_out(0, new_tensor(quantized_out ? y_type : DType::Float, s.out_dims));
    uint8_t* out = y.mutable_values<uint8_t>();
    const size_t out_elem = quantized_out ? 1 : sizeof(float);
    const bool as = a_type == DType::Int8, bs = b_type == DType::Int8;
    const kernels::QZeroPoints za{&a_zp, false}, zb{b_zp.data(), b_zp.size() > 1};
    const bool use_packed = packed && B.data.data() == packed_from->data.data() && B.dims == packed_from->dims;
    if (use_packed && (gemm || stacks_into_one(s, B.dims.size()) || s.a_batch.size() == 1)) {
      // One tall product; each finished block is rescaled on the thread that made it.
      const int64_t rows = static_cast<int64_t>(s.a_batch.size()) * s.M;
      Tensor acc_t = new_tensor(DType::Int32, {rows, s.N});
      int32_t* acc = acc_t.mutable_values<int32_t>();
      const kernels::QBlockDone done = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
        finish(acc, out, s.N, m0, m1, n0, n1, mult);
      };
      kernels::qgemm_packed(rows, A.data.data(), s.K, as, za, *packed, zb, acc, s.N, ctx.pool, &done);
      return;
    }
    if (trans_b) bad_input("Gemm with a transposed B that is not the planned constant");
    Tensor acc_t = new_tensor(DType::Int32, {s.M, s.N});
    int32_t* acc = acc_t.mutable_values<int32_t>();
    for (size_t t = 0; t < s.a_batch.size(); ++t) {
      kernels::qgemm(s.M, s.N, s.K, A.data.data() + s.a_batch[t] * s.M * s.K, s.K, as, za,
                     B.data.data() + s.b_batch[t] * s.K * s.N, s.N, bs, zb, acc, s.N, ctx.pool);
      finish(acc, out + t * s.M * s.N * out_elem, s.N, 0, s.M, 0, s.N, mult);
    }
  }
};

std::unique_ptr<Kernel> qdq_matmul_factory(const QdqGroup& g, const PlanContext& pc, bool gemm) {
  const ir::Node& n = *g.node;
  if (n.inputs.size() < 2 || !g.dq[0] || !g.dq[1] || g.dq[0] == g.dq[1]) return nullptr;
  auto k = std::make_unique<QdqMatMulKernel>();
  k->gemm = gemm;
  QdqConstants a, b;
  if (!qdq_constants(*g.dq[0], pc, a) || !a.per_tensor() || !is_int8ish(a.type)) return nullptr;
  if (!qdq_constants(*g.dq[1], pc, b) || !is_int8ish(b.type)) return nullptr;
  const Tensor* w = constant_of(*g.dq[1], 0, pc);
  if (gemm) {
    if (n.attr_int("transA", 0) != 0 || n.attr_float("alpha", 1.f) != 1.f || !w || w->dims.size() != 2) return nullptr;
    k->trans_b = n.attr_int("transB", 0) != 0;
  }
  const int64_t wN = w && w->dims.size() == 2 ? w->dims[k->trans_b ? 0 : 1] : -1;
  if (!b.per_tensor()) {  // per output column: the axis of N
    const int64_t axis = b.axis < 0 ? b.axis + 2 : b.axis;
    if (wN < 0 || axis != (k->trans_b ? 0 : 1) || static_cast<int64_t>(b.scale.size()) != wN) return nullptr;
  }
  k->a_scale = a.scale[0], k->a_zp = a.zp[0], k->a_type = a.type;
  k->b_scale = b.scale, k->b_zp = b.zp, k->b_type = b.type;
  if (gemm && n.inputs.size() > 2 && n.inputs[2]) {
    if (n.attr_float("beta", 1.f) != 1.f || g.dq.size() < 3 || !g.dq[2]) return nullptr;
    if (!qdq_int32_bias(g, 2, pc, k->a_scale, k->b_scale, wN, k->bias)) return nullptr;
  }
  if (g.q) {
    QdqConstants y;
    if (!qdq_constants(*g.q, pc, y) || !y.per_tensor() || !is_int8ish(y.type)) return nullptr;
    k->quantized_out = true;
    k->y_scale = y.scale[0], k->y_zp = y.zp[0], k->y_type = y.type;
  }
  if (w && w->dims.size() == 2 && w->dtype == b.type) {
    k->packed = std::make_unique<kernels::QPackedB>(k->trans_b ? w->dims[1] : w->dims[0], wN, w->data.data(),
                                                    w->dims[1], b.type == DType::Int8, k->trans_b);
    k->packed_from = w;
  } else if (gemm) {
    return nullptr;
  }
  return k;
}

// DequantizeLinear -> elementwise op of one float input -> QuantizeLinear on 8-bit tensors: a
// table of the 256 results, made at plan time by running the op's own kernel on every input
// value (dequantized and quantized as the DequantizeLinear / QuantizeLinear kernels do), so
// the values are those of the graph as written, in one byte lookup per element.
struct QdqTableKernel : Kernel {
  DType in_type = DType::UInt8, out_type = DType::UInt8;
  uint8_t table[256] = {};
  void run(OpContext& ctx) override {
    const Tensor& x = ctx.in(0);
    if (x.dtype != in_type)
      bad_input("quantized input is {}, the plan expected {}", ir::dtype_name(x.dtype), ir::dtype_name(in_type));
    Tensor& y = ctx.set_out(0, new_tensor(out_type, x.dims));
    const uint8_t* in = x.data.data();
    uint8_t* out = y.mutable_values<uint8_t>();
    const uint8_t flip = in_type == DType::Int8 ? 0x80 : 0;  // int8 v at index v + 128
    ctx.pool->parallel_for(static_cast<int64_t>(x.numel()), 1 << 16,
                           [&](int64_t b, int64_t e) { kernels::lookup_u8(table, in + b, e - b, flip, out + b); });
  }
};

std::unique_ptr<Kernel> qdq_table_factory(const QdqGroup& g, const PlanContext& pc) {
  const ir::Node& n = *g.node;
  if (!g.dq[0] || !g.q || n.outputs.size() != 1) return nullptr;
  QdqConstants a, y;
  if (!qdq_constants(*g.dq[0], pc, a) || !a.per_tensor() || !is_int8ish(a.type)) return nullptr;
  if (!qdq_constants(*g.q, pc, y) || !y.per_tensor() || !is_int8ish(y.type)) return nullptr;
  // Every other input must be a constant (Clip's bounds).
  std::vector<RValue> others(n.inputs.size());
  for (size_t i = 1; i < n.inputs.size(); ++i) {
    if (!n.inputs[i]) continue;
    const Tensor* c = group_constant(g, i);
    if (!c || (i < g.dq.size() && g.dq[i])) return nullptr;
    others[i] = RValue::of(*c);
  }
  const KernelFactory* make = find_kernel(n.domain, n.op_type, pc.opset);
  if (!make) return nullptr;
  std::unique_ptr<Kernel> op = (*make)(n, pc);
  const bool s8 = a.type == DType::Int8;
  Tensor xs = new_tensor(DType::Float, {256});
  float* xv = xs.mutable_values<float>();
  for (int i = 0; i < 256; ++i) {
    const int32_t v = s8 ? i - 128 : i;
    xv[i] = static_cast<float>(v - a.zp[0]) * a.scale[0];
  }
  ThreadPool one(1);
  OpContext ctx;
  ctx.pool = &one;
  ctx.node = &n;
  const RValue xin = RValue::of(std::move(xs));
  ctx.inputs.push_back(&xin);
  for (size_t i = 1; i < n.inputs.size(); ++i) ctx.inputs.push_back(n.inputs[i] ? &others[i] : nullptr);
  std::vector<RValue> outs(1);
  ctx.outputs = &outs;
  op->run(ctx);
  if (!outs[0].is_tensor() || outs[0].tensor.dtype != DType::Float || outs[0].tensor.numel() != 256) return nullptr;
  auto k = std::make_unique<QdqTableKernel>();
  k->in_type = a.type, k->out_type = y.type;
  const float* yv = outs[0].tensor.values<float>();
  const QRange r = qrange(y.type);
  for (int i = 0; i < 256; ++i)
    k->table[i] = static_cast<uint8_t>(quantize_value(yv[i], y.scale[0], y.zp[0], r));  // index: v + 128 for int8
  return k;
}

// DequantizeLinear -> MaxPool (or a data-movement op) -> QuantizeLinear with the same scale
// (> 0) and zero point on both sides: the op's own kernel on the integer tensor. Exact: the
// dequantization is increasing, so it commutes with max, and Q(DQ(v)) = v.
struct QdqSameScaleKernel : Kernel {
  std::unique_ptr<Kernel> op;
  void run(OpContext& ctx) override { op->run(ctx); }
};

std::unique_ptr<Kernel> qdq_same_scale_factory(const QdqGroup& g, const PlanContext& pc) {
  const ir::Node& n = *g.node;
  if (!g.dq[0] || !g.q || n.outputs.size() != 1) return nullptr;
  for (size_t i = 1; i < g.dq.size(); ++i)
    if (g.dq[i]) return nullptr;
  QdqConstants a, y;
  if (!qdq_constants(*g.dq[0], pc, a) || !a.per_tensor() || !is_int8ish(a.type)) return nullptr;
  if (!qdq_constants(*g.q, pc, y) || !y.per_tensor() || y.type != a.type) return nullptr;
  if (!(a.scale[0] > 0.f) || a.scale[0] != y.scale[0] || a.zp[0] != y.zp[0]) return nullptr;
  const KernelFactory* make = find_kernel(n.domain, n.op_type, pc.opset);
  if (!make) return nullptr;
  auto k = std::make_unique<QdqSameScaleKernel>();
  k->op = (*make)(n, pc);
  return k;
}

template <typename K>
KernelFactory matmul_factory(size_t b_input) {
  return [b_input](const ir::Node& n, const PlanContext& pc) {
    auto k = std::make_unique<K>();
    k->pw.prepare(n, b_input, pc);
    return k;
  };
}

}  // namespace

bool qdq_constants(const ir::Node& n, const PlanContext& pc, QdqConstants& out) {
  if (n.inputs.size() < 3 || !n.inputs[2] || n.attr_int("block_size", 0) != 0) return false;
  const Tensor* scale = constant_input(n, 1, pc);
  const Tensor* zp = constant_input(n, 2, pc);
  if (!scale || !zp || scale->dtype != DType::Float || scale->numel() == 0 || zp->numel() != scale->numel() ||
      scale->dims.size() > 1 || !is_quant_int(zp->dtype))
    return false;
  if (n.op_type == "QuantizeLinear" && n.attr_int("output_dtype", 0) != 0 &&
      n.attr_int("output_dtype", 0) != static_cast<int64_t>(zp->dtype))
    return false;
  out.scale = float_values(*scale);
  out.zp = int_values(*zp);
  out.type = zp->dtype;
  out.axis = n.attr_int("axis", 1);
  return true;
}

bool qdq_int32_bias(const QdqGroup& g, size_t input, const PlanContext& pc, float a_scale,
                    const std::vector<float>& w_scale, int64_t channels, std::vector<int32_t>& bias) {
  const ir::Node* dq = input < g.dq.size() ? g.dq[input] : nullptr;
  if (!dq || dq->attr_int("block_size", 0) != 0) return false;
  const Tensor* b = constant_input(*dq, 0, pc);
  const Tensor* scale = constant_input(*dq, 1, pc);
  const Tensor* zp = dq->inputs.size() > 2 && dq->inputs[2] ? constant_input(*dq, 2, pc) : nullptr;
  if (!b || b->dtype != DType::Int32 || b->dims.size() != 1 || b->dims[0] != channels || !scale ||
      scale->dtype != DType::Float)
    return false;
  if (dq->inputs.size() > 2 && dq->inputs[2] && !zp) return false;
  if (zp)
    for (int32_t z : int_values(*zp))
      if (z != 0) return false;
  const auto bs = float_values(*scale);
  if (bs.size() != 1 && static_cast<int64_t>(bs.size()) != channels) return false;
  for (int64_t c = 0; c < channels; ++c) {
    const float want = a_scale * w_scale[w_scale.size() == 1 ? 0 : c];
    const float have = bs[bs.size() == 1 ? 0 : c];
    if (std::fabs(have - want) > 1e-6f * std::fabs(want)) return false;
  }
  bias = int_values(*b);
  return true;
}

void register_quant_family() {
  register_qdq_kernel("MatMul",
                      [](const QdqGroup& g, const PlanContext& pc) { return qdq_matmul_factory(g, pc, false); });
  register_qdq_kernel("Gemm", [](const QdqGroup& g, const PlanContext& pc) { return qdq_matmul_factory(g, pc, true); });
  for (const char* op : {"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu",
                         "Softplus", "Softsign", "Abs", "Neg", "Erf", "Gelu"})
    register_qdq_kernel(op, qdq_table_factory);
  for (const char* op : {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"})
    register_qdq_kernel(op, qdq_same_scale_factory);
  for (const char* domain : {"", "com.microsoft"}) {
    const int since = domain[0] ? 1 : 10;
    register_kernel(domain, "QuantizeLinear", since, simple_kernel(quantize_linear));
    register_kernel(domain, "DequantizeLinear", since, simple_kernel(dequantize_linear));
  }
  register_kernel("", "DynamicQuantizeLinear", 11, simple_kernel(dynamic_quantize_linear));
  register_kernel("", "MatMulInteger", 10, matmul_factory<MatMulIntegerKernel>(1));
  register_kernel("", "QLinearMatMul", 10, matmul_factory<QLinearMatMulKernel>(3));
}

void dynamic_quantize_params(const float* x, int64_t n, float& scale, uint8_t& zp) { dynamic_params(x, n, scale, zp); }

}  // namespace slmops::runtime::ops::quant

namespace slmops::runtime {
namespace ops::quant {
void register_quant_conv_ops();  // quant_conv.cpp
}
void register_quant_ops() {
  ops::quant::register_quant_family();
  ops::quant::register_quant_conv_ops();
}
}  // namespace slmops::runtime
