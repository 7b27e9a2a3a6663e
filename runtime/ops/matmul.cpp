// MatMul (numpy matmul: 1-D operands, broadcast batch dims), com.microsoft FusedMatMul (the
// same with the last two dims of A and/or B swapped and a scale alpha: what ONNX Runtime, and
// optimize --target onnxruntime, make of MatMul(Transpose(A), B) * alpha) and Gemm (transposes,
// alpha, beta, broadcast C). float32 and the 16-bit floats (through float32) run on the blocked
// SGEMM of runtime/kernels/gemm.h; a constant 2-D B (a weight) is packed for it once, when
// the node is planned. double and integer types use a plain loop.
#include <functional>
#include <memory>
#include <type_traits>

#include "runtime/kernels/gemm.h"
#include "runtime/ops/common.h"

namespace slmops::runtime::ops {
namespace {

// fn over [0, n) in chunks of at least `grain`: on the pool's threads, or here when pool is
// null (inside a loop that is already spread over the threads).
void split(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) pool->parallel_for(n, grain, fn);
  else fn(0, n);
}

bool runs_on_sgemm(DType dt) { return dt == DType::Float || dt == DType::Float16 || dt == DType::BFloat16; }

// B packed for sgemm at plan time when it is a 2-D float initializer (a graph input with a
// default could be fed something else, so only true initializers count) and the session's
// packing budget has room for it (PlanContext::pack_budget); nullptr otherwise.
std::shared_ptr<const kernels::PackedB> pack_constant_b(const ir::Node& n, bool trans_b, const PlanContext& pc) {
  const Tensor* w = pc.packable_weight(n, 1, 2);
  if (!w) return nullptr;
  const Tensor& b = *w;
  const Tensor f = to_float_tensor(b);
  const int64_t K = trans_b ? b.dims[1] : b.dims[0], N = trans_b ? b.dims[0] : b.dims[1];
  auto packed = std::make_shared<kernels::PackedB>(trans_b, K, N, f.values<float>(), b.dims[1]);
  PlanContext::release_packed(b);
  return packed;
}

// C[M,N] = op(A) * op(B) for double and integer types, in a wider accumulator (integers wrap
// like numpy's). Rows are split across threads.
template <typename T>
void product_loop(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C,
                  ThreadPool* pool) {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;
  // Integers go through int64 then uint64, so that the wrapping arithmetic is well defined.
  auto widen = [](T v) {
    if constexpr (std::is_floating_point_v<T>) return static_cast<double>(v);
    else return static_cast<uint64_t>(static_cast<int64_t>(v));
  };
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  split(pool, M, std::max<int64_t>(1, 4096 / std::max<int64_t>(N * K, 1)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = 0; n < N; ++n) {
        Acc s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += widen(trans_a ? A[k * lda + m] : A[m * lda + k]) * widen(trans_b ? B[n * ldb + k] : B[k * ldb + n]);
        C[m * N + n] = static_cast<T>(s);
      }
  });
}

// ---- MatMul --------------------------------------------------------------------------------

// MatMul operands as stacks of matrices: A [batch_a..., M, K] and B [batch_b..., K, N] (a
// 1-D A is one row, a 1-D B one column, dropped from the output again), with the batch dims
// broadcast numpy-style.
struct MatMulShape {
  int64_t M, N, K;
  std::vector<int64_t> out_dims;
  int64_t b_matrices;  // matrices in B; 1 means every product uses the same B
  std::vector<int64_t> a_index, b_index;  // per output matrix: which matrix of A and of B
};

// trans_a / trans_b: the operand's last two dims are swapped (FusedMatMul; not for 1-D ones).
MatMulShape matmul_shape(const Tensor& at, const Tensor& bt, bool trans_a = false, bool trans_b = false) {
  if (at.dims.empty() || bt.dims.empty())
    bad_input("MatMul inputs must have rank >= 1, got {} and {}", describe(at), describe(bt));
  std::vector<int64_t> a = at.dims, b = bt.dims;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  if (trans_a && at.dims.size() > 1) std::swap(a[a.size() - 2], a[a.size() - 1]);
  if (trans_b && bt.dims.size() > 1) std::swap(b[b.size() - 2], b[b.size() - 1]);
  MatMulShape s;
  s.M = a[a.size() - 2];
  s.K = a.back();
  s.N = b.back();
  if (b[b.size() - 2] != s.K)
    bad_input("MatMul inner dimensions differ: A is {} and B is {}{}", describe(at), describe(bt),
              trans_a || trans_b ? fmt::format(" (transA={}, transB={})", trans_a ? 1 : 0, trans_b ? 1 : 0) : "");
  const std::vector<int64_t> a_batch(a.begin(), a.end() - 2), b_batch(b.begin(), b.end() - 2);
  s.out_dims = broadcast_shapes({a_batch, b_batch});
  s.b_matrices = product(b_batch);
  std::array<std::vector<int64_t>, 2> strides = {broadcast_strides(a_batch, s.out_dims),
                                                 broadcast_strides(b_batch, s.out_dims)};
  for_each_broadcast<2>(s.out_dims, strides, [&](int64_t, const std::array<int64_t, 2>& off) {
    s.a_index.push_back(off[0]);
    s.b_index.push_back(off[1]);
  });
  if (at.dims.size() > 1) s.out_dims.push_back(s.M);
  if (bt.dims.size() > 1) s.out_dims.push_back(s.N);
  return s;
}

// Calls fn(i, pool) for every output matrix i: spread over the threads when there are many
// small products, else one after the other, each product using the threads itself.
void for_each_matrix(int64_t count, int64_t work_per_matrix, ThreadPool* pool,
                     const std::function<void(int64_t, ThreadPool*)>& fn) {
  const int64_t threads = pool->threads();
  if (count > 1 && threads > 1 && (count >= 4 * threads || work_per_matrix < (int64_t{1} << 20))) {
    pool->parallel_for(count, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) fn(i, nullptr);
    });
    return;
  }
  for (int64_t i = 0; i < count; ++i) fn(i, pool);
}

class MatMul : public Kernel {
 public:
  // fused: FusedMatMul's attributes (transA, transB, alpha); plain MatMul has none.
  MatMul(const ir::Node& n, const PlanContext& pc, bool fused = false)
      : trans_a_(fused && n.attr_int("transA", 0) != 0),
        trans_b_(fused && n.attr_int("transB", 0) != 0),
        alpha_(fused ? n.attr_float("alpha", 1.f) : 1.f),
        packed_b_(pack_constant_b(n, trans_b_, pc)) {
    if (fused && (n.attr_int("transBatchA", 0) != 0 || n.attr_int("transBatchB", 0) != 0))
      bad_input("FusedMatMul with transBatchA or transBatchB is not supported");
  }

  void run(OpContext& ctx) override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    if (a.dtype != b.dtype)
      bad_input("MatMul inputs have different types ({} and {})", ir::dtype_name(a.dtype), ir::dtype_name(b.dtype));
    const bool ta = trans_a_ && a.dims.size() > 1, tb = trans_b_ && b.dims.size() > 1;
    const MatMulShape s = matmul_shape(a, b, ta, tb);
    if (runs_on_sgemm(a.dtype)) {
      ctx.set_out(0, from_float_tensor(product_f32(a, b, s, ta, tb, ctx.pool), a.dtype));
      return;
    }
    Tensor& y = ctx.set_out(0, new_tensor(a.dtype, s.out_dims));
    dispatch<kFloats | kSigned | kUnsigned>(a.dtype, "MatMul", [&](auto tag) {
      using T = decltype(tag);
      const T* pa = a.values<T>();
      const T* pb = b.values<T>();
      T* py = y.mutable_values<T>();
      for_each_matrix(static_cast<int64_t>(s.a_index.size()), s.M * s.N * s.K, ctx.pool, [&](int64_t i, ThreadPool* p) {
        product_loop<T>(ta, tb, s.M, s.N, s.K, pa + s.a_index[i] * s.M * s.K, pb + s.b_index[i] * s.K * s.N,
                        py + i * s.M * s.N, p);
      });
      if (alpha_ != 1.f)
        for (int64_t i = 0; i < static_cast<int64_t>(y.numel()); ++i)
          py[i] = static_cast<T>(alpha_ * static_cast<double>(py[i]));
    });
  }

 private:
  // The product in float32 (16-bit float operands are widened first); ta / tb: A's / B's
  // matrices are stored transposed.
  Tensor product_f32(const Tensor& a, const Tensor& b, const MatMulShape& s, bool ta, bool tb, ThreadPool* pool) const {
    const Tensor af = to_float_tensor(a);
    Tensor y = new_tensor(DType::Float, s.out_dims);
    const float* pa = af.values<float>();
    float* py = y.mutable_values<float>();
    const int64_t matrices = static_cast<int64_t>(s.a_index.size());
    const int64_t lda = ta ? s.M : s.K, ldb = tb ? s.K : s.N;
    // One B for all products: the stack of A matrices is one tall [matrices * M, K] matrix
    // (A's matrices as stored, not transposed).
    const int64_t rows = matrices * s.M;
    if (packed_b_ && !ta) {  // (a 2-D B, so s.b_matrices == 1)
      kernels::sgemm_packed(false, rows, alpha_, pa, s.K, *packed_b_, 0.f, py, s.N, pool);
      return y;
    }
    if (packed_b_) {
      for_each_matrix(matrices, s.M * s.N * s.K, pool, [&](int64_t i, ThreadPool* p) {
        kernels::sgemm_packed(true, s.M, alpha_, pa + s.a_index[i] * s.M * s.K, lda, *packed_b_, 0.f,
                              py + i * s.M * s.N, s.N, p);
      });
      return y;
    }
    const Tensor bf = to_float_tensor(b);
    const float* pb = bf.values<float>();
    if (s.b_matrices == 1 && !ta) {
      kernels::sgemm(false, tb, rows, s.N, s.K, alpha_, pa, s.K, pb, ldb, 0.f, py, s.N, pool);
      return y;
    }
    for_each_matrix(matrices, s.M * s.N * s.K, pool, [&](int64_t i, ThreadPool* p) {
      kernels::sgemm(ta, tb, s.M, s.N, s.K, alpha_, pa + s.a_index[i] * s.M * s.K, lda, pb + s.b_index[i] * s.K * s.N,
                     ldb, 0.f, py + i * s.M * s.N, s.N, p);
    });
    return y;
  }

  bool trans_a_, trans_b_;
  float alpha_;
  std::shared_ptr<const kernels::PackedB> packed_b_;
};

// Whether `dims` broadcasts one-way to `out`: right-aligned, each dim is 1 or out's.
bool broadcasts_to(const std::vector<int64_t>& dims, const std::vector<int64_t>& out) {
  if (dims.size() > out.size()) return false;
  for (size_t i = 1; i <= dims.size(); ++i) {
    const int64_t d = dims[dims.size() - i];
    if (d != 1 && d != out[out.size() - i]) return false;
  }
  return true;
}

// ---- Gemm ----------------------------------------------------------------------------------

// Y = alpha * op(A) * op(B) + beta * C, C broadcast to [M, N] (optional since opset 11).
// Before opset 7, C broadcasts only with the attribute broadcast=1.
class Gemm : public Kernel {
 public:
  Gemm(const ir::Node& n, const PlanContext& pc, bool legacy_broadcast)
      : trans_a_(n.attr_int("transA", 0) != 0),
        trans_b_(n.attr_int("transB", 0) != 0),
        alpha_(n.attr_float("alpha", 1.f)),
        beta_(n.attr_float("beta", 1.f)),
        c_must_match_(legacy_broadcast && n.attr_int("broadcast", 0) == 0),
        packed_b_(pack_constant_b(n, trans_b_, pc)) {}

  void run(OpContext& ctx) override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    if (a.dims.size() != 2 || b.dims.size() != 2)
      bad_input("Gemm inputs A and B must be 2-D, got {} and {}", describe(a), describe(b));
    if (a.dtype != b.dtype)
      bad_input("Gemm inputs have different types ({} and {})", ir::dtype_name(a.dtype), ir::dtype_name(b.dtype));
    const int64_t M = trans_a_ ? a.dims[1] : a.dims[0], K = trans_a_ ? a.dims[0] : a.dims[1];
    const int64_t N = trans_b_ ? b.dims[0] : b.dims[1];
    if ((trans_b_ ? b.dims[1] : b.dims[0]) != K)
      bad_input("Gemm inner dimensions differ: A is {} (transA={}) and B is {} (transB={})", describe(a), trans_a_ ? 1 : 0,
                describe(b), trans_b_ ? 1 : 0);
    const Tensor* c = ctx.has_input(2) && beta_ != 0.f ? &ctx.in(2) : nullptr;
    if (c) check_c(*c, M, N);

    if (runs_on_sgemm(a.dtype)) {
      // Y starts as the broadcast C, which sgemm scales by beta and adds to.
      Tensor y = new_tensor(DType::Float, {M, N});
      if (c) broadcast_into<float>(to_float_tensor(*c), y);
      const Tensor af = to_float_tensor(a);
      const int64_t lda = a.dims[1];
      if (packed_b_) {
        kernels::sgemm_packed(trans_a_, M, alpha_, af.values<float>(), lda, *packed_b_, c ? beta_ : 0.f,
                              y.mutable_values<float>(), N, ctx.pool);
      } else {
        const Tensor bf = to_float_tensor(b);
        kernels::sgemm(trans_a_, trans_b_, M, N, K, alpha_, af.values<float>(), lda, bf.values<float>(), b.dims[1],
                       c ? beta_ : 0.f, y.mutable_values<float>(), N, ctx.pool);
      }
      ctx.set_out(0, from_float_tensor(y, a.dtype));
      return;
    }
    Tensor& y = ctx.set_out(0, new_tensor(a.dtype, {M, N}));
    dispatch<kFloats | kSigned | kUnsigned>(a.dtype, "Gemm", [&](auto tag) {
      using T = decltype(tag);
      T* py = y.mutable_values<T>();
      product_loop<T>(trans_a_, trans_b_, M, N, K, a.values<T>(), b.values<T>(), py, ctx.pool);
      if (alpha_ == 1.f && !c) return;
      // Y = alpha * Y + beta * C, in double (integer results are truncated back).
      Tensor bc = new_tensor(a.dtype, {M, N});
      if (c) broadcast_into<T>(*c, bc);
      const T* pc = bc.values<T>();
      for (int64_t i = 0; i < M * N; ++i)
        py[i] = static_cast<T>(alpha_ * static_cast<double>(py[i]) + (c ? beta_ * static_cast<double>(pc[i]) : 0.0));
    });
  }

 private:
  void check_c(const Tensor& c, int64_t M, int64_t N) const {
    const std::vector<int64_t> mn = {M, N};
    if (c_must_match_ ? c.dims != mn : !broadcasts_to(c.dims, mn))
      bad_input("Gemm input C is {}, which does not {} the output shape [{}, {}]", describe(c),
                c_must_match_ ? "match (broadcast=0)" : "broadcast to", M, N);
  }

  // Fills y [M, N] with c broadcast to it.
  template <typename T>
  static void broadcast_into(const Tensor& c, Tensor& y) {
    const T* pc = c.values<T>();
    T* py = y.mutable_values<T>();
    const std::array<std::vector<int64_t>, 1> strides = {broadcast_strides(c.dims, y.dims)};
    for_each_broadcast<1>(y.dims, strides, [&](int64_t o, const std::array<int64_t, 1>& off) { py[o] = pc[off[0]]; });
  }

  bool trans_a_, trans_b_;
  float alpha_, beta_;
  bool c_must_match_;
  std::shared_ptr<const kernels::PackedB> packed_b_;
};

}  // namespace
}  // namespace slmops::runtime::ops

namespace slmops::runtime {

void register_matmul_ops() {
  // MatMul-9 and -13 only add element types.
  register_kernel("", "MatMul", 1,
                  [](const ir::Node& n, const PlanContext& pc) { return std::make_unique<ops::MatMul>(n, pc); });
  register_kernel("com.microsoft", "FusedMatMul", 1,
                  [](const ir::Node& n, const PlanContext& pc) { return std::make_unique<ops::MatMul>(n, pc, true); });
  // Gemm-7 drops the broadcast attribute (C always broadcasts); -9, -11, -13 add types and
  // make C optional, which this kernel accepts in every version.
  for (int since : {1, 7})
    register_kernel("", "Gemm", since, [since](const ir::Node& n, const PlanContext& pc) {
      return std::make_unique<ops::Gemm>(n, pc, since < 7);
    });
}

}  // namespace slmops::runtime
