// SGEMM (runtime/kernels/gemm.h) against the plain reference loop: edge sizes around the
// register tile and cache blocks, transposes, alpha/beta, padded leading dimensions, one and
// two threads, the pre-packed B path, and every kernel set (portable, AVX2, AVX-512). Then the
// MatMul and Gemm ops against their definitions, on what the conformance data leaves out.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"
#include "runtime/kernels/conv.h"
#include "runtime/kernels/gemm.h"
#include "runtime/kernels/gemm_kernels.h"
#include "runtime/ops/common.h"
#include "runtime/thread_pool.h"

using namespace slmops::runtime;

namespace {

// sgemm rounds to float in its own summation order; the reference sums in double. The
// difference is at most about K * 2^-24 times the sum of |terms| (|alpha| * sum |a*b| +
// |beta * c|), in practice far less: 1e-5 of that sum passes every shape here and still
// catches any wrong or missing term.
constexpr float kRelTol = 1e-5f;

const std::vector<int64_t> kSizes = {1, 2, 3, 5, 7, 16, 17, 31, 64, 100, 257};

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// One product case: operands with leading dimensions padded by `pad` so that strides
// differ from the logical widths.
struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad = 0;

  int64_t lda() const { return (ta ? M : K) + pad; }
  int64_t ldb() const { return (tb ? K : N) + pad; }
  int64_t ldc() const { return N + pad; }
  std::vector<float> a() const { return random_floats((ta ? K : M) * lda(), 1); }
  std::vector<float> b() const { return random_floats((tb ? N : K) * ldb(), 2); }
  std::vector<float> c() const { return random_floats(M * ldc(), 3); }

  // The reference result and, per element, the scale of its terms (for the tolerance).
  void reference(std::vector<float>& c, std::vector<float>& scale) const {
    const auto va = a(), vb = b();
    c = this->c();
    std::vector<float> abs_a(va.size()), abs_b(vb.size());
    std::transform(va.begin(), va.end(), abs_a.begin(), [](float x) { return std::fabs(x); });
    std::transform(vb.begin(), vb.end(), abs_b.begin(), [](float x) { return std::fabs(x); });
    scale = this->c();
    for (auto& s : scale) s = std::fabs(beta * s);
    kernels::sgemm_reference(ta, tb, M, N, K, std::fabs(alpha), abs_a.data(), lda(), abs_b.data(), ldb(), 1.f,
                             scale.data(), ldc());
    kernels::sgemm_reference(ta, tb, M, N, K, alpha, va.data(), lda(), vb.data(), ldb(), beta, c.data(), ldc());
  }

  std::string name() const {
    return "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " M=" + std::to_string(M) +
           " N=" + std::to_string(N) + " K=" + std::to_string(K) + " alpha=" + std::to_string(alpha) +
           " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad);
  }
};

std::vector<float> run_sgemm(const Case& cs, ThreadPool* pool) {
  const auto a = cs.a(), b = cs.b();
  auto c = cs.c();
  kernels::sgemm(cs.ta, cs.tb, cs.M, cs.N, cs.K, cs.alpha, a.data(), cs.lda(), b.data(), cs.ldb(), cs.beta, c.data(),
                 cs.ldc(), pool);
  return c;
}

std::vector<float> run_packed(const Case& cs, ThreadPool* pool) {
  const auto a = cs.a(), b = cs.b();
  auto c = cs.c();
  const kernels::PackedB packed(cs.tb, cs.K, cs.N, b.data(), cs.ldb());
  kernels::sgemm_packed(cs.ta, cs.M, cs.alpha, a.data(), cs.lda(), packed, cs.beta, c.data(), cs.ldc(), pool);
  return c;
}

std::vector<float> run_packed_ab(const Case& cs, ThreadPool* pool) {
  const auto a = cs.a(), b = cs.b();
  auto c = cs.c();
  const kernels::PackedA pa(cs.ta, cs.M, cs.K, a.data(), cs.lda());
  const kernels::PackedB pb(cs.tb, cs.K, cs.N, b.data(), cs.ldb());
  kernels::sgemm_packed_ab(pa, pb, cs.alpha, cs.beta, c.data(), cs.ldc(), pool);
  return c;
}

// Runs sgemm and sgemm_packed on 1 and 2 threads and compares the valid part of C with the
// reference; padding columns must be untouched.
void check_case(const Case& cs, ThreadPool& two) {
  std::vector<float> want, scale;
  cs.reference(want, scale);
  const auto original = cs.c();
  const std::pair<const char*, std::vector<float>> runs[] = {
      {"sgemm, 1 thread", run_sgemm(cs, nullptr)},
      {"sgemm, 2 threads", run_sgemm(cs, &two)},
      {"sgemm_packed, 1 thread", run_packed(cs, nullptr)},
      {"sgemm_packed, 2 threads", run_packed(cs, &two)},
      {"sgemm_packed_ab, 1 thread", run_packed_ab(cs, nullptr)},
      {"sgemm_packed_ab, 2 threads", run_packed_ab(cs, &two)},
  };
  for (const auto& [what, got] : runs) {
    int bad = 0;
    for (int64_t m = 0; m < cs.M && bad < 3; ++m)
      for (int64_t n = 0; n < cs.ldc() && bad < 3; ++n) {
        const int64_t i = m * cs.ldc() + n;
        const float expect = n < cs.N ? want[i] : original[i];
        const float tol = n < cs.N ? kRelTol * std::max(scale[i], 1e-3f) : 0.f;
        if (std::fabs(got[i] - expect) > tol) {
          ++bad;
          FAIL_CHECK(what << " " << cs.name() << ": C[" << m << "," << n << "] = " << got[i] << ", expected "
                          << expect);
        }
      }
  }
}

// Every size combination, with the transposes and scalars varied along.
std::vector<Case> size_sweep() {
  std::vector<Case> cases;
  int i = 0;
  for (int64_t M : kSizes)
    for (int64_t N : kSizes)
      for (int64_t K : kSizes) {
        const float alphas[] = {1.f, 0.5f, -2.f};
        const float betas[] = {0.f, 1.f, 0.25f};
        cases.push_back({(i & 1) != 0, (i & 2) != 0, M, N, K, alphas[i % 3], betas[(i / 3) % 3], (i % 5 == 0) ? 3 : 0});
        ++i;
      }
  return cases;
}

// Shapes larger than the cache blocks (several depth, row and column blocks).
std::vector<Case> large_cases() {
  std::vector<Case> cases;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      cases.push_back({ta, tb, 150, 3100, 260, 1.f, 0.5f});
      cases.push_back({ta, tb, 1, 5000, 700, 1.f, 0.f});
      cases.push_back({ta, tb, 700, 1, 600, 2.f, 1.f, 5});
      cases.push_back({ta, tb, 3, 1000, 300, 1.f, 0.f, 1});
    }
  return cases;
}

}  // namespace

TEST_CASE("sgemm matches the reference on edge sizes") {
  ThreadPool two(2);
  for (const Case& cs : size_sweep()) check_case(cs, two);
}

TEST_CASE("sgemm on shapes spanning several cache blocks") {
  ThreadPool two(2);
  for (const Case& cs : large_cases()) check_case(cs, two);
}

TEST_CASE("sgemm degenerate products") {
  SUBCASE("K == 0 scales C by beta") {
    std::vector<float> c = {1, 2, 3, 4};
    kernels::sgemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2, nullptr);
    CHECK(c == std::vector<float>{0.5f, 1, 1.5f, 2});
  }
  SUBCASE("beta == 0 ignores NaN in C") {
    std::vector<float> a = {1, 2}, b = {3, 4}, c = {NAN};
    kernels::sgemm(false, false, 1, 1, 2, 1.f, a.data(), 2, b.data(), 1, 0.f, c.data(), 1, nullptr);
    CHECK(c[0] == 11.f);
    c = {NAN, NAN, NAN, NAN};
    kernels::sgemm(false, false, 2, 2, 1, 1.f, a.data(), 1, b.data(), 2, 0.f, c.data(), 2, nullptr);
    CHECK(c == std::vector<float>{3, 4, 6, 8});
  }
}

TEST_CASE("portable, FMA and AVX-512 kernel sets agree") {
  using namespace kernels::detail;
  std::vector<const GemmKernels*> sets = {&portable_kernels()};
  if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    sets.push_back(&fma_kernels());
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")) sets.push_back(&avx512_kernels());
  }
  const int64_t K = 37;
  // Packed panels must be 32-byte aligned (as the driver's buffers are).
  alignas(64) float a[K * kMaxMR], b[K * kNR];
  const auto ra = random_floats(K * kMaxMR, 4), rb = random_floats(K * kNR, 5), x = random_floats(K, 6);
  std::copy(ra.begin(), ra.end(), a);
  std::copy(rb.begin(), rb.end(), b);
  for (const GemmKernels* kern : sets) {
    const int MR = kern->mr;  // this set's panel height: a[k * MR + r]
    REQUIRE(MR <= kMaxMR);
    // micro: a partial (MR - 1) x 13 tile with beta, in a C of 20 columns, and a full one.
    for (const auto& [mr, nr] : {std::pair{MR - 1, 13}, std::pair{MR, int{kNR}}}) {
      std::vector<float> c(MR * 20, 1.f), want(MR * 20, 1.f);
      kern->micro(K, a, b, c.data(), 20, 2.f, 0.5f, mr, nr);
      for (int r = 0; r < mr; ++r)
        for (int j = 0; j < nr; ++j) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k) s += double(a[k * MR + r]) * b[k * kNR + j];
          want[r * 20 + j] = static_cast<float>(2 * s + 0.5);
        }
      for (size_t i = 0; i < c.size(); ++i) CHECK(c[i] == doctest::Approx(want[i]).epsilon(kRelTol * 10));
    }

    // micro_wide: two strips side by side (b2 follows b), every row count, with and
    // without beta, in a C of 40 columns; columns past 32 must stay untouched.
    if (kern->micro_wide) {
      alignas(64) float b2[2 * K * kNR];
      const auto rb2 = random_floats(2 * K * kNR, 7);
      std::copy(rb2.begin(), rb2.end(), b2);
      for (int mr = 1; mr <= MR; ++mr)
        for (float beta : {0.f, 0.5f}) {
          std::vector<float> cw(MR * 40, 1.f);
          kern->micro_wide(K, a, b2, cw.data(), 40, 2.f, beta, mr);
          for (int r = 0; r < MR; ++r)
            for (int j = 0; j < 40; ++j) {
              double want_w = 1;
              if (r < mr && j < 2 * kNR) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k) s += double(a[k * MR + r]) * b2[(j / kNR) * K * kNR + k * kNR + j % kNR];
                want_w = 2 * s + beta;
              }
              CHECK(cw[r * 40 + j] == doctest::Approx(want_w).epsilon(kRelTol * 10));
            }
        }
    }

    // micro_direct / micro_wide_direct read A's rows in place (row r at a + r * lda): the same
    // bits as from the packed panel, every row count, partial and full strips, with beta.
    if (kern->micro_direct) {
      const int64_t lda = K + 5;
      alignas(64) float b2[2 * K * kNR];
      const auto rb2 = random_floats(2 * K * kNR, 8);
      std::copy(rb2.begin(), rb2.end(), b2);
      int64_t differing = 0;
      for (int mr = 1; mr <= MR; ++mr) {
        // Exactly mr rows (the last without its padding), NaN in the padding: a kernel that
        // reads a row past mr or a padding value fails (ASan in the sanitize build, NaN here).
        std::vector<float> rows((mr - 1) * lda + K, std::nanf(""));
        for (int r = 0; r < mr; ++r)
          for (int64_t k = 0; k < K; ++k) rows[r * lda + k] = a[k * MR + r];
        for (int nr : {5, int{kNR}})
          for (float beta : {0.f, 0.5f}) {
            std::vector<float> packed(MR * 40, 1.f), direct(MR * 40, 1.f);
            kern->micro(K, a, b, packed.data(), 40, 2.f, beta, mr, nr);
            kern->micro_direct(K, rows.data(), lda, b, direct.data(), 40, 2.f, beta, mr, nr);
            differing += packed != direct;
            if (!kern->micro_wide_direct) continue;
            REQUIRE(static_cast<bool>(kern->micro_wide));
            std::vector<float> packed_w(MR * 40, 1.f), direct_w(MR * 40, 1.f);
            kern->micro_wide(K, a, b2, packed_w.data(), 40, 2.f, beta, mr);
            kern->micro_wide_direct(K, rows.data(), lda, b2, direct_w.data(), 40, 2.f, beta, mr);
            differing += packed_w != direct_w;
          }
      }
      CHECK(differing == 0);
    }

    // The GEMV kernels with b seen as W: 15 rows of K for gemv_dot (ldw = K); K rows of 15
    // for gemv_axpy (ldw = kNR), which is also what gemv_strips sums over all 16 columns
    // when b is one strip of K rows.
    const int n = kNR - 1;
    std::vector<float> dot(n), axpy(n), strip(kNR, 0.f);
    kern->gemv_dot(K, x.data(), b, K, n, dot.data());
    kern->gemv_axpy(K, x.data(), b, kNR, n, axpy.data());
    kern->gemv_strips(K, x.data(), b, 1, strip.data());
    for (int j = 0; j < kNR; ++j) {
      double want_dot = 0, want_col = 0;
      for (int64_t k = 0; k < K; ++k) {
        want_dot += double(x[k]) * b[j * K + k];
        want_col += double(x[k]) * b[k * kNR + j];
      }
      if (j < n) {
        CHECK(dot[j] == doctest::Approx(want_dot).epsilon(kRelTol * 10));
        CHECK(axpy[j] == doctest::Approx(want_col).epsilon(kRelTol * 10));
      }
      CHECK(strip[j] == doctest::Approx(want_col).epsilon(kRelTol * 10));
    }
    // Five strips of 7 rows (a group of four and one more), added to y.
    const int64_t kc = 7, count = 5;
    std::vector<float> five(count * kNR, 1.f);
    kern->gemv_strips(kc, x.data(), b, count, five.data());
    for (int64_t i = 0; i < count * kNR; ++i) {
      double want = 1;
      for (int64_t k = 0; k < kc; ++k) want += double(x[k]) * b[((i / kNR) * kc + k) * kNR + i % kNR];
      CHECK(five[i] == doctest::Approx(want).epsilon(kRelTol * 10));
    }
  }
}

// ---- the MatMul and Gemm ops (runtime/ops/matmul.cpp) ---------------------------------------

namespace {

using slmops::ir::DType;
using slmops::ir::Tensor;

// Small integers in [-5, 5] ([0, 10] for unsigned types), exact in every element type.
std::vector<double> small_values(int64_t n, int seed, DType dt = DType::Float) {
  const double low = slmops::ir::traits(dt).is_signed || slmops::ir::traits(dt).is_float ? -5 : 0;
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>((i * 7 + seed * 3) % 11) + low;
  return v;
}

Tensor make_tensor(const std::string& name, DType dt, const std::vector<int64_t>& dims, const std::vector<double>& v) {
  Tensor t = ops::tensor_from_doubles(dt, dims, v);
  t.name = name;
  return t;
}

// Attributes are move-only: collect them without an initializer list.
template <typename... A>
std::vector<slmops::ir::Attribute> attrs(A&&... a) {
  std::vector<slmops::ir::Attribute> v;
  (v.push_back(std::forward<A>(a)), ...);
  return v;
}

// One node in a model of the given opset. Inputs flagged constant become initializers (so
// that B gets pre-packed), the others are fed.
Tensor run_node(const std::string& op, int opset, const std::vector<std::pair<Tensor, bool>>& inputs,
                std::vector<slmops::ir::Attribute> attrs = {}, int threads = 2) {
  slmops::ir::Model m;
  m.ir_version = 8;
  m.opsets = {{"", opset}};
  m.graph = std::make_unique<slmops::ir::Graph>();
  std::vector<slmops::ir::Value*> ins;
  std::vector<RValue> feeds;
  for (const auto& [t, constant] : inputs) {
    if (constant) {
      ins.push_back(m.graph->add_initializer(t));
      continue;
    }
    slmops::ir::TensorType type;
    type.is_tensor = true;
    type.elem_code = static_cast<int32_t>(t.dtype);
    ins.push_back(m.graph->add_input(t.name, type));
    feeds.push_back(RValue::of(t));
  }
  slmops::ir::Node* n = m.graph->add_node(op, ins, {"y"}, std::move(attrs));
  m.graph->add_output(n->outputs[0]);
  Session s(m, threads);
  return s.run(std::move(feeds))[0].tensor;
}

// numpy matmul by its definition, in double: 1-D operands promoted, batch dims broadcast.
std::pair<std::vector<int64_t>, std::vector<double>> matmul_by_definition(std::vector<int64_t> ad,
                                                                        const std::vector<double>& a,
                                                                        std::vector<int64_t> bd,
                                                                        const std::vector<double>& b) {
  const bool a_vec = ad.size() == 1, b_vec = bd.size() == 1;
  if (a_vec) ad.insert(ad.begin(), 1);
  if (b_vec) bd.push_back(1);
  const size_t rank = std::max(ad.size(), bd.size());
  ad.insert(ad.begin(), rank - ad.size(), 1);
  bd.insert(bd.begin(), rank - bd.size(), 1);
  const int64_t M = ad[rank - 2], K = ad[rank - 1], N = bd[rank - 1];
  std::vector<int64_t> batch(rank - 2);
  int64_t count = 1;
  for (size_t d = 0; d + 2 < rank; ++d) count *= batch[d] = std::max(ad[d], bd[d]);
  std::vector<double> out;
  for (int64_t o = 0; o < count; ++o) {
    // The matrix of A and of B that output matrix o reads (index 0 along broadcast dims).
    int64_t rest = o, a_mat = 0, b_mat = 0, a_scale = 1, b_scale = 1;
    for (size_t d = batch.size(); d-- > 0;) {
      const int64_t i = rest % batch[d];
      rest /= batch[d];
      a_mat += (ad[d] == 1 ? 0 : i) * a_scale;
      b_mat += (bd[d] == 1 ? 0 : i) * b_scale;
      a_scale *= ad[d];
      b_scale *= bd[d];
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += a[(a_mat * M + m) * K + k] * b[(b_mat * K + k) * N + n];
        out.push_back(s);
      }
  }
  std::vector<int64_t> dims = batch;
  if (!a_vec) dims.push_back(M);
  if (!b_vec) dims.push_back(N);
  return {dims, out};
}

}  // namespace

TEST_CASE("MatMul: 1-D operands, broadcast batch dims, element types, constant B") {
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{3}, {3}},       {{3}, {3, 4}},       {{2, 3}, {3}},          {{5, 2, 3}, {3, 4}},
      {{2, 3}, {4, 3, 5}}, {{2, 1, 2, 3}, {3, 3, 4}}, {{1, 7, 20}, {20, 33}}, {{4, 2, 3}, {3}},
  };
  for (const auto& [ad, bd] : shapes)
    for (DType dt : {DType::Float, DType::Float16, DType::Double, DType::Int32, DType::Int64, DType::UInt32})
      for (bool constant_b : {false, true}) {
        const auto a = small_values(slmops::ir::element_count(ad), 1, dt);
        const auto b = small_values(slmops::ir::element_count(bd), 2, dt);
        const auto [dims, want] = matmul_by_definition(ad, a, bd, b);
        const Tensor y = run_node("MatMul", 13, {{make_tensor("a", dt, ad, a), false}, {make_tensor("b", dt, bd, b), constant_b}});
        INFO("MatMul ", slmops::ir::dtype_name(dt), " constant_b=", constant_b, " A rank ", ad.size(), " B rank ", bd.size());
        CHECK(y.dtype == dt);
        CHECK(y.dims == dims);
        CHECK(ops::to_doubles(y) == want);
      }
}

TEST_CASE("Gemm: transposes, alpha/beta, C broadcast, constant B, legacy broadcast attribute") {
  using slmops::ir::Attribute;
  const int64_t M = 4, N = 5, K = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const std::vector<int64_t>& cd : std::vector<std::vector<int64_t>>{{M, N}, {N}, {M, 1}, {1}, {}})
        for (DType dt : {DType::Float, DType::Float16, DType::Double, DType::Int64})
          for (bool constant_b : {false, true}) {
            const std::vector<int64_t> ad = ta ? std::vector<int64_t>{K, M} : std::vector<int64_t>{M, K};
            const std::vector<int64_t> bd = tb ? std::vector<int64_t>{N, K} : std::vector<int64_t>{K, N};
            const auto a = small_values(M * K, 3), b = small_values(K * N, 4), c = small_values(slmops::ir::element_count(cd), 5);
            const double alpha = 2, beta = 3;
            std::vector<double> want(M * N);
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k) s += (ta ? a[k * M + m] : a[m * K + k]) * (tb ? b[n * K + k] : b[k * N + n]);
                // C broadcast: index by the dims it has, right-aligned.
                const int64_t ci = cd.size() == 2 ? (cd[0] == 1 ? 0 : m) * cd[1] + (cd[1] == 1 ? 0 : n)
                                   : cd.size() == 1 && cd[0] == N ? n : 0;
                want[m * N + n] = alpha * s + beta * c[ci];
              }
            const Tensor y = run_node("Gemm", 13,
                                      {{make_tensor("a", dt, ad, a), false},
                                       {make_tensor("b", dt, bd, b), constant_b},
                                       {make_tensor("c", dt, cd, c), false}},
                                      attrs(Attribute::make_int("transA", ta), Attribute::make_int("transB", tb),
                                            Attribute::make_float("alpha", 2.f), Attribute::make_float("beta", 3.f)));
            INFO("Gemm ", slmops::ir::dtype_name(dt), " transA=", ta, " transB=", tb, " C rank ", cd.size(),
                 " constant_b=", constant_b);
            CHECK(y.dims == std::vector<int64_t>{M, N});
            CHECK(ops::to_doubles(y) == want);
          }

  // Before opset 7, C must have the output's shape unless broadcast=1.
  const Tensor a = make_tensor("a", DType::Float, {2, 3}, small_values(6, 1));
  const Tensor b = make_tensor("b", DType::Float, {3, 2}, small_values(6, 2));
  const Tensor c = make_tensor("c", DType::Float, {2}, small_values(2, 3));
  CHECK_THROWS_WITH(run_node("Gemm", 6, {{a, false}, {b, false}, {c, false}}),
                    doctest::Contains("does not match (broadcast=0)"));
  CHECK(run_node("Gemm", 6, {{a, false}, {b, false}, {c, false}}, attrs(slmops::ir::Attribute::make_int("broadcast", 1)))
            .dims == std::vector<int64_t>{2, 2});
  CHECK_THROWS_WITH(run_node("Gemm", 13, {{a, false}, {a, false}}), doctest::Contains("inner dimensions differ"));
}

TEST_CASE("Im2colStrips equals im2col in PackedB's strip layout") {
  using kernels::WindowShape;
  struct Geo {
    int64_t C, H, W, KH, KW, dil, pad_top, pad_left;
  };
  // Stride 1, output rows as wide as the input: 3x3 "same" (the digits CNN), 5x5, a dilated
  // 3x3, an asymmetric pad (all padding after the input), 1x3 on a taller image, 1x1.
  const std::vector<Geo> geos = {{16, 8, 8, 3, 3, 1, 1, 1}, {3, 4, 8, 5, 5, 1, 2, 2}, {2, 8, 4, 3, 3, 2, 2, 2},
                                 {2, 4, 4, 3, 3, 1, 0, 0},  {1, 16, 2, 1, 3, 1, 0, 1}, {5, 4, 4, 1, 1, 1, 0, 0}};
  for (const Geo& g : geos) {
    WindowShape s;
    s.in = {g.H, g.W};
    s.kernel = {g.KH, g.KW};
    s.strides = {1, 1};
    s.dilations = {g.dil, g.dil};
    s.pad_begin = {g.pad_top, g.pad_left};
    const int64_t extent_y = (g.KH - 1) * g.dil, extent_x = (g.KW - 1) * g.dil;
    s.pad_end = {extent_y - g.pad_top, extent_x - g.pad_left};
    s.out = {g.H, g.W};  // in + pads - extent
    CAPTURE(g.C);
    CAPTURE(g.H);
    CAPTURE(g.KH);
    CAPTURE(g.dil);
    REQUIRE(kernels::Im2colStrips::supported(s));
    const kernels::Im2colStrips strips_of(s);
    const int64_t K = g.C * s.kernel_size(), P = s.out_size();
    const auto x = random_floats(g.C * g.H * g.W, 11);
    std::vector<float> col(K * P);
    kernels::im2col(x.data(), s, 0, g.C, 0, P, col.data(), P);
    for (bool avx512 : {false, true}) {
      std::vector<float> strips(K * P, -7.f);
      strips_of.run(x.data(), g.C, strips.data(), 0, avx512);
      int64_t wrong = 0;
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < P; ++j) wrong += strips[(j / 16) * K * 16 + k * 16 + j % 16] != col[k * P + j];
      CHECK(wrong == 0);
    }
  }
  WindowShape strided;
  strided.in = {8, 8};
  strided.out = {4, 4};
  strided.kernel = {3, 3};
  strided.strides = {2, 2};
  strided.dilations = {1, 1};
  strided.pad_begin = {1, 1};
  strided.pad_end = {0, 0};
  CHECK_FALSE(kernels::Im2colStrips::supported(strided));
}
