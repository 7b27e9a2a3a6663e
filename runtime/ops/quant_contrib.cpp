// com.microsoft quantized matmuls that ONNX Runtime's quantization tools emit:
//   MatMulNBits           Y = A x dequant(B)^T (+ bias), 2/4/8-bit blocks (kernels/nbits.h)
//   DynamicQuantizeMatMul A quantized to uint8 per tensor at run time, times int8/uint8 B,
//                         scaled back to float: float(acc) * (a_scale * b_scale[n]) + bias[n]
//   MatMulIntegerToFloat  the same with A already quantized
#include <algorithm>
#include <cstring>

#include "runtime/kernels/gemm.h"
#include "runtime/kernels/nbits.h"
#include "runtime/kernels/qdq.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/ops/quant_common.h"

namespace slmops::runtime::ops::quant {
namespace {

// ---- MatMulNBits ----------------------------------------------------------------------------

struct MatMulNBitsKernel : Kernel {
  int64_t K = 0, N = 0, bits = 4, block_size = 32, accuracy = 0;
  std::unique_ptr<kernels::NBitsPacked> packed;  // when B, scales and zero points are constant
  const Tensor* packed_from = nullptr;
  // Float mode with constant weights: W dequantized once at plan time into sgemm's packed
  // layout, if the pack budget has room. Products of kDenseMinRows rows or more use it, as
  // ONNX Runtime's CompFp32 path dequantizes B and runs SGEMM when M > 1; the values are
  // the same, (q - zp) * scale in float, so only the summation order differs. Single rows
  // (decoding) keep the 4-bit GEMV, which reads a quarter of the bytes.
  std::shared_ptr<const kernels::PackedB> dense;
  static constexpr int64_t kDenseMinRows = 2;
  // Without that copy, float mode with kernels::kDequantMinRows rows or more dequantizes W per
  // call, tile by tile, into the same GEMM (nbits_gemm_dequant): the constant weights' source
  // view is kept for it (B's bytes are the model's; the scales and zero points as floats).
  kernels::NBitsSource plan_source;
  std::vector<float> plan_scales, plan_zp;

  kernels::NBitsMode mode_for(bool float_zp, bool g_idx) const {
    return accuracy == 4 && !float_zp && !g_idx ? kernels::NBitsMode::Int8 : kernels::NBitsMode::Float;
  }

  // The source view of the weights; float copies of non-float scales / zero points in `keep`.
  kernels::NBitsSource source(const Tensor& B, const Tensor& scales, const Tensor* zp,
                              std::vector<float>& keep_scales, std::vector<float>& keep_zp) const {
    kernels::NBitsSource s;
    s.N = N, s.K = K, s.bits = bits, s.block_size = block_size;
    const int64_t kb = s.k_blocks();
    if (B.dtype != DType::UInt8 || static_cast<int64_t>(B.numel()) != N * kb * s.blob_bytes())
      bad_input("MatMulNBits: B must be uint8 with {} x {} x {} elements, got {}", N, kb, s.blob_bytes(), describe(B));
    if (static_cast<int64_t>(scales.numel()) != N * kb)
      bad_input("MatMulNBits: scales must have {} elements, got {}", N * kb, describe(scales));
    s.B = B.data.data();
    keep_scales = float_values(scales);
    s.scales = keep_scales.data();
    if (zp) {
      if (zp->dtype == DType::UInt8) {
        if (static_cast<int64_t>(zp->numel()) != N * ((kb * bits + 7) / 8))
          bad_input("MatMulNBits: packed zero_points must have {} elements, got {}", N * ((kb * bits + 7) / 8),
                    describe(*zp));
        s.zp_packed = zp->data.data();
      } else {
        if (static_cast<int64_t>(zp->numel()) != N * kb)
          bad_input("MatMulNBits: zero_points must have {} elements, got {}", N * kb, describe(*zp));
        keep_zp = float_values(*zp);
        s.zp_float = keep_zp.data();
      }
    }
    return s;
  }

  // g_idx that is not the plain k / block_size mapping (act-order GPTQ weights).
  bool nontrivial_gidx(const OpContext& ctx) const {
    if (!ctx.has_input(4)) return false;
    const auto g = to_int64s(ctx.in(4));
    for (size_t k = 0; k < g.size(); ++k)
      if (g[k] != static_cast<int64_t>(k) / block_size) return true;
    return false;
  }

  void run(OpContext& ctx) override {
    const Tensor& A = ctx.in(0);
    if (A.dims.empty() || A.dims.back() != K) bad_input("MatMulNBits: A {} does not end in K = {}", describe(A), K);
    const int64_t M = static_cast<int64_t>(A.numel()) / std::max<int64_t>(K, 1);
    std::vector<int64_t> out_dims = A.dims;
    out_dims.back() = N;
    const Tensor a32 = to_float_tensor(A);
    const Tensor* zp = ctx.has_input(3) ? &ctx.in(3) : nullptr;
    const bool gidx = nontrivial_gidx(ctx);
    std::vector<float> bias;
    if (ctx.has_input(5)) {
      bias = float_values(ctx.in(5));
      if (static_cast<int64_t>(bias.size()) != N) bad_input("MatMulNBits: bias must have N = {} elements", N);
    }
    Tensor y32 = new_tensor(DType::Float, out_dims);
    float* y = y32.mutable_values<float>();

    std::vector<float> ks, kz;
    if (gidx) {
      // Act-order weights: dequantize through g_idx and use sgemm (slow path).
      const kernels::NBitsSource s = source(ctx.in(1), ctx.in(2), zp, ks, kz);
      const auto g = to_int64s(ctx.in(4));
      if (static_cast<int64_t>(g.size()) != K) bad_input("MatMulNBits: g_idx must have K = {} elements", K);
      std::vector<float> w(static_cast<size_t>(N * K));
      const int64_t kb = s.k_blocks();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
          const int64_t b = g[k];
          if (b < 0 || b >= kb) bad_input("MatMulNBits: g_idx value {} out of range", b);
          w[n * K + k] = (static_cast<float>(s.q(n, k)) - s.zero_point(n, b)) * s.scales[n * kb + b];
        }
      kernels::sgemm(false, true, M, N, K, 1.f, a32.values<float>(), K, w.data(), K, 0.f, y, N, ctx.pool);
      for (int64_t m = 0; m < M && !bias.empty(); ++m)
        for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
    } else {
      if (dense && M >= kDenseMinRows && ctx.in(1).data.data() == packed_from->data.data()) {
        kernels::sgemm_packed(false, M, 1.f, a32.values<float>(), K, *dense, 0.f, y, N, ctx.pool);
        if (!bias.empty())
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
        ctx.set_out(0, A.dtype == DType::Float ? std::move(y32) : from_float_tensor(y32, A.dtype));
        return;
      }
      const bool planned = packed && ctx.in(1).data.data() == packed_from->data.data();
      if (M >= kernels::kDequantMinRows) {
        kernels::NBitsSource s = planned ? plan_source : source(ctx.in(1), ctx.in(2), zp, ks, kz);
        if (mode_for(s.zp_float != nullptr, false) == kernels::NBitsMode::Float ||
            !kernels::nbits_int8_prefill_fast()) {
          kernels::nbits_gemm_dequant(M, a32.values<float>(), K, s, bias.empty() ? nullptr : bias.data(), y, N,
                                      ctx.pool);
          ctx.set_out(0, A.dtype == DType::Float ? std::move(y32) : from_float_tensor(y32, A.dtype));
          return;
        }
      }
      const kernels::NBitsPacked* W = packed.get();
      std::unique_ptr<kernels::NBitsPacked> local;
      if (!planned) {
        const kernels::NBitsSource s = source(ctx.in(1), ctx.in(2), zp, ks, kz);
        local = std::make_unique<kernels::NBitsPacked>(s, mode_for(s.zp_float != nullptr, false));
        W = local.get();
      }
      kernels::nbits_gemm(M, a32.values<float>(), K, *W, bias.empty() ? nullptr : bias.data(), y, N, ctx.pool);
    }
    ctx.set_out(0, A.dtype == DType::Float ? std::move(y32) : from_float_tensor(y32, A.dtype));
  }
};

KernelFactory matmul_nbits_factory() {
  return [](const ir::Node& n, const PlanContext& pc) -> std::unique_ptr<Kernel> {
    auto k = std::make_unique<MatMulNBitsKernel>();
    k->K = n.attr_int("K", -1);
    k->N = n.attr_int("N", -1);
    k->bits = n.attr_int("bits", 4);
    k->block_size = n.attr_int("block_size", -1);
    k->accuracy = n.attr_int("accuracy_level", 0);
    if (k->K <= 0 || k->N <= 0) bad_input("MatMulNBits needs positive K and N attributes");
    if (k->bits != 2 && k->bits != 4 && k->bits != 8) bad_input("MatMulNBits: bits {} is not supported", k->bits);
    if (k->block_size < 16 || (k->block_size & (k->block_size - 1)))
      bad_input("MatMulNBits: block_size {} must be a power of two >= 16", k->block_size);
    const Tensor* B = constant_input(n, 1, pc);
    const Tensor* S = constant_input(n, 2, pc);
    const bool has_zp = n.inputs.size() > 3 && n.inputs[3];
    const Tensor* Z = has_zp ? constant_input(n, 3, pc) : nullptr;
    const bool has_gidx = n.inputs.size() > 4 && n.inputs[4];
    if (B && S && (!has_zp || Z) && !has_gidx) {
      const kernels::NBitsSource s = k->source(*B, *S, Z, k->plan_scales, k->plan_zp);
      const kernels::NBitsMode mode = k->mode_for(s.zp_float != nullptr, false);
      k->packed = std::make_unique<kernels::NBitsPacked>(s, mode);
      k->packed_from = B;
      k->plan_source = s;
      if (mode == kernels::NBitsMode::Float && pc.take_pack_budget(k->N * k->K * int64_t{sizeof(float)})) {
        // W[n, k] = (q - zp) * scale, as the Float GEMV and ONNX Runtime's CompFp32 dequantize.
        const int64_t kb = s.k_blocks();
        std::vector<float> w(static_cast<size_t>(k->N * k->K));
        for (int64_t nn = 0; nn < k->N; ++nn)
          for (int64_t kk = 0; kk < k->K; ++kk) {
            const int64_t b = kk / k->block_size;
            w[nn * k->K + kk] = (static_cast<float>(s.q(nn, kk)) - s.zero_point(nn, b)) * s.scales[nn * kb + b];
          }
        k->dense = std::make_shared<kernels::PackedB>(true, k->K, k->N, w.data(), k->K);
      }
    }
    return k;
  };
}

// ---- DynamicQuantizeMatMul / MatMulIntegerToFloat -----------------------------------------

struct IntegerToFloatKernel : Kernel {
  bool dynamic = true;  // DynamicQuantizeMatMul; else MatMulIntegerToFloat
  std::unique_ptr<kernels::QPackedB> packed;
  const Tensor* packed_from = nullptr;

  void run(OpContext& ctx) override {
    const char* op = dynamic ? "DynamicQuantizeMatMul" : "MatMulIntegerToFloat";
    const Tensor& A = ctx.in(0);
    const Tensor& B = ctx.in(1);
    if (B.dtype != DType::UInt8 && B.dtype != DType::Int8) unsupported_type(B.dtype, op);
    MatMulShape s = matmul_shape(A.dims, B.dims);
    // A 2-D B (weights) under a batched A: one product of all A's rows (batch x M) instead of
    // one per batch matrix; the zero points and scales are the same for every batch.
    if (stacks_into_one(s, B.dims.size())) {
      s.M *= static_cast<int64_t>(s.a_batch.size());
      s.a_batch = {0};
      s.b_batch = {0};
    }
    // Quantized A (uint8 or int8), its scale and zero point.
    Tensor aq_store;  // pooled: above the mmap threshold a std::vector faults in every page
    const uint8_t* aq;
    bool a_signed = false;
    float a_scale;
    int32_t a_zp = 0;
    std::vector<float> b_scale;
    size_t bzp_input, bias_input;
    if (dynamic) {
      if (A.dtype != DType::Float) unsupported_type(A.dtype, op);
      const int64_t n = static_cast<int64_t>(A.numel());
      uint8_t zp8;
      dynamic_quantize_params(A.values<float>(), n, a_scale, zp8);
      a_zp = zp8;
      aq_store = new_tensor(DType::UInt8, {n});
      uint8_t* q = aq_store.mutable_values<uint8_t>();
      const float* x = A.values<float>();
      ctx.pool->parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
        kernels::quantize_f32_u8(x + b, e - b, a_scale, a_zp, q + b);
      });
      aq = q;
      b_scale = float_values(ctx.in(2));
      bzp_input = 3;
      bias_input = 4;
    } else {
      if (A.dtype != DType::UInt8 && A.dtype != DType::Int8) unsupported_type(A.dtype, op);
      aq = A.data.data();
      a_signed = A.dtype == DType::Int8;
      a_scale = float_values(ctx.in(2))[0];
      b_scale = float_values(ctx.in(3));
      if (ctx.has_input(4)) a_zp = int_values(ctx.in(4))[0];
      bzp_input = 5;
      bias_input = 6;
    }
    std::vector<int32_t> bzp;
    if (ctx.has_input(bzp_input)) bzp = int_values(ctx.in(bzp_input));
    std::vector<float> bias;
    if (ctx.has_input(bias_input)) bias = float_values(ctx.in(bias_input));
    if (b_scale.size() != 1 && static_cast<int64_t>(b_scale.size()) % s.N != 0)
      bad_input("{}: b_scale has {} values for N = {}", op, b_scale.size(), s.N);
    if (bzp.size() > 1 && static_cast<int64_t>(bzp.size()) % s.N != 0)
      bad_input("{}: b_zero_point has {} values for N = {}", op, bzp.size(), s.N);
    std::vector<float> mult(b_scale.size());
    for (size_t i = 0; i < b_scale.size(); ++i) mult[i] = a_scale * b_scale[i];

    Tensor& y = ctx.set_out(0, new_tensor(DType::Float, s.out_dims));
    float* out = y.mutable_values<float>();
    const int64_t mats = static_cast<int64_t>(s.a_batch.size());
    Tensor acc_t = new_tensor(DType::Int32, {s.M, s.N});
    int32_t* acc = acc_t.mutable_values<int32_t>();
    const kernels::QPackedB* pb =
        packed && B.data.data() == packed_from->data.data() && B.dims == packed_from->dims ? packed.get() : nullptr;
    for (int64_t t = 0; t < mats; ++t) {
      const uint8_t* am = aq + s.a_batch[t] * s.M * s.K;
      const int64_t bmat = s.b_batch[t];
      kernels::QZeroPoints za{&a_zp, false};
      kernels::QZeroPoints zb;
      if (bzp.size() == 1) zb = {bzp.data(), false};
      else if (!bzp.empty()) zb = {bzp.data() + (bmat % (static_cast<int64_t>(bzp.size()) / s.N)) * s.N, true};
      const float* mu = mult.size() == 1 ? mult.data()
                                         : mult.data() + (bmat % (static_cast<int64_t>(mult.size()) / s.N)) * s.N;
      float* o = out + t * s.M * s.N;
      const bool per_col = mult.size() != 1;
      const float* bi = bias.empty() ? nullptr : bias.data();
      // A's zero point against a packed signed B without zero points: its correction,
      // -(a_zp + shift) * colsum[n] in the kernel's canonical values, is the same for every row,
      // so the rescale adds it on its way to float instead of the GEMM making a pass over the
      // int32 block for it; the GEMM is asked for the zero point that needs no correction.
      std::vector<int32_t> offset;
      const int32_t no_correction = a_signed ? -128 : 0;
      bool zb_zero = true;
      for (int32_t z : bzp) zb_zero &= z == 0;
      if (pb && pb->is_signed() && zb_zero) {
        const uint32_t zc = static_cast<uint32_t>(a_zp + (a_signed ? 128 : 0));
        offset.resize(static_cast<size_t>(s.N));
        for (int64_t n = 0; n < s.N; ++n)
          offset[n] = static_cast<int32_t>(0u - zc * static_cast<uint32_t>(pb->col_sums()[n]));
        za = {&no_correction, false};
      }
      const int32_t* off = offset.empty() ? nullptr : offset.data();
      // int32 -> float (scale, bias) of a block of rows and columns, on the thread that made it.
      const kernels::QBlockDone rescale = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
        for (int64_t i = m0; i < m1; ++i)
          kernels::scale_s32_f32(acc + i * s.N + n0, n1 - n0, off ? off + n0 : nullptr, per_col ? mu + n0 : mu, per_col,
                                 bi ? bi + n0 : nullptr, o + i * s.N + n0);
      };
      if (pb) {
        kernels::qgemm_packed(s.M, am, s.K, a_signed, za, *pb, zb, acc, s.N, ctx.pool, &rescale);
      } else {
        kernels::qgemm(s.M, s.N, s.K, am, s.K, a_signed, za, B.data.data() + bmat * s.K * s.N, s.N,
                       B.dtype == DType::Int8, zb, acc, s.N, ctx.pool);
        rescale(0, s.M, 0, s.N);
      }
    }
  }
};

KernelFactory integer_to_float_factory(bool dynamic) {
  return [dynamic](const ir::Node& n, const PlanContext& pc) -> std::unique_ptr<Kernel> {
    auto k = std::make_unique<IntegerToFloatKernel>();
    k->dynamic = dynamic;
    const Tensor* b = constant_input(n, 1, pc);
    if (b && b->dims.size() == 2 && (b->dtype == DType::UInt8 || b->dtype == DType::Int8)) {
      k->packed = std::make_unique<kernels::QPackedB>(b->dims[0], b->dims[1], b->data.data(), b->dims[1],
                                                      b->dtype == DType::Int8);
      k->packed_from = b;
    }
    return k;
  };
}

}  // namespace

void register_contrib_quant_ops() {
  register_kernel("com.microsoft", "MatMulNBits", 1, matmul_nbits_factory());
  register_kernel("com.microsoft", "DynamicQuantizeMatMul", 1, integer_to_float_factory(true));
  register_kernel("com.microsoft", "MatMulIntegerToFloat", 1, integer_to_float_factory(false));
}

}  // namespace slmops::runtime::ops::quant
