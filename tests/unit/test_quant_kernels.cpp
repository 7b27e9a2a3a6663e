// Quantized kernels against their reference loops: the integer GEMM (runtime/kernels/qgemm.h)
// bit for bit on every kernel set this CPU runs, with all four signedness combinations, per
// tensor / per channel zero points, edge sizes around the 4x16 tile and the depth block, one
// and two threads; and the MatMulNBits kernels (runtime/kernels/nbits.h) within float
// tolerance, for 2/4/8 bits, every block size, with and without zero points, accuracy level 0
// (float) and 4 (int8 activations, exact integer dot products).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "runtime/kernels/nbits.h"
#include "runtime/kernels/qgemm.h"
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
  const std::vector<int64_t> ns = {1, 7, 16, 17, 40};
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
void check_nbits(const NBitsCase& c, int64_t M, NBitsMode mode, bool avx2, ThreadPool* pool) {
  auto A = random_floats(M * c.K, 77 + M, -1.f, 1.f);
  auto bias = random_floats(c.N, 78);
  NBitsPacked W(c.src(), mode, avx2);
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
            << " mode " << int(mode) << " avx2 " << avx2);
  CHECK(worst < 2e-6);
}

}  // namespace

TEST_CASE("MatMulNBits kernels match the reference") {
  ThreadPool pool2(2);
  uint32_t seed = 100;
  for (bool avx2 : {false, true}) {
    if (avx2 && !nbits_cpu_avx2()) continue;
    for (int64_t bits : {2, 4, 8})
      for (int64_t bs : {16, 32, 64, 128, 256})
        for (int zk : {0, 1, 2})
          for (NBitsMode mode : {NBitsMode::Float, NBitsMode::Int8}) {
            if (mode == NBitsMode::Int8 && zk == 2) continue;  // float zero points compute in float
            const int64_t K = (seed % 3 == 0) ? 300 : (seed % 3 == 1 ? 512 : 37);
            const int64_t N = (seed % 2) ? 21 : 8;
            NBitsCase c(N, K, bits, bs, zk, seed++);
            for (int64_t M : {1, 2, 3, 5})
              check_nbits(c, M, mode, avx2, M == 1 ? &pool2 : nullptr);
          }
  }
}

// ---- benchmarks: slmops_tests --test-suite=bench --no-skip -------------------------------

#include <chrono>
#include <cstdio>
#include <ctime>

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
