// Block-wise weight quantization (passes/quant/block_quant.h): RTN against a direct per-column
// computation of the header's formulas (scales, zero points, codes, rounding of ties), the
// MatMulNBits packing byte by byte, RTN's half-step error bound, HQQ never worse than RTN in
// squared error, and GPTQ on a synthetic layer with correlated inputs: the same codes as a plain
// double-precision GPTQ, lower output error than RTN, identical to RTN when H is a multiple of
// the identity, dead inputs and Hessians that are not positive definite.
// Benchmarks (skipped by default): slmops_tests --test-suite=bench --no-skip.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "ir/error.h"
#include "passes/quant/block_quant.h"
#include "runtime/thread_pool.h"

using namespace slmops::passes::quant;
using slmops::runtime::ThreadPool;

namespace {

// Relative slack for float comparisons of errors against bounds.
constexpr double kTiny = 1e-6;

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(gen);
  return v;
}

// Heavy tails: Laplace (exponential magnitude, random sign).
std::vector<float> laplace(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::exponential_distribution<float> mag(1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = (gen() & 1) ? mag(gen) : -mag(gen);
  return v;
}

// The header's RTN rule written out directly, one column and one block at a time (strided
// reads of W), as the independent reference: scale/zp from the block's min and max, then
// q = clamp(roundf(w * (1 / scale) + zp), 0, 2^bits - 1).
BlockQuantized reference_rtn(const std::vector<float>& W, int64_t K, int64_t N, int bits, int64_t bs, bool symmetric) {
  BlockQuantized r;
  r.K = K;
  r.N = N;
  r.k_blocks = (K + bs - 1) / bs;
  r.q.assign(K * N, 0);
  r.scales.assign(r.k_blocks * N, 0.f);
  r.zero_points.assign(r.k_blocks * N, 0);
  const int mid = 1 << (bits - 1), qmax = (1 << bits) - 1;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < r.k_blocks; ++b) {
      const int64_t k0 = b * bs, k1 = std::min(K, k0 + bs);
      float mn = W[k0 * N + n], mx = mn;
      for (int64_t k = k0; k < k1; ++k) mn = std::min(mn, W[k * N + n]), mx = std::max(mx, W[k * N + n]);
      float scale;
      int zp;
      if (symmetric) {
        const float m = std::fabs(mx) > std::fabs(mn) ? mx : mn;
        scale = m / static_cast<float>(-mid);
        zp = mid;
      } else {
        const float lo = std::min(mn, 0.f), hi = std::max(mx, 0.f);
        scale = (hi - lo) / static_cast<float>(qmax);
        zp = scale == 0.f ? mid : std::clamp(static_cast<int>(std::roundf(-lo / scale)), 0, qmax);
      }
      if (scale == 0.f) scale = 1.f;
      r.scales[n * r.k_blocks + b] = scale;
      r.zero_points[n * r.k_blocks + b] = static_cast<uint8_t>(zp);
      for (int64_t k = k0; k < k1; ++k) {
        const float x = std::roundf(W[k * N + n] * (1.f / scale) + static_cast<float>(zp));
        r.q[n * K + k] = static_cast<uint8_t>(std::clamp(x, 0.f, static_cast<float>(qmax)));
      }
    }
  return r;
}

void check_same(const BlockQuantized& a, const BlockQuantized& b) {
  REQUIRE(a.K == b.K);
  REQUIRE(a.N == b.N);
  REQUIRE(a.k_blocks == b.k_blocks);
  CHECK(a.scales == b.scales);
  CHECK(a.zero_points == b.zero_points);
  CHECK(a.q == b.q);
}

double squared_error(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return e;
}

// A weight with a column of zeros (scale 1, zp mid), a column whose block holds exact halves
// (ties), and random columns.
std::vector<float> rtn_input(int64_t K, int64_t N, uint32_t seed) {
  std::vector<float> W = gaussian(K * N, seed);
  for (int64_t k = 0; k < K; ++k) W[k * N + 1] = 0.f;
  return W;
}

}  // namespace

TEST_CASE("block quant: RTN matches a direct per-column computation") {
  ThreadPool pool(2);
  // K = 70: 3 blocks of 32 (odd k_blocks, the last one 6 rows short); K = 100 with block 16.
  for (auto [K, bs] : {std::pair<int64_t, int64_t>{70, 32}, {100, 16}, {256, 64}})
    for (int bits : {2, 4, 8})
      for (bool sym : {true, false}) {
        CAPTURE(K);
        CAPTURE(bs);
        CAPTURE(bits);
        CAPTURE(sym);
        const int64_t N = 37;
        const auto W = rtn_input(K, N, 7);
        const BlockParams p{bits, bs, sym};
        const auto want = reference_rtn(W, K, N, bits, bs, sym);
        check_same(quantize_rtn(W.data(), K, N, p), want);
        check_same(quantize_rtn(W.data(), K, N, p, &pool), want);
        // The zero column: scale 1 and zp 2^(bits-1) in both modes, every code zp.
        const auto got = quantize_rtn(W.data(), K, N, p);
        for (int64_t b = 0; b < got.k_blocks; ++b) {
          CHECK(got.scales[1 * got.k_blocks + b] == 1.f);
          CHECK(got.zero_points[1 * got.k_blocks + b] == (1 << (bits - 1)));
        }
        if (sym)
          for (uint8_t z : got.zero_points) CHECK(z == (1 << (bits - 1)));
      }
}

TEST_CASE("block quant: RTN codes of a hand-checked block (ties round up, extremes clamp)") {
  // One symmetric 4-bit block: m = -8 gives scale 1, zp 8; q = roundf(w + 8), halves round up.
  std::vector<float> W(32, 0.f);
  const float vals[] = {-8.f, 2.5f, -2.5f, 0.5f, -0.5f, 7.f, 7.6f, -7.5f};
  std::copy(std::begin(vals), std::end(vals), W.begin());
  auto s = quantize_rtn(W.data(), 32, 1, {4, 32, true});
  CHECK(s.scales[0] == 1.f);
  CHECK(s.zero_points[0] == 8);
  const uint8_t want_sym[] = {0, 11, 6, 9, 8, 15, 15, 1};
  for (int i = 0; i < 8; ++i) CHECK(s.q[i] == want_sym[i]);
  // Asymmetric on [-1, 14]: lo -1, hi 14, scale 1, zp round(1) = 1, q = roundf(w + 1).
  std::vector<float> A(32, 0.f);
  const float avals[] = {-1.f, 14.f, 0.5f, -0.5f, 3.49f};
  std::copy(std::begin(avals), std::end(avals), A.begin());
  auto a = quantize_rtn(A.data(), 32, 1, {4, 32, false});
  CHECK(a.scales[0] == 1.f);
  CHECK(a.zero_points[0] == 1);
  const uint8_t want_asym[] = {0, 15, 2, 1, 4};
  for (int i = 0; i < 5; ++i) CHECK(a.q[i] == want_asym[i]);
}

TEST_CASE("block quant: RTN dequantizes within half a step") {
  for (bool sym : {true, false})
    for (int bits : {3, 4, 8}) {
      CAPTURE(sym);
      CAPTURE(bits);
      const int64_t K = 200, N = 24, bs = 32;
      const auto W = laplace(K * N, 11);
      const auto r = quantize_rtn(W.data(), K, N, {bits, bs, sym});
      const auto dq = dequantize(r, bs);
      const int qmax = (1 << bits) - 1;
      int clamped = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
          const float step = std::fabs(r.scales[n * r.k_blocks + k / bs]);
          const double err = std::fabs(static_cast<double>(W[k * N + n]) - dq[k * N + n]);
          // Symmetric grids have one code fewer above zp than below: the opposite extreme of
          // the block's largest magnitude clamps to the top code, at most a full step away.
          if (sym && r.q[n * K + k] == qmax && err > step / 2 * (1 + kTiny)) {
            ++clamped;
            CHECK(err <= step * (1 + kTiny));
          } else {
            CHECK(err <= step / 2 * (1 + kTiny) + 1e-12);
          }
        }
      if (!sym) CHECK(clamped == 0);
    }
}

TEST_CASE("block quant: MatMulNBits packing of B and zero points, byte by byte") {
  // K = 17, block 16: two blocks per column, the second holds one real row and 15 padding rows.
  BlockQuantized b;
  b.K = 17;
  b.N = 2;
  b.k_blocks = 2;
  for (int64_t i = 0; i < 34; ++i) b.q.push_back(static_cast<uint8_t>(i % 16));
  b.scales = {1.f, 1.f, 1.f, 1.f};
  b.zero_points = {3, 5, 9, 12};
  const auto B = pack_matmulnbits_b(b, 4, 16);
  REQUIRE(B.size() == 2 * 2 * 8);
  // Column 0, block 0: q = 0..15, low nibble first.
  for (int j = 0; j < 8; ++j) CHECK(B[j] == ((2 * j) | ((2 * j + 1) << 4)));
  // Column 0, block 1: q[16] = 0, then padding with zp 5.
  CHECK(B[8] == (0 | (5 << 4)));
  for (int j = 9; j < 16; ++j) CHECK(B[j] == 0x55);
  // Column 1 (q starts at 17 % 16 = 1): block 0 holds 1..15, 0; block 1 holds 1, padded with 12.
  CHECK(B[16] == (1 | (2 << 4)));
  CHECK(B[23] == (15 | (0 << 4)));
  CHECK(B[24] == (1 | (12 << 4)));
  for (int j = 25; j < 32; ++j) CHECK(B[j] == 0xCC);

  const auto Z = pack_zero_points(b, 4);
  REQUIRE(Z.size() == 2);
  CHECK(Z[0] == 0x53);
  CHECK(Z[1] == 0xC9);

  // Odd number of blocks: 3 zero points per column in 2 bytes, the unused high nibble 0.
  BlockQuantized odd;
  odd.K = 40;
  odd.N = 2;
  odd.k_blocks = 3;
  odd.q.assign(80, 7);
  odd.scales.assign(6, 1.f);
  odd.zero_points = {1, 2, 3, 4, 5, 6};
  const auto Zo = pack_zero_points(odd, 4);
  REQUIRE(Zo.size() == 4);
  CHECK(Zo[0] == 0x21);
  CHECK(Zo[1] == 0x03);
  CHECK(Zo[2] == 0x54);
  CHECK(Zo[3] == 0x06);
  // Last block of each column: rows 32..39 real (7), rows 40..47 padded with its zp.
  const auto Bo = pack_matmulnbits_b(odd, 4, 16);
  REQUIRE(Bo.size() == 2 * 3 * 8);
  CHECK(Bo[2 * 8 + 0] == 0x77);
  CHECK(Bo[2 * 8 + 3] == 0x77);
  CHECK(Bo[2 * 8 + 4] == 0x33);
  CHECK(Bo[2 * 8 + 7] == 0x33);
  CHECK(Bo[5 * 8 + 4] == 0x66);

  // 8 bits: one byte per code and per zero point.
  const auto B8 = pack_matmulnbits_b(odd, 8, 16);
  REQUIRE(B8.size() == 2 * 3 * 16);
  CHECK(B8[2 * 16 + 7] == 7);
  CHECK(B8[2 * 16 + 8] == 3);
  CHECK(B8[5 * 16 + 15] == 6);
  CHECK(pack_zero_points(odd, 8) == odd.zero_points);
}

TEST_CASE("block quant: packed RTN output unpacks to the codes, padding dequantizes to zero") {
  for (bool sym : {true, false}) {
    CAPTURE(sym);
    const int64_t K = 70, N = 5, bs = 32;
    const auto W = gaussian(K * N, 3);
    const auto r = quantize_rtn(W.data(), K, N, {4, bs, sym});
    const auto B = pack_matmulnbits_b(r, 4, bs);
    const auto Z = pack_zero_points(r, 4);
    REQUIRE(B.size() == static_cast<size_t>(N * 3 * 16));
    REQUIRE(Z.size() == static_cast<size_t>(N * 2));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < 3; ++b) {
        const int zp = (Z[n * 2 + b / 2] >> (4 * (b % 2))) & 0xF;
        CHECK(zp == r.zero_points[n * 3 + b]);
        for (int64_t e = 0; e < bs; ++e) {
          const int v = (B[(n * 3 + b) * 16 + e / 2] >> (4 * (e % 2))) & 0xF;
          const int64_t k = b * bs + e;
          CHECK(v == (k < K ? r.q[n * K + k] : zp));
        }
      }
  }
}

TEST_CASE("block quant: HQQ has no more squared error than RTN") {
  ThreadPool pool(2);
  const int64_t K = 512, N = 64;
  for (int dist = 0; dist < 2; ++dist)
    for (auto [bits, bs] : {std::pair<int, int64_t>{4, 32}, {4, 128}, {3, 64}, {8, 32}}) {
      CAPTURE(dist);
      CAPTURE(bits);
      CAPTURE(bs);
      const auto W = dist == 0 ? gaussian(K * N, 21, 0.02f) : laplace(K * N, 22);
      const BlockParams p{bits, bs, false};
      const auto rtn = quantize_rtn(W.data(), K, N, p);
      const auto hqq = quantize_hqq(W.data(), K, N, p, 20);
      check_same(quantize_hqq(W.data(), K, N, p, 20, &pool), hqq);
      const auto dr = dequantize(rtn, bs), dh = dequantize(hqq, bs);
      // Per block (the guarantee holds block by block) and in total.
      for (int64_t n = 0; n < N; ++n)
        for (int64_t b = 0; b < rtn.k_blocks; ++b) {
          double er = 0, eh = 0;
          for (int64_t k = b * bs; k < std::min(K, (b + 1) * bs); ++k) {
            er += std::pow(static_cast<double>(W[k * N + n]) - dr[k * N + n], 2);
            eh += std::pow(static_cast<double>(W[k * N + n]) - dh[k * N + n], 2);
          }
          CHECK(eh <= er);
        }
      const double er = squared_error(W, dr), eh = squared_error(W, dh);
      MESSAGE("HQQ / RTN squared error: " << eh / er);
      CHECK(eh <= er);
      // And the optimisation does something: at 3-4 bits it saves a few percent.
      if (bits <= 4) CHECK(eh < 0.99 * er);
      // Codes are the RTN rule applied with HQQ's own scale and integer zero point.
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
          const int64_t s = n * hqq.k_blocks + k / bs;
          CHECK(hqq.zero_points[s] <= (1 << bits) - 1);
          const float x = std::roundf(W[k * N + n] * (1.f / hqq.scales[s]) + hqq.zero_points[s]);
          CHECK(hqq.q[n * K + k] == std::clamp(x, 0.f, static_cast<float>((1 << bits) - 1)));
        }
    }
  // A symmetric request is RTN.
  const auto W = gaussian(128 * 8, 5);
  check_same(quantize_hqq(W.data(), 128, 8, {4, 32, true}), quantize_rtn(W.data(), 128, 8, {4, 32, true}));
}

namespace {

// A layer with correlated inputs: X = Z A ([rows, K]) with a random mixing A, its Hessian
// H = X^T X and a Gaussian weight W [K, N].
struct Layer {
  int64_t rows, K, N;
  std::vector<double> X, H;
  std::vector<float> W;

  Layer(int64_t rows_, int64_t K_, int64_t N_, uint32_t seed) : rows(rows_), K(K_), N(N_) {
    const auto Z = gaussian(rows * K, seed);
    const auto A = gaussian(K * K, seed + 1, 1.f / std::sqrt(static_cast<float>(K)));
    X.assign(rows * K, 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < K; ++j) {
        double s = 0;
        for (int64_t l = 0; l < K; ++l) s += static_cast<double>(Z[r * K + l]) * A[l * K + j];
        // A few dominant inputs, as in transformer activations (act_order then matters).
        X[r * K + j] = s * (j % 17 == 0 ? 8.0 : 1.0);
      }
    H.assign(K * K, 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < K; ++j) H[i * K + j] += X[r * K + i] * X[r * K + j];
    W = gaussian(K * N, seed + 2);
  }

  // ||X W - X Wq||_F.
  double output_error(const std::vector<float>& Wq) const {
    double e = 0;
    std::vector<double> d(N);
    for (int64_t r = 0; r < rows; ++r) {
      std::fill(d.begin(), d.end(), 0.0);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) d[n] += X[r * K + k] * (static_cast<double>(W[k * N + n]) - Wq[k * N + n]);
      for (double v : d) e += v * v;
    }
    return std::sqrt(e);
  }
};

}  // namespace

// GPTQ written out plainly in double: H^-1 by Gauss-Jordan, its upper Cholesky factor U, then
// one row at a time with the error spread over every later row at once (no lazy blocks). The
// scales use reference_rtn's formulas on the rows of a block when its first row comes up, or
// (act_order) on the original rows up front.
BlockQuantized reference_gptq(const std::vector<float>& W0, int64_t K, int64_t N, std::vector<double> H, int bits,
                              int64_t bs, bool sym, bool act_order, double damp) {
  std::vector<double> W(W0.begin(), W0.end());
  for (int64_t k = 0; k < K; ++k)
    if (H[k * K + k] == 0) {
      H[k * K + k] = 1;
      for (int64_t n = 0; n < N; ++n) W[k * N + n] = 0;
    }
  std::vector<int64_t> perm(K);
  for (int64_t k = 0; k < K; ++k) perm[k] = k;
  if (act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H[a * K + a] > H[b * K + b]; });
  BlockQuantized out = reference_rtn(std::vector<float>(W.begin(), W.end()), K, N, bits, bs, sym);
  // Hp = H[perm][perm] + damp * mean(diag) I, then its inverse and U with U^T U = inverse.
  double mean = 0;
  for (int64_t k = 0; k < K; ++k) mean += H[k * K + k] / K;
  std::vector<double> A(K * 2 * K, 0.0);
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) A[i * 2 * K + j] = H[perm[i] * K + perm[j]] + (i == j ? damp * mean : 0.0);
    A[i * 2 * K + K + i] = 1;
  }
  for (int64_t c = 0; c < K; ++c) {
    const double piv = A[c * 2 * K + c];
    for (int64_t j = 0; j < 2 * K; ++j) A[c * 2 * K + j] /= piv;
    for (int64_t i = 0; i < K; ++i)
      if (i != c) {
        const double f = A[i * 2 * K + c];
        for (int64_t j = 0; j < 2 * K; ++j) A[i * 2 * K + j] -= f * A[c * 2 * K + j];
      }
  }
  std::vector<double> U(K * K, 0.0);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = i; j < K; ++j) {
      double v = A[i * 2 * K + K + j];
      for (int64_t m = 0; m < i; ++m) v -= U[m * K + i] * U[m * K + j];
      U[i * K + j] = i == j ? std::sqrt(v) : v / U[i * K + i];
    }
  std::vector<double> Wp(K * N);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t n = 0; n < N; ++n) Wp[i * N + n] = W[perm[i] * N + n];
  const int qmax = (1 << bits) - 1;
  for (int64_t i = 0; i < K; ++i) {
    if (!act_order && i % bs == 0) {
      std::vector<float> rows;
      const int64_t k1 = std::min(K, i + bs);
      for (int64_t k = i; k < k1; ++k)
        for (int64_t n = 0; n < N; ++n) rows.push_back(static_cast<float>(Wp[k * N + n]));
      const auto blk = reference_rtn(rows, k1 - i, N, bits, bs, sym);
      for (int64_t n = 0; n < N; ++n) {
        out.scales[n * out.k_blocks + i / bs] = blk.scales[n];
        out.zero_points[n * out.k_blocks + i / bs] = blk.zero_points[n];
      }
    }
    for (int64_t n = 0; n < N; ++n) {
      const int64_t s = n * out.k_blocks + perm[i] / bs;
      const float scale = out.scales[s], zp = out.zero_points[s];
      const float x = std::roundf(static_cast<float>(Wp[i * N + n]) * (1.f / scale) + zp);
      const float q = std::clamp(x, 0.f, static_cast<float>(qmax));
      out.q[n * K + perm[i]] = static_cast<uint8_t>(q);
      const double err = (Wp[i * N + n] - (q - zp) * static_cast<double>(scale)) / U[i * K + i];
      for (int64_t j = i + 1; j < K; ++j) Wp[j * N + n] -= U[i * K + j] * err;
    }
  }
  return out;
}

TEST_CASE("block quant: GPTQ agrees with a plain double-precision GPTQ") {
  // The float, lazily blocked implementation and the reference may round a value that sits
  // within float noise of a half step differently, and their paths part from there: compare
  // the share of identical codes and the output error (today every code agrees).
  for (int64_t K : {96, 90})  // 90: the last block is 26 rows short
    for (bool sym : {true, false})
      for (bool act_order : {false, true}) {
        const Layer L(384, K, 40, 300);
        CAPTURE(K);
        CAPTURE(sym);
        CAPTURE(act_order);
        GptqOptions g;
        g.act_order = act_order;
        g.lazy_block = 32;  // three lazy blocks
        const auto got = quantize_gptq(L.W.data(), L.K, L.N, L.H, {4, 32, sym}, g);
        const auto want = reference_gptq(L.W, L.K, L.N, L.H, 4, 32, sym, act_order, g.damp);
        int64_t same = 0;
        for (size_t i = 0; i < got.q.size(); ++i) same += got.q[i] == want.q[i];
        const double frac = static_cast<double>(same) / static_cast<double>(got.q.size());
        const double eg = L.output_error(dequantize(got, 32)), ew = L.output_error(dequantize(want, 32));
        MESSAGE("identical codes " << frac << ", output error " << eg << " vs reference " << ew);
        CHECK(frac > 0.99);
        CHECK(eg == doctest::Approx(ew).epsilon(0.01));
        if (act_order) CHECK(got.scales == want.scales);  // static groups: from the original rows
      }
}

TEST_CASE("block quant: GPTQ has lower output error than RTN on correlated inputs") {
  const Layer L(512, 128, 48, 100);
  ThreadPool pool(2);
  for (bool sym : {true, false})
    for (bool act_order : {false, true}) {
      CAPTURE(sym);
      CAPTURE(act_order);
      const BlockParams p{4, 32, sym};
      GptqOptions g;
      g.act_order = act_order;
      const auto rtn = quantize_rtn(L.W.data(), L.K, L.N, p);
      const auto gq = quantize_gptq(L.W.data(), L.K, L.N, L.H, p, g);
      const double er = L.output_error(dequantize(rtn, 32)), eg = L.output_error(dequantize(gq, 32));
      MESSAGE("GPTQ / RTN output error: " << eg / er);
      CHECK(eg < 0.8 * er);
      // The pool splits columns only: the same result.
      check_same(quantize_gptq(L.W.data(), L.K, L.N, L.H, p, g, &pool), gq);
      // Codes in range, scales of the output usable (finite, nonzero).
      for (uint8_t q : gq.q) CHECK(q <= 15);
      for (float s : gq.scales) CHECK((std::isfinite(s) && s != 0.f));
      // A small lazy block gives the same quantization up to float reassociation: same error.
      GptqOptions small = g;
      small.lazy_block = 16;
      const double es = L.output_error(dequantize(quantize_gptq(L.W.data(), L.K, L.N, L.H, p, small), 32));
      CHECK(es == doctest::Approx(eg).epsilon(0.02));
    }
}

TEST_CASE("block quant: GPTQ with H = c I is RTN") {
  // Off-diagonal entries of U are exactly 0, so no error is spread and no row moves; act_order
  // sees equal diagonals and keeps the order.
  const int64_t K = 96, N = 20;
  const auto W = laplace(K * N, 8);
  std::vector<double> H(K * K, 0.0);
  for (int64_t k = 0; k < K; ++k) H[k * K + k] = 3.5;
  for (bool sym : {true, false})
    for (bool act_order : {false, true}) {
      CAPTURE(sym);
      CAPTURE(act_order);
      GptqOptions g;
      g.act_order = act_order;
      check_same(quantize_gptq(W.data(), K, N, H, {4, 32, sym}, g), quantize_rtn(W.data(), K, N, {4, 32, sym}));
    }
}

TEST_CASE("block quant: GPTQ zeroes dead inputs and survives an all-zero Hessian") {
  Layer L(256, 64, 16, 200);
  // Inputs 5 and 40 never fire.
  for (int64_t dead : {5, 40})
    for (int64_t j = 0; j < L.K; ++j) L.H[dead * L.K + j] = L.H[j * L.K + dead] = 0.0;
  for (bool act_order : {false, true}) {
    GptqOptions g;
    g.act_order = act_order;
    const auto r = quantize_gptq(L.W.data(), L.K, L.N, L.H, {4, 32, false}, g);
    const auto dq = dequantize(r, 32);
    for (int64_t n = 0; n < L.N; ++n) {
      CHECK(dq[5 * L.N + n] == 0.f);
      CHECK(dq[40 * L.N + n] == 0.f);
    }
  }
  const std::vector<double> zero(L.K * L.K, 0.0);
  const auto r = quantize_gptq(L.W.data(), L.K, L.N, zero, {4, 32, true}, {});
  for (float v : dequantize(r, 32)) CHECK(v == 0.f);
}

TEST_CASE("block quant: GPTQ raises the damping of an indefinite Hessian, refuses a hopeless one") {
  const int64_t K = 32, N = 8;
  const auto W = gaussian(K * N, 9);
  // Pairs [[1, 2], [2, 1]] on the diagonal: eigenvalues 3 and -1. damp 0.01, 0.1 and 1 (the
  // last leaves a zero pivot) fail; damp 10 works.
  std::vector<double> H(K * K, 0.0);
  for (int64_t k = 0; k < K; ++k) H[k * K + k] = 1.0;
  for (int64_t k = 0; k < K; k += 2) H[k * K + k + 1] = H[(k + 1) * K + k] = 2.0;
  const auto r = quantize_gptq(W.data(), K, N, H, {4, 32, false}, {});
  for (float v : dequantize(r, 32)) CHECK(std::isfinite(v));
  // Negative diagonal: no damping fixes it.
  std::vector<double> neg(K * K, 0.0);
  for (int64_t k = 0; k < K; ++k) neg[k * K + k] = -1.0;
  CHECK_THROWS_AS(quantize_gptq(W.data(), K, N, neg, {4, 32, false}, {}), slmops::Error);
  // NaN in the Hessian.
  auto bad = H;
  bad[3 * K + 1] = bad[1 * K + 3] = std::nan("");
  CHECK_THROWS_AS(quantize_gptq(W.data(), K, N, bad, {4, 32, false}, {}), slmops::Error);
  // Wrong size.
  CHECK_THROWS_AS(quantize_gptq(W.data(), K, N, std::vector<double>(10, 1.0), {4, 32, false}, {}), slmops::Error);
}

TEST_CASE("block quant: parameters are validated") {
  const auto W = gaussian(64, 1);
  CHECK_THROWS_AS(quantize_rtn(W.data(), 64, 1, {4, 24, true}), slmops::Error);
  CHECK_THROWS_AS(quantize_rtn(W.data(), 64, 1, {4, 8, true}), slmops::Error);
  CHECK_THROWS_AS(quantize_rtn(W.data(), 64, 1, {9, 32, true}), slmops::Error);
  const auto r = quantize_rtn(W.data(), 64, 1, {3, 32, true});
  CHECK_THROWS_AS(pack_matmulnbits_b(r, 3, 32), slmops::Error);
  CHECK_THROWS_AS(dequantize(r, 16), slmops::Error);
}

// ---- benchmarks: slmops_tests --test-suite=bench --no-skip -------------------------------

TEST_CASE("bench: block quantization of a 4096 x 4096 weight" * doctest::test_suite("bench") * doctest::skip()) {
  const int64_t K = 4096, N = 4096;
  const auto W = gaussian(K * N, 1, 0.02f);
  // A random positive definite H: X^T X of 1024 rows plus a diagonal, built as one GEMM-free
  // rank-update would take minutes in a test; a diagonally dominant random symmetric matrix
  // exercises the same code paths.
  std::vector<double> H(K * K);
  {
    std::mt19937 gen(2);
    std::normal_distribution<double> d(0.0, 1.0);
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j <= i; ++j) H[i * K + j] = H[j * K + i] = i == j ? 64.0 + std::fabs(d(gen)) : 0.01 * d(gen);
  }
  const BlockParams p{4, 32, false};
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    auto time = [&](const char* what, auto f) {
      timespec c0, c1;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
      const auto t0 = std::chrono::steady_clock::now();
      f();
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
      const double cpu = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
      std::printf("%-28s threads %d: wall %.3f s, process CPU %.3f s\n", what, threads, wall, cpu);
    };
    time("rtn 4-bit block 32 asym", [&] { quantize_rtn(W.data(), K, N, p, &pool); });
    time("rtn 4-bit block 32 sym", [&] { quantize_rtn(W.data(), K, N, {4, 32, true}, &pool); });
    time("hqq 4-bit block 32 (20 it)", [&] { quantize_hqq(W.data(), K, N, p, 20, &pool); });
    time("gptq 4-bit block 32 asym", [&] { quantize_gptq(W.data(), K, N, H, p, {}, &pool); });
    GptqOptions ao;
    ao.act_order = true;
    time("gptq act_order", [&] { quantize_gptq(W.data(), K, N, H, p, ao, &pool); });
  }
}
