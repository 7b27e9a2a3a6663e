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

template <typename K>
KernelFactory matmul_factory(size_t b_input) {
  return [b_input](const ir::Node& n, const PlanContext& pc) {
    auto k = std::make_unique<K>();
    k->pw.prepare(n, b_input, pc);
    return k;
  };
}

}  // namespace

void register_quant_family() {
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
