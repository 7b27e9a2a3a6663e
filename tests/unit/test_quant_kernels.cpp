// Quantized kernels against their reference loops: the integer GEMM (runtime/kernels/qgemm.h)
// bit for bit on every kernel set this CPU runs, with all four signedness combinations, per
// tensor / per channel zero points, edge sizes around the 4x16 tile and the depth block, one
// and two threads; and the MatMulNBits kernels (runtime/kernels/nbits.h) within float
// tolerance, for 2/4/8 bits, every block size, with and without zero points, accuracy level 0
// (float) and 4 (int8 activations, exact integer dot products). Then a few quantization ops
// through the executor (rounding, int4 blocks, MatMulNBits against DequantizeLinear + MatMul).
// Equivalence with ONNX Runtime is tested in tests/interop/quant. Benchmarks (skipped by
// default): slmops_tests --test-suite=bench --no-skip.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"
#include "runtime/kernels/nbits.h"
#include "runtime/kernels/qdq.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/ops/quant_common.h"
#include "runtime/thread_pool.h"

using namespace slmops::runtime;
using namespace slmops::runtime::kernels;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(0, 255);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(dist(gen));
  return v;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

std::vector<QGemmIsa> isas() {
  std::vector<QGemmIsa> v = {QGemmIsa::Scalar};
  if (qdetail::cpu_has_avx2()) v.push_back(QGemmIsa::Avx2);
  if (qdetail::cpu_has_vnni() && qdetail::vnni_micro()) v.push_back(QGemmIsa::Vnni);
  return v;
}

}  // namespace

TEST_CASE("qgemm matches the reference bit for bit") {
  ThreadPool pool2(2);
  const std::vector<int64_t> ms = {1, 2, 3, 4, 5, 9, 33};
  const std::vector<int64_t> ns = {1, 7, 16, 17, 40, 64, 80, 130};  // 64 and up: the 4-panel VNNI tile
  const std::vector<int64_t> ks = {1, 3, 4, 5, 63, 300, 1030};
  uint32_t seed = 1;
  int cases = 0;
  for (QGemmIsa isa : isas()) {
    for (int signs = 0; signs < 4; ++signs) {
      const bool as = signs & 1, bs = signs & 2;
      for (int64_t M : ms)
        for (int64_t N : ns)
          for (int64_t K : ks) {
            if (M * N * K > 400000 && M > 5) continue;
            const int64_t lda = K + 3, ldb = N + 2, ldc = N + 1;
            auto A = random_bytes(M * lda, seed++);
            auto B = random_bytes(K * ldb, seed++);
            auto zpa = random_bytes(M, seed++);
            auto zpb = random_bytes(N, seed++);
            std::vector<int32_t> za(M), zb(N);
            for (int64_t i = 0; i < M; ++i) za[i] = as ? static_cast<int8_t>(zpa[i]) : zpa[i];
            for (int64_t i = 0; i < N; ++i) zb[i] = bs ? static_cast<int8_t>(zpb[i]) : zpb[i];
            const int mode = static_cast<int>((M + N + K) % 3);  // none, per tensor, per channel
            QZeroPoints qa, qb;
            if (mode == 1) qa = {za.data(), false}, qb = {zb.data(), false};
            if (mode == 2) qa = {za.data(), true}, qb = {zb.data(), true};
            std::vector<int32_t> want(M * ldc, 7), got(M * ldc, 7);
            qgemm_reference(M, N, K, A.data(), lda, as, qa, B.data(), ldb, bs, qb, want.data(), ldc);
            ThreadPool* pool = (M * N * K) % 2 ? &pool2 : nullptr;
            ++cases;
            qgemm(M, N, K, A.data(), lda, as, qa, B.data(), ldb, bs, qb, got.data(), ldc, pool, isa);
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n)
                if (got[m * ldc + n] != want[m * ldc + n]) {
                  FAIL_CHECK("isa " << qgemm_isa_name(isa) << " signs " << signs << " M " << M << " N " << N
                                    << " K " << K << " at " << m << "," << n << ": " << got[m * ldc + n]
                                    << " != " << want[m * ldc + n]);
                  goto next;
                }
          next:;
          }
    }
  }
  CHECK(cases >= 500);
}

TEST_CASE("qgemm: extreme values do not saturate (255 x -128 pairs)") {
  const int64_t M = 5, N = 19, K = 1000;
  std::vector<uint8_t> A(M * K, 255), B(K * N, 0x80);  // u8 255 x s8 -128
  for (QGemmIsa isa : isas()) {
    std::vector<int32_t> want(M * N), got(M * N);
    qgemm_reference(M, N, K, A.data(), K, false, {}, B.data(), N, true, {}, want.data(), N);
    qgemm(M, N, K, A.data(), K, false, {}, B.data(), N, true, {}, got.data(), N, nullptr, isa);
    CHECK(want[0] == 255 * -128 * K);
    CHECK(got == want);
  }
}

TEST_CASE("qgemm with a transposed pre-packed B") {
  const int64_t M = 6, N = 21, K = 37;
  auto A = random_bytes(M * K, 11);
  auto Bt = random_bytes(N * K, 12);  // [N, K]
  std::vector<uint8_t> B(K * N);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) B[k * N + n] = Bt[n * K + k];
  int32_t za = 3, zb = -5;
  for (QGemmIsa isa : isas()) {
    QPackedB packed(K, N, Bt.data(), K, true, true, isa);
    std::vector<int32_t> want(M * N), got(M * N);
    qgemm_reference(M, N, K, A.data(), K, false, {&za, false}, B.data(), N, true, {&zb, false}, want.data(), N);
    qgemm_packed(M, A.data(), K, false, {&za, false}, packed, {&zb, false}, got.data(), N, nullptr);
    CHECK(got == want);
  }
}

namespace {

// Random MatMulNBits weights in ONNX Runtime's layout.
struct NBitsCase {
  int64_t N, K, bits, bs;
  int zp_kind;  // 0 none, 1 packed uint8, 2 float
  std::vector<uint8_t> B, zp8;
  std::vector<float> scales, zpf;
  NBitsSource src() const {
    NBitsSource s;
    s.N = N, s.K = K, s.bits = bits, s.block_size = bs;
    s.B = B.data();
    s.scales = scales.data();
    if (zp_kind == 1) s.zp_packed = zp8.data();
    if (zp_kind == 2) s.zp_float = zpf.data();
    return s;
  }
  NBitsCase(int64_t n, int64_t k, int64_t b, int64_t block, int zk, uint32_t seed)
      : N(n), K(k), bits(b), bs(block), zp_kind(zk) {
    const int64_t kb = (K + bs - 1) / bs;
    B = random_bytes(N * kb * bs * bits / 8, seed);
    scales = random_floats(N * kb, seed + 1, 0.01f, 0.1f);
    zp8 = random_bytes(N * ((kb * bits + 7) / 8), seed + 2);
    zpf = random_floats(N * kb, seed + 3, 0.f, float(1 << bits));
  }
};

// |fast - reference| against the size of the terms: sum over k of |a_k| * max|w| (bounded
// by the weight range), times a K-proportional epsilon.
void check_nbits(const NBitsCase& c, int64_t M, NBitsMode mode, bool avx2, ThreadPool* pool, bool avx512 = false) {
  auto A = random_floats(M * c.K, 77 + M, -1.f, 1.f);
  auto bias = random_floats(c.N, 78);
  NBitsPacked W(c.src(), mode, avx2, avx512);
  std::vector<float> got(M * c.N), want(M * c.N);
  nbits_gemm(M, A.data(), c.K, W, bias.data(), got.data(), c.N, pool);
  nbits_gemm_reference(M, A.data(), c.K, c.src(), mode, bias.data(), want.data(), c.N);
  double worst = 0;
  for (int64_t m = 0; m < M; ++m) {
    double asum = 0;
    for (int64_t k = 0; k < c.K; ++k) asum += std::fabs(A[m * c.K + k]);
    const double scale = asum * 0.1 * (1 << c.bits) + 1;
    for (int64_t n = 0; n < c.N; ++n)
      worst = std::max(worst, std::fabs(got[m * c.N + n] - want[m * c.N + n]) / scale);
  }
  INFO("N " << c.N << " K " << c.K << " bits " << c.bits << " bs " << c.bs << " zp " << c.zp_kind << " M " << M
            << " mode " << int(mode) << " avx2 " << avx2 << " avx512 " << W.avx512 << " vnni " << W.vnni);
  CHECK(worst < 2e-6);
}

}  // namespace

TEST_CASE("MatMulNBits kernels match the reference") {
  ThreadPool pool2(2);
  uint32_t seed = 100;
  for (int isa : {0, 1, 2}) {  // portable, AVX2, AVX2 + the AVX-512 GEMV and VNNI int8 kernels
    const bool avx2 = isa >= 1, avx512 = isa == 2;
    if (avx2 && !nbits_cpu_avx2()) continue;
    if (avx512 && !nbits_cpu_avx512()) continue;
    for (int64_t bits : {2, 4, 8})
      for (int64_t bs : {16, 32, 64, 128, 256})
        for (int zk : {0, 1, 2})
          for (NBitsMode mode : {NBitsMode::Float, NBitsMode::Int8}) {
            if (mode == NBitsMode::Int8 && zk == 2) continue;  // float zero points compute in float
            const int64_t K = (seed % 3 == 0) ? 300 : (seed % 3 == 1 ? 512 : 37);
            const int64_t N = (seed % 2) ? 21 : 8;
            NBitsCase c(N, K, bits, bs, zk, seed++);
            for (int64_t M : {1, 2, 3, 5})
              check_nbits(c, M, mode, avx2, M == 1 ? &pool2 : nullptr, avx512);
          }
  }
}

// Prefill: W dequantized tile by tile into the fp32 packed GEMM (K over several 256-deep
// tiles and N over several column tiles with a ragged last strip; 19 strips are 8 tiles of
// 2-3 strips on two threads), one and two threads.
TEST_CASE("MatMulNBits dequantize-then-GEMM matches the float reference") {
  ThreadPool pool2(2);
  uint32_t seed = 900;
  for (int64_t bits : {2, 4, 8})
    for (int64_t bs : {16, 32, 128})
      for (int zk : {0, 1, 2}) {
        const int64_t K = seed % 2 ? 600 : 97, N = seed % 3 ? 300 : 21, M = 17;
        NBitsCase c(N, K, bits, bs, zk, seed++);
        auto A = random_floats(M * K, 55, -1.f, 1.f);
        auto bias = random_floats(N, 56);
        std::vector<float> want(M * N);
        nbits_gemm_reference(M, A.data(), K, c.src(), NBitsMode::Float, bias.data(), want.data(), N);
        std::vector<float> one_thread;
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
          std::vector<float> got(M * N, -1.f);
          nbits_gemm_dequant(M, A.data(), K, c.src(), bias.data(), got.data(), N, pool);
          // Threads split the columns only: every sum adds in the same order, so the bytes agree.
          if (pool)
            CHECK(got == one_thread);
          else
            one_thread = got;
          double worst = 0;
          for (int64_t m = 0; m < M; ++m) {
            double asum = 0;
            for (int64_t k = 0; k < K; ++k) asum += std::fabs(A[m * K + k]);
            const double scale = asum * 0.1 * (1 << bits) + 1;
            for (int64_t n = 0; n < N; ++n)
              worst = std::max(worst, std::fabs(got[m * N + n] - want[m * N + n]) / scale);
          }
          INFO("bits " << bits << " bs " << bs << " zp " << zk << " K " << K << " N " << N);
          CHECK(worst < 2e-6);
        }
      }
}

// Int8 mode (accuracy_level 4) with many rows: the register-tiled prefill kernel where the CPU
// has AVX512-VNNI (32-column tiles, ragged N), else the 4-row kernel; against the reference.
TEST_CASE("MatMulNBits int8 mode with many rows matches the reference") {
  ThreadPool pool2(2);
  uint32_t seed = 950;
  for (int64_t bs : {16, 32, 64, 128})
    for (int zk : {0, 1}) {
      NBitsCase c(seed % 2 ? 70 : 33, seed % 3 ? 256 : 100, 4, bs, zk, seed);
      ++seed;
      for (int64_t M : {16, 19})
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2})
          check_nbits(c, M, NBitsMode::Int8, true, pool, true);
    }
}

// ---- the ops through the executor -------------------------------------------------------

namespace {

using slmops::ir::DType;
using slmops::ir::Tensor;
using slmops::ir::TensorType;

struct OneNodeModel {
  slmops::ir::Model model;
  slmops::ir::Graph* g;
  OneNodeModel(int opset = 21) {
    model.ir_version = 10;
    model.opsets = {{"", opset}, {"com.microsoft", 1}};
    model.graph = std::make_unique<slmops::ir::Graph>();
    g = model.graph.get();
  }
  std::vector<Tensor> run(std::vector<Tensor> feeds, int threads = 1) {
    Session s(model, threads);
    std::vector<RValue> in;
    for (auto& t : feeds) in.push_back(RValue::of(std::move(t)));
    std::vector<Tensor> out;
    for (auto& v : s.run(std::move(in))) out.push_back(v.tensor);
    return out;
  }
};

// Int attributes (Attribute is move-only, so no initializer lists).
std::vector<slmops::ir::Attribute> int_attrs(std::vector<std::pair<const char*, int64_t>> kv) {
  std::vector<slmops::ir::Attribute> v;
  for (auto& [k, x] : kv) v.push_back(slmops::ir::Attribute::make_int(k, x));
  return v;
}

template <typename T>
std::vector<T> values_of(const Tensor& t) {
  return std::vector<T>(t.values<T>(), t.values<T>() + t.numel());
}

}  // namespace

TEST_CASE("QuantizeLinear rounds half to even and saturates") {
  OneNodeModel m(13);
  auto* x = m.g->add_input("x", TensorType::of(DType::Float, std::vector<int64_t>{9}));
  auto* s = m.g->add_initializer(Tensor::from_values<float>("s", DType::Float, {}, {0.5f}));
  auto* z = m.g->add_initializer(Tensor::from_values<int8_t>("z", DType::Int8, {}, {0}));
  m.g->add_output(m.g->add_node("QuantizeLinear", {x, s, z}, {"y"})->outputs[0]);
  auto y = m.run({Tensor::from_values<float>("x", DType::Float, {9},
                                             {0.25f, 0.75f, -0.25f, -0.75f, 1.25f, 300.f, -300.f, 2.5f, 63.75f})});
  CHECK(values_of<int8_t>(y[0]) == std::vector<int8_t>{0, 2, 0, -2, 2, 127, -128, 5, 127});
}

TEST_CASE("QuantizeLinear / DequantizeLinear blocked int4 round trip") {
  OneNodeModel m(21);
  auto* x = m.g->add_input("x", TensorType::of(DType::Float, std::vector<int64_t>{2, 6}));
  // Blocks of 4 along axis 1: scale [2, 2]; int4 zero points [2, 2] packed low nibble first.
  auto* s = m.g->add_initializer(Tensor::from_values<float>("s", DType::Float, {2, 2}, {0.5f, 1.f, 0.25f, 2.f}));
  auto* z = m.g->add_initializer(Tensor::from_values<uint8_t>("z", DType::Int4, {2, 2}, {0xF1, 0x20}));  // 1,-1,0,2
  auto* q = m.g->add_node("QuantizeLinear", {x, s, z}, {"q"}, int_attrs({{"axis", 1}, {"block_size", 4}}))->outputs[0];
  m.g->add_output(
      m.g->add_node("DequantizeLinear", {q, s, z}, {"y"}, int_attrs({{"axis", 1}, {"block_size", 4}}))->outputs[0]);
  const std::vector<float> in = {0.25f, 1.f, -3.f, 9.f, 0.4f, -20.f, 0.125f, -0.3f, 1.f, 5.f, 3.f, -30.f};
  auto y = m.run({Tensor::from_values<float>("x", DType::Float, {2, 6}, in)});
  // q = clamp(round(x / s) + zp, -8, 7); y = (q - zp) * s.
  const float sc[2][2] = {{0.5f, 1.f}, {0.25f, 2.f}};
  const int zp[2][2] = {{1, -1}, {0, 2}};
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 6; ++c) {
      const float s_ = sc[r][c / 4];
      const int z_ = zp[r][c / 4];
      const int qv = std::clamp(static_cast<int>(std::nearbyint(in[r * 6 + c] / s_)) + z_, -8, 7);
      CHECK(y[0].values<float>()[r * 6 + c] == static_cast<float>(qv - z_) * s_);
    }
}

TEST_CASE("MatMulNBits equals DequantizeLinear(uint4, blocked) + MatMul") {
  for (int64_t bs : {16, 32, 64})
    for (int acc : {0, 4}) {
      const int64_t K = 96, N = 10, M = 3, kb = (K + bs - 1) / bs;
      NBitsCase c(N, K, 4, bs, 1, 300 + static_cast<uint32_t>(bs));
      // MatMulNBits graph.
      OneNodeModel a(21);
      auto* xa = a.g->add_input("x", TensorType::of(DType::Float, std::vector<int64_t>{M, K}));
      auto* B = a.g->add_initializer(Tensor::from_values<uint8_t>("B", DType::UInt8, {N, kb, bs / 2}, c.B));
      auto* S = a.g->add_initializer(Tensor::from_values<float>("S", DType::Float, {N * kb}, c.scales));
      std::vector<uint8_t> zp(c.zp8.begin(), c.zp8.begin() + N * ((kb + 1) / 2));
      auto* Z = a.g->add_initializer(Tensor::from_values<uint8_t>("Z", DType::UInt8, {N * ((kb + 1) / 2)}, zp));
      auto attrs = int_attrs({{"K", K}, {"N", N}, {"bits", 4}, {"block_size", bs}, {"accuracy_level", acc}});
      a.g->add_output(
          a.g->add_node("MatMulNBits", {xa, B, S, Z}, {"y"}, std::move(attrs), "", "com.microsoft")->outputs[0]);
      // DequantizeLinear + MatMul graph with the same weights as uint4 [K, N].
      OneNodeModel b(21);
      auto* xb = b.g->add_input("x", TensorType::of(DType::Float, std::vector<int64_t>{M, K}));
      NBitsSource src = c.src();
      src.zp_packed = zp.data();
      std::vector<uint8_t> w4((K * N + 1) / 2, 0), z4((kb * N + 1) / 2, 0);
      std::vector<float> sT(kb * N);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t i = k * N + n;
          w4[i / 2] |= static_cast<uint8_t>(src.q(n, k) << (4 * (i % 2)));
        }
      for (int64_t blk = 0; blk < kb; ++blk)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t i = blk * N + n;
          z4[i / 2] |= static_cast<uint8_t>(static_cast<int>(src.zero_point(n, blk)) << (4 * (i % 2)));
          sT[i] = src.scales[n * kb + blk];
        }
      auto* W = b.g->add_initializer(Tensor::from_values<uint8_t>("W", DType::UInt4, {K, N}, w4));
      auto* ST = b.g->add_initializer(Tensor::from_values<float>("ST", DType::Float, {kb, N}, sT));
      auto* ZT = b.g->add_initializer(Tensor::from_values<uint8_t>("ZT", DType::UInt4, {kb, N}, z4));
      auto* wf =
          b.g->add_node("DequantizeLinear", {W, ST, ZT}, {"wf"}, int_attrs({{"axis", 0}, {"block_size", bs}}))->outputs[0];
      b.g->add_output(b.g->add_node("MatMul", {xb, wf}, {"y"})->outputs[0]);
      auto x = random_floats(M * K, 5);
      auto ya = a.run({Tensor::from_values<float>("x", DType::Float, {M, K}, x)}, 2);
      auto yb = b.run({Tensor::from_values<float>("x", DType::Float, {M, K}, x)});
      REQUIRE(ya[0].dims == std::vector<int64_t>{M, N});
      for (int64_t i = 0; i < M * N; ++i) {
        INFO("bs " << bs << " accuracy " << acc << " element " << i);
        // Accuracy level 4 quantizes A to int8 per block: about 1% of the row's scale.
        CHECK(std::fabs(ya[0].values<float>()[i] - yb[0].values<float>()[i]) <= (acc ? 0.05 : 1e-4));
      }
    }
}

TEST_CASE("MatMulInteger with per-row A and per-column B zero points") {
  OneNodeModel m(13);
  const int64_t M = 3, K = 5, N = 4;
  auto A = random_bytes(M * K, 1), B = random_bytes(K * N, 2);
  auto* a = m.g->add_input("a", TensorType::of(DType::UInt8, std::vector<int64_t>{M, K}));
  auto* b = m.g->add_initializer(Tensor::from_values<uint8_t>("b", DType::Int8, {K, N}, B));
  auto* za = m.g->add_initializer(Tensor::from_values<uint8_t>("za", DType::UInt8, {M}, {1, 200, 7}));
  auto* zb = m.g->add_initializer(Tensor::from_values<uint8_t>("zb", DType::Int8, {N}, {0, 0xFF, 5, 0x80}));
  m.g->add_output(m.g->add_node("MatMulInteger", {a, b, za, zb}, {"y"})->outputs[0]);
  auto y = m.run({Tensor::from_values<uint8_t>("a", DType::UInt8, {M, K}, A)});
  const int zav[] = {1, 200, 7}, zbv[] = {0, -1, 5, -128};
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      int32_t want = 0;
      for (int64_t k = 0; k < K; ++k) want += (A[i * K + k] - zav[i]) * (static_cast<int8_t>(B[k * N + j]) - zbv[j]);
      CHECK(y[0].values<int32_t>()[i * N + j] == want);
    }
}

// ---- benchmarks: slmops_tests --test-suite=bench --no-skip -------------------------------

namespace {

// Best wall-clock time of `reps` runs. On a loaded machine the thread's CPU time is the
// steadier single-thread figure; it is reported through `cpu` (best of the runs as well).
template <typename F>
double best_seconds(int reps, F f, double* cpu = nullptr) {
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < reps; ++r) {
    timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    best_cpu = std::min(best_cpu, (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9);
  }
  if (cpu) *cpu = best_cpu;
  return best;
}

std::string fmt_cpu(double cpu, double bytes) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "; thread CPU time %.3f ms = %.1f GB/s", cpu * 1e3, bytes / cpu / 1e9);
  return buf;
}

}  // namespace

TEST_CASE("bench: int4 MatMulNBits GEMV and int8 GEMM" * doctest::test_suite("bench") * doctest::skip()) {
  // Read bandwidth of this machine for comparison: sum of a 512 MiB buffer.
  {
    std::vector<float> big(128u << 20, 1.f);
    volatile float sink = 0;
    double t = best_seconds(3, [&] {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t i = 0; i < big.size(); i += 4) s0 += big[i], s1 += big[i + 1], s2 += big[i + 2], s3 += big[i + 3];
      sink = s0 + s1 + s2 + s3;
    });
    std::printf("memory read (1 thread, scalar sum): %.1f GB/s\n", big.size() * 4 / t / 1e9);
  }
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (int64_t bs : {32, 128})
      for (int zk : {0, 1})
        for (NBitsMode mode : {NBitsMode::Float, NBitsMode::Int8}) {
          NBitsCase c(4096, 4096, 4, bs, zk, 5);
          NBitsPacked W(c.src(), mode);
          auto A = random_floats(4096, 9);
          std::vector<float> y(4096);
          double cpu;
          const double t =
              best_seconds(50, [&] { nbits_gemm(1, A.data(), 4096, W, nullptr, y.data(), 4096, &pool); }, &cpu);
          const double qbytes = 4096.0 * 4096 / 2, sbytes = 4096.0 * 4096 / bs * 4;
          std::printf("int4 GEMV 4096x4096 bs %3lld %s %s threads %d: %.3f ms, %.1f GB/s of int4 weights (%.1f with "
                      "scales)%s\n",
                      (long long)bs, zk ? "zp  " : "sym ", mode == NBitsMode::Float ? "fp32" : "int8", threads, t * 1e3,
                      qbytes / t / 1e9, (qbytes + sbytes) / t / 1e9,
                      threads == 1 ? fmt_cpu(cpu, qbytes).c_str() : "");
        }
    {
      // Weights streamed from DRAM as in LLM decoding: 128 different 4096 x 4096 matrices
      // (1 GiB of int4, more than this machine's L3), one GEMV each.
      NBitsCase c(4096, 4096, 4, 32, 0, 5);
      for (NBitsMode mode : {NBitsMode::Float, NBitsMode::Int8}) {
        std::vector<NBitsPacked> layers(128, NBitsPacked(c.src(), mode));
        auto A = random_floats(4096, 9);
        std::vector<float> y(4096);
        double cpu;
        const double t = best_seconds(2, [&] {
          for (auto& W : layers) nbits_gemm(1, A.data(), 4096, W, nullptr, y.data(), 4096, &pool);
        }, &cpu);
        const double qbytes = 128 * 4096.0 * 4096 / 2;
        std::printf("int4 GEMV streaming 128 x (4096x4096) bs 32 sym %s threads %d: %.3f ms per matrix, %.1f GB/s of "
                    "int4 weights (%.1f with scales)\n",
                    mode == NBitsMode::Float ? "fp32" : "int8", threads, t / 128 * 1e3, qbytes / t / 1e9,
                    qbytes * 1.25 / t / 1e9);
      }
    }
    for (int64_t M : {4, 64}) {
      NBitsCase c(4096, 4096, 4, 32, 0, 5);
      for (NBitsMode mode : {NBitsMode::Float, NBitsMode::Int8}) {
        NBitsPacked W(c.src(), mode);
        auto A = random_floats(M * 4096, 9);
        std::vector<float> y(M * 4096);
        double cpu;
        const double t =
            best_seconds(5, [&] { nbits_gemm(M, A.data(), 4096, W, nullptr, y.data(), 4096, &pool); }, &cpu);
        std::printf("int4 GEMM M %lld 4096x4096 bs 32 %s threads %d: %.2f ms, %.1f GFLOP/s (thread CPU %.2f ms)\n",
                    (long long)M, mode == NBitsMode::Float ? "fp32" : "int8", threads, t * 1e3,
                    2.0 * M * 4096 * 4096 / t / 1e9, cpu * 1e3);
      }
    }
    for (QGemmIsa isa : isas())
      for (int64_t M : {1, 64, 1024}) {
        const int64_t N = 1024, K = 1024;
        auto A = random_bytes(M * K, 1), B = random_bytes(K * N, 2);
        QPackedB packed(K, N, B.data(), N, true, false, isa);
        std::vector<int32_t> C(M * N);
        int32_t za = 3;
        double cpu;
        const double t = best_seconds(
            M == 1024 ? 3 : 20,
            [&] { qgemm_packed(M, A.data(), K, false, {&za, false}, packed, {}, C.data(), N, &pool); }, &cpu);
        std::printf("int8 GEMM u8s8 %s M %lld N %lld K %lld threads %d: %.3f ms, %.1f GOP/s (thread CPU %.3f ms = %.1f GOP/s)\n",
                    qgemm_isa_name(isa), (long long)M, (long long)N, (long long)K, threads, t * 1e3,
                    2.0 * M * N * K / t / 1e9, cpu * 1e3, 2.0 * M * N * K / cpu / 1e9);
      }
  }
}

// The vectorized per-tensor QuantizeLinear / DequantizeLinear loops (runtime/kernels/qdq.h)
// against the scalar definition the other layouts use (quant::quantize_value), bit for bit:
// exact ties (rounding half to even), saturation, NaN and infinities, several zero points.
TEST_CASE("qdq kernels equal quantize_value and the dequantize formula") {
  std::vector<float> x = random_floats(4099, 21, -3.f, 3.f);
  const float scale = 0.0125f;
  for (int k = -300; k <= 300; ++k) x.push_back((static_cast<float>(k) + 0.5f) * scale);  // ties
  for (float v : {0.f, -0.f, 1e30f, -1e30f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
    x.push_back(v);
  const int64_t n = static_cast<int64_t>(x.size());
  for (int32_t zp : {0, 3, 128, 255}) {
    std::vector<uint8_t> y(x.size());
    quantize_f32_u8(x.data(), n, scale, zp, y.data());
    for (int64_t i = 0; i < n; ++i)
      REQUIRE(static_cast<int32_t>(y[i]) == ops::quant::quantize_value(x[i], scale, zp, {0, 255}));
    std::vector<float> back(x.size());
    dequantize_u8_f32(y.data(), n, scale, zp, back.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(back[i] == static_cast<float>(static_cast<int32_t>(y[i]) - zp) * scale);
  }
  for (int32_t zp : {-128, -5, 0, 127}) {
    std::vector<int8_t> y(x.size());
    quantize_f32_s8(x.data(), n, scale, zp, y.data());
    for (int64_t i = 0; i < n; ++i)
      REQUIRE(static_cast<int32_t>(y[i]) == ops::quant::quantize_value(x[i], scale, zp, {-128, 127}));
    std::vector<float> back(x.size());
    dequantize_s8_f32(y.data(), n, scale, zp, back.data());
    for (int64_t i = 0; i < n; ++i) REQUIRE(back[i] == static_cast<float>(static_cast<int32_t>(y[i]) - zp) * scale);
  }
  // min_max_f32 skips NaN like std::min / std::max folded from the first element.
  for (int64_t len : {1, 15, 16, 17, 100}) {
    std::vector<float> v(x.begin(), x.begin() + len);
    if (len > 3) v[2] = std::numeric_limits<float>::quiet_NaN();
    float mn, mx;
    min_max_f32(v.data(), len, mn, mx);
    float rmn = v[0], rmx = v[0];
    for (float e : v) rmn = std::min(rmn, e), rmx = std::max(rmx, e);
    CHECK(mn == rmn);
    CHECK(mx == rmx);
  }
}

TEST_CASE("QDQ Conv's channels-last integer kernel equals QLinearConv byte for byte") {
  using slmops::ir::Attribute;
  struct Geometry {
    int64_t batch, C, M, H, W, k, stride, pad, dil;
  };
  // 3x3 "same", a strided 7x7 stem with C = 3, pointwise (no im2col), strided 1x1, dilated,
  // and output widths around the 16-column panels; a depth of 2700 (rows filled in several
  // depth blocks, which start inside a kernel row: windows inside the image copy each kernel
  // row's taps at once) and an unpadded 5x5 stride 2 (every window inside).
  const Geometry cases[] = {{1, 5, 20, 9, 9, 3, 1, 1, 1},   {2, 3, 16, 15, 13, 7, 2, 3, 1},
                            {1, 24, 70, 6, 7, 1, 1, 0, 1},  {2, 8, 33, 9, 9, 1, 2, 0, 1},
                            {1, 6, 4, 10, 11, 3, 1, 2, 2},  {1, 32, 48, 12, 12, 3, 1, 1, 1},
                            {1, 300, 40, 7, 8, 3, 1, 1, 1}, {1, 7, 24, 13, 14, 5, 2, 0, 1}};
  for (const Geometry& c : cases)
    for (int threads : {1, 2})
      for (DType xt : {DType::UInt8, DType::Int8}) {
        CAPTURE(c.C);
        CAPTURE(c.M);
        CAPTURE(c.k);
        CAPTURE(threads);
        CAPTURE(static_cast<int>(xt));
        OneNodeModel m(13);
        const std::vector<int64_t> xdims = {c.batch, c.C, c.H, c.W}, wdims = {c.M, c.C, c.k, c.k};
        const int64_t wn = c.M * c.C * c.k * c.k;
        const float xs = 0.02f, ys = 0.07f;
        std::vector<float> ws(c.M);
        std::vector<int32_t> bias(c.M);
        for (int64_t i = 0; i < c.M; ++i) {
          ws[i] = 0.001f * static_cast<float>(i % 7 + 1);
          bias[i] = static_cast<int32_t>((i * 977) % 3001 - 1500);
        }
        std::vector<float> bs(c.M);
        for (int64_t i = 0; i < c.M; ++i) bs[i] = xs * ws[i];
        auto* x = m.g->add_input("x", TensorType::of(xt, xdims));
        auto* xsv = m.g->add_initializer(Tensor::from_values<float>("xs", DType::Float, {}, {xs}));
        auto* xz = m.g->add_initializer(Tensor::from_values<uint8_t>("xz", xt, {}, {117}));
        auto* w = m.g->add_initializer(Tensor::from_values<uint8_t>("w", DType::Int8, wdims, random_bytes(wn, 3)));
        auto* wsv = m.g->add_initializer(Tensor::from_values<float>("ws", DType::Float, {c.M}, ws));
        // Weight zero points (not ORT's symmetric weights, but valid QDQ) in one geometry: the
        // kernel then needs A's row sums, made from the same im2col rows.
        std::vector<uint8_t> wzv(c.M, 0);
        if (c.C == 6)
          for (int64_t i = 0; i < c.M; ++i) wzv[i] = static_cast<uint8_t>(static_cast<int8_t>(i % 5 - 2));
        auto* wz = m.g->add_initializer(Tensor::from_values<uint8_t>("wz", DType::Int8, {c.M}, wzv));
        auto* b = m.g->add_initializer(Tensor::from_values<int32_t>("b", DType::Int32, {c.M}, bias));
        auto* bsv = m.g->add_initializer(Tensor::from_values<float>("bs", DType::Float, {c.M}, bs));
        auto* bz =
            m.g->add_initializer(Tensor::from_values<int32_t>("bz", DType::Int32, {c.M}, std::vector<int32_t>(c.M, 0)));
        auto* ysv = m.g->add_initializer(Tensor::from_values<float>("ys", DType::Float, {}, {ys}));
        auto* yz = m.g->add_initializer(Tensor::from_values<uint8_t>("yz", DType::UInt8, {}, {131}));
        auto conv_attrs = [&] {
          std::vector<Attribute> a;
          a.push_back(Attribute::make_ints("strides", {c.stride, c.stride}));
          a.push_back(Attribute::make_ints("pads", {c.pad, c.pad, c.pad, c.pad}));
          a.push_back(Attribute::make_ints("dilations", {c.dil, c.dil}));
          return a;
        };
        auto axis0 = [] { return int_attrs({{"axis", 0}}); };
        auto* xd = m.g->add_node("DequantizeLinear", {x, xsv, xz}, {"xd"})->outputs[0];
        auto* wd = m.g->add_node("DequantizeLinear", {w, wsv, wz}, {"wd"}, axis0())->outputs[0];
        auto* bd = m.g->add_node("DequantizeLinear", {b, bsv, bz}, {"bd"}, axis0())->outputs[0];
        auto* conv = m.g->add_node("Conv", {xd, wd, bd}, {"conv"}, conv_attrs())->outputs[0];
        m.g->add_output(m.g->add_node("QuantizeLinear", {conv, ysv, yz}, {"y_qdq"})->outputs[0]);
        m.g->add_output(
            m.g->add_node("QLinearConv", {x, xsv, xz, w, wsv, wz, ysv, yz, b}, {"y_ref"}, conv_attrs())->outputs[0]);
        Session s(m.model, threads);
        CHECK(s.qdq_fused_groups() == 1);
        std::vector<RValue> in;
        in.push_back(
            RValue::of(Tensor::from_values<uint8_t>("x", xt, xdims, random_bytes(c.batch * c.C * c.H * c.W, 7))));
        auto y = s.run(std::move(in));
        REQUIRE(y.size() == 2);
        CHECK(y[0].tensor.dims == y[1].tensor.dims);
        CHECK(values_of<uint8_t>(y[0].tensor) == values_of<uint8_t>(y[1].tensor));
        const auto v = values_of<uint8_t>(y[0].tensor);
        CHECK(std::count(v.begin(), v.end(), v[0]) < static_cast<long>(v.size()));  // not constant
      }
}

TEST_CASE("transpose_u8, lookup_u8 and per-element requantization equal their plain loops") {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{16, 16}, {64, 48}, {37, 70}, {5, 3}, {1, 33}}) {
    const int64_t lds = cols + 3, ldd = rows + 5;
    auto src = random_bytes(static_cast<size_t>(rows * lds), 9);
    std::vector<uint8_t> dst(static_cast<size_t>(cols * ldd), 0), want(dst.size(), 0);
    transpose_u8(src.data(), rows, cols, lds, dst.data(), ldd);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) want[c * ldd + r] = src[r * lds + c];
    CHECK(dst == want);
  }
  const auto table = random_bytes(256, 4);
  for (int64_t n : {0, 1, 63, 64, 200, 1000})
    for (uint8_t flip : {0x00, 0x80}) {
      const auto in = random_bytes(static_cast<size_t>(n), 5);
      std::vector<uint8_t> out(in.size()), want(in.size());
      lookup_u8(table.data(), in.data(), n, flip, out.data());
      for (int64_t i = 0; i < n; ++i) want[i] = table[in[i] ^ flip];
      CHECK(out == want);
    }
  const int64_t n = 77;
  std::vector<int32_t> acc(n), bias(n);
  std::vector<float> scale(n), offset(n);
  for (int64_t i = 0; i < n; ++i) {
    acc[i] = static_cast<int32_t>((i * 7919) % 20001 - 10000);
    bias[i] = static_cast<int32_t>(i * 31 - 1000);
    scale[i] = 0.001f * static_cast<float>(i % 13 + 1);
    offset[i] = i % 3 == 0 ? 0.f : 0.25f * static_cast<float>(i % 5) - 0.5f;
  }
  std::vector<uint8_t> yu(n);
  std::vector<int8_t> ys(n);
  requantize_s32_u8_per_element(acc.data(), n, bias.data(), scale.data(), offset.data(), 7, yu.data());
  requantize_s32_s8_per_element(acc.data(), n, bias.data(), scale.data(), offset.data(), -3, ys.data());
  for (int64_t i = 0; i < n; ++i) {
    uint8_t u;
    int8_t v;
    requantize_s32_u8(acc.data() + i, 1, bias[i], scale[i], offset[i], 7, &u);
    requantize_s32_s8(acc.data() + i, 1, bias[i], scale[i], offset[i], -3, &v);
    CHECK(yu[i] == u);
    CHECK(ys[i] == v);
  }
  // int32 -> float with a wrapping int32 offset, per-element and one scale, with and without bias.
  std::vector<int32_t> off(n);
  for (int64_t i = 0; i < n; ++i)
    off[i] = i == 5 ? std::numeric_limits<int32_t>::max() : static_cast<int32_t>(i * 101 - 3000);
  for (bool per : {false, true})
    for (const float* bi : {static_cast<const float*>(nullptr), static_cast<const float*>(offset.data())}) {
      std::vector<float> y(n);
      scale_s32_f32(acc.data(), n, off.data(), scale.data(), per, bi, y.data());
      for (int64_t i = 0; i < n; ++i) {
        const int32_t a = static_cast<int32_t>(static_cast<uint32_t>(acc[i]) + static_cast<uint32_t>(off[i]));
        float want = static_cast<float>(a) * scale[per ? i : 0];
        if (bi) want += bi[i];
        CHECK(y[i] == want);
      }
    }
}
