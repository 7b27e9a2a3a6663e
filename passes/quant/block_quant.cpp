// Block-wise weight quantization: RTN, HQQ and GPTQ on one [K, N] matrix (see block_quant.h).
//
// Rounding (all three algorithms, bit for bit as ONNX Runtime's MlasQuantizeBlockwise):
//   q = clamp(roundf(w * (1 / scale) + zp), 0, 2^bits - 1)
// roundf rounds halves away from zero; the argument is >= -0.5 in both modes (up to float
// noise), so a tie rounds up. Scales come from the block's [min, max] as in MLAS:
//   symmetric:  m = |max| > |min| ? max : min, scale = m / -2^(bits-1), zp = 2^(bits-1)
//   asymmetric: lo = min(0, min), hi = max(0, max), scale = (hi - lo) / (2^bits - 1),
//               zp = clamp(roundf(-lo / scale), 0, 2^bits - 1)
// A block whose scale is 0 or whose reciprocal is not finite (all zeros, or all denormals)
// gets scale 1 and zp 2^(bits-1), so every value quantizes to zp and dequantizes to 0 (MLAS
// stores scale 0 there; any nonzero scale gives the same dequantized block).
//
// Memory order: W is [K, N] row-major and blocks run down columns, so RTN and HQQ copy a tile
// of 16 columns x one block (one 64-byte line per row) into a column-major buffer and work on
// contiguous block values. GPTQ keeps W row-major, as the paper's code does with its [out, in]
// weight: each row k of our W is one "column" of the paper's, updated for all N at once.
#include "passes/quant/block_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "ir/dtype.h"
#include "ir/error.h"
#include "runtime/kernels/avx2_moves.h"
#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/gemm.h"
#include "runtime/thread_pool.h"

namespace slmops::passes::quant {

namespace {

using runtime::ThreadPool;

// Runs fn(begin, end) over [0, n) on the pool, or inline without one.
template <typename F>
void parallel(ThreadPool* pool, int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  if (!pool) {
    fn(int64_t{0}, n);
    return;
  }
  pool->parallel_for(n, grain, [&](int64_t b, int64_t e) { fn(b, e); });
}

void check_params(const BlockParams& p, const char* what) {
  if (p.bits < 2 || p.bits > 8) bad_input("{}: bits {} is not supported (2..8)", what, p.bits);
  if (p.block_size < 16 || (p.block_size & (p.block_size - 1)) != 0)
    bad_input("{}: block_size {} must be a power of two >= 16", what, p.block_size);
}

BlockQuantized make_result(int64_t K, int64_t N, int64_t bs) {
  if (K < 0 || N < 0) failure("block quantization: negative shape [{}, {}]", K, N);
  BlockQuantized r;
  r.K = K;
  r.N = N;
  r.k_blocks = (K + bs - 1) / bs;
  r.q.resize(static_cast<size_t>(K * N));
  r.scales.resize(static_cast<size_t>(r.k_blocks * N));
  r.zero_points.resize(static_cast<size_t>(r.k_blocks * N));
  return r;
}

// Scale, its reciprocal and the zero point of one block.
struct BlockScale {
  float scale = 1.f;
  float recip = 1.f;
  int zp = 0;
};

// The RTN rule (file comment) from the block's min and max.
BlockScale rtn_scale(float mn, float mx, int bits, bool symmetric) {
  const int mid = 1 << (bits - 1);
  const float qmax = static_cast<float>((1 << bits) - 1);
  BlockScale s;
  if (symmetric) {
    const float m = std::fabs(mx) > std::fabs(mn) ? mx : mn;
    s.scale = m / static_cast<float>(-mid);
    s.zp = mid;
  } else {
    const float lo = std::min(mn, 0.f), hi = std::max(mx, 0.f);
    s.scale = (hi - lo) / qmax;
    const float z = s.scale != 0.f ? -lo / s.scale : 0.f;
    s.zp = z < 0.f ? 0 : z > qmax ? static_cast<int>(qmax) : static_cast<int>(std::round(z));
  }
  s.recip = s.scale != 0.f ? 1.f / s.scale : 0.f;
  if (s.scale == 0.f || !std::isfinite(s.recip) || !std::isfinite(s.scale)) s = {1.f, 1.f, mid};
  return s;
}

// MLAS's quantization of one value, clamp(roundf(w * recip + zp), 0, qmax); NaN goes to 0.
// roundf without the library call: for 0 <= x < qmax, x - trunc(x) is exact (Sterbenz).
inline uint8_t quantize_value(float w, float recip, float zp, float qmax) {
  const float x = w * recip + zp;
  if (!(x >= 0.f)) return 0;
  if (x >= qmax) return static_cast<uint8_t>(qmax);
  const int t = static_cast<int>(x);
  return static_cast<uint8_t>(t + (x - static_cast<float>(t) >= 0.5f ? 1 : 0));
}

BlockScale rtn_block(const float* w, int64_t len, int bits, bool symmetric) {
  float mn = std::numeric_limits<float>::max(), mx = -mn;
  for (int64_t i = 0; i < len; ++i) {
    mn = std::min(mn, w[i]);
    mx = std::max(mx, w[i]);
  }
  return rtn_scale(mn, mx, bits, symmetric);
}

void quantize_block(const float* w, int64_t len, const BlockScale& s, int bits, uint8_t* q) {
  const float qmax = static_cast<float>((1 << bits) - 1), zp = static_cast<float>(s.zp);
  for (int64_t i = 0; i < len; ++i) q[i] = quantize_value(w[i], s.recip, zp, qmax);
}

// Sum of squared dequantization errors of a block quantized with s.
double block_sse(const float* w, int64_t len, const BlockScale& s, int bits) {
  const float qmax = static_cast<float>((1 << bits) - 1), zp = static_cast<float>(s.zp);
  double e = 0;
  for (int64_t i = 0; i < len; ++i) {
    const float dq = (static_cast<float>(quantize_value(w[i], s.recip, zp, qmax)) - zp) * s.scale;
    const double d = static_cast<double>(w[i]) - dq;
    e += d * d;
  }
  return e;
}

// Calls fn(n, b, values, len) for every block of every column, values contiguous: tiles of
// kTile columns are transposed one block at a time into a local buffer.
template <typename F>
void for_each_block(const float* W, int64_t K, int64_t N, int64_t bs, ThreadPool* pool, F&& fn) {
  constexpr int64_t kTile = 16;
  const int64_t tiles = (N + kTile - 1) / kTile, kb = (K + bs - 1) / bs;
  parallel(pool, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> buf(static_cast<size_t>(kTile * bs));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * kTile, nc = std::min(kTile, N - n0);
      for (int64_t b = 0; b < kb; ++b) {
        const int64_t k0 = b * bs, len = std::min(bs, K - k0);
        for (int64_t r = 0; r < len; ++r) {
          const float* row = W + (k0 + r) * N + n0;
          for (int64_t c = 0; c < nc; ++c) buf[c * bs + r] = row[c];
        }
        for (int64_t c = 0; c < nc; ++c) fn(n0 + c, b, buf.data() + c * bs, len);
      }
    }
  });
}

// ---- HQQ ------------------------------------------------------------------------------------

// Generalised soft-thresholding of the lp (p < 1) proximal step of HQQ:
//   shrink(x) = sign(x) * max(0, |x| - |x|^(p-1) / beta).
// It is nonzero only when |x|^(2-p) > 1 / beta, i.e. |x| > threshold = beta^(-1/(2-p)).
inline float shrink_lp(float x, float beta, float p, float threshold) {
  const float a = std::fabs(x);
  if (a <= threshold) return 0.f;
  const float t = a - std::pow(a, p - 1.f) / beta;
  return t > 0.f ? std::copysign(t, x) : 0.f;
}

// HQQ on one block (asymmetric), starting from the RTN scale and zero point. Each iteration:
//   Wq = clamp(round(W / s + z)),  Wr = (Wq - z) s,  We = shrink_lp(W - Wr, beta),
//   (s, z) = least squares fit of W - We ~ s (Wq - z) with z an integer in [0, 2^bits-1]:
//            fit W - We ~ a Wq + c, z = clamp(round(-c / a)), then s = <W - We, Wq - z> / |Wq - z|^2,
//   beta *= kappa;
// stopping when the mean |W - Wr| stops falling (the hqq library's rule) and keeping the best
// (s, z) met. The paper moves only a float z with s fixed; with MatMulNBits' integer zero
// points that only slides the 2^bits-point window along a fixed grid, and rounding the paper's
// z at the end measured ~0.5% more squared error than RTN on Gaussian blocks, so the scale
// takes part in the quadratic step (5-6% less squared error than RTN). Finally the block keeps
// whichever of HQQ and RTN has the smaller squared error, so HQQ is never worse than RTN.
BlockScale hqq_block(const float* w, int64_t len, int bits, int iterations, float* qbuf, float* tbuf) {
  constexpr float kLpNorm = 0.7f, kBeta0 = 10.f, kKappa = 1.01f;
  const BlockScale rtn = rtn_block(w, len, bits, false);
  const double rtn_sse = block_sse(w, len, rtn, bits);
  if (rtn_sse == 0) return rtn;  // exact already (e.g. a block of zeros)
  const float qmax = static_cast<float>((1 << bits) - 1);
  float s = rtn.scale, z = static_cast<float>(rtn.zp), beta = kBeta0;
  BlockScale best = rtn;
  double best_err = std::numeric_limits<double>::infinity();
  for (int it = 0; it < iterations; ++it) {
    const float r = 1.f / s, threshold = std::pow(beta, -1.f / (2.f - kLpNorm));
    double err = 0;
    for (int64_t i = 0; i < len; ++i) {
      qbuf[i] = quantize_value(w[i], r, z, qmax);
      const float e = w[i] - (qbuf[i] - z) * s;
      tbuf[i] = w[i] - shrink_lp(e, beta, kLpNorm, threshold);
      err += std::fabs(e);
    }
    if (!(err < best_err)) break;
    best_err = err;
    best = {s, r, static_cast<int>(z)};
    // Quadratic step on (s, z).
    double mq = 0, mt = 0;
    for (int64_t i = 0; i < len; ++i) mq += qbuf[i], mt += tbuf[i];
    mq /= static_cast<double>(len);
    mt /= static_cast<double>(len);
    double sqq = 0, sqt = 0;
    for (int64_t i = 0; i < len; ++i) {
      sqq += (qbuf[i] - mq) * (qbuf[i] - mq);
      sqt += (qbuf[i] - mq) * (tbuf[i] - mt);
    }
    if (!(sqq > 0) || !(sqt > 0)) break;
    const double a = sqt / sqq, c = mt - a * mq;
    const double zi = std::clamp(std::round(-c / a), 0.0, static_cast<double>(qmax));
    double num = 0, den = 0;
    for (int64_t i = 0; i < len; ++i) {
      num += tbuf[i] * (qbuf[i] - zi);
      den += (qbuf[i] - zi) * (qbuf[i] - zi);
    }
    if (!(den > 0)) break;
    const float s_new = static_cast<float>(num / den);
    if (!(s_new > 0) || !std::isfinite(1.f / s_new)) break;
    s = s_new;
    z = static_cast<float>(zi);
    beta *= kKappa;
  }
  return block_sse(w, len, best, bits) < rtn_sse ? best : rtn;
}

// ---- dense linear algebra for GPTQ (double, row-major, leading dimension ld) ----------------

// C[M, Nc] += alpha * A[M, Kd] * B[Kd, Nc] in register tiles of 4 x 8, written with GCC
// vector types so that the same body compiles to SSE2 and, in the clone below, to AVX2 + FMA.
using v4d = double __attribute__((vector_size(32)));

[[gnu::always_inline]] inline void gemm_acc_body(int64_t M, int64_t Nc, int64_t Kd, double alpha, const double* A,
                                                 int64_t lda, const double* B, int64_t ldb, double* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) {
    const double* a0 = A + i * lda;
    int64_t j = 0;
    for (; j + 8 <= Nc; j += 8) {
      v4d acc[4][2] = {};
      for (int64_t l = 0; l < Kd; ++l) {
        v4d b0, b1;
        __builtin_memcpy(&b0, B + l * ldb + j, sizeof b0);
        __builtin_memcpy(&b1, B + l * ldb + j + 4, sizeof b1);
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          const double a = a0[r * lda + l];
          const v4d av = {a, a, a, a};
          acc[r][0] += av * b0;
          acc[r][1] += av * b1;
        }
      }
      for (int r = 0; r < 4; ++r)
        for (int h = 0; h < 2; ++h) {
          double* c = C + (i + r) * ldc + j + 4 * h;
          for (int x = 0; x < 4; ++x) c[x] += alpha * acc[r][h][x];
        }
    }
    for (; j < Nc; ++j)
      for (int r = 0; r < 4; ++r) {
        double acc = 0;
        for (int64_t l = 0; l < Kd; ++l) acc += a0[r * lda + l] * B[l * ldb + j];
        C[(i + r) * ldc + j] += alpha * acc;
      }
  }
  for (; i < M; ++i)
    for (int64_t l = 0; l < Kd; ++l) {
      const double a = alpha * A[i * lda + l];
      const double* b = B + l * ldb;
      double* c = C + i * ldc;
      for (int64_t j = 0; j < Nc; ++j) c[j] += a * b[j];
    }
}

[[gnu::target("avx,fma")]] void gemm_acc_fma(int64_t M, int64_t Nc, int64_t Kd, double alpha, const double* A,
                                             int64_t lda, const double* B, int64_t ldb, double* C, int64_t ldc) {
  gemm_acc_body(M, Nc, Kd, alpha, A, lda, B, ldb, C, ldc);
}

void gemm_acc_generic(int64_t M, int64_t Nc, int64_t Kd, double alpha, const double* A, int64_t lda, const double* B,
                      int64_t ldb, double* C, int64_t ldc) {
  gemm_acc_body(M, Nc, Kd, alpha, A, lda, B, ldb, C, ldc);
}

void gemm_acc(int64_t M, int64_t Nc, int64_t Kd, double alpha, const double* A, int64_t lda, const double* B,
              int64_t ldb, double* C, int64_t ldc) {
  static const bool fma = runtime::kernels::cpu().fma;
  if (M <= 0 || Nc <= 0 || Kd <= 0) return;
  (fma ? gemm_acc_fma : gemm_acc_generic)(M, Nc, Kd, alpha, A, lda, B, ldb, C, ldc);
}

constexpr int64_t kPanel = 64;  // block size of the factorizations
constexpr int64_t kRows = 4;    // rows per parallel work item (the kernel's register tile)

// Work items 0..n-1 in an order that alternates the cheap and the expensive ends of a
// triangular loop, so the pool's contiguous chunks carry similar work.
inline int64_t zigzag(int64_t t, int64_t n) { return (t & 1) ? n - 1 - t / 2 : t / 2; }

// In-place lower Cholesky A = L L^T of the lower triangle (right-looking, blocked). The strict
// upper triangle is left undefined. False when a pivot is not positive and finite.
bool cholesky_lower(double* A, int64_t n, ThreadPool* pool) {
  std::vector<double> panel_t;
  for (int64_t k0 = 0; k0 < n; k0 += kPanel) {
    const int64_t k1 = std::min(k0 + kPanel, n), nb = k1 - k0;
    // Diagonal block, unblocked.
    for (int64_t j = k0; j < k1; ++j) {
      double d = A[j * n + j];
      for (int64_t l = k0; l < j; ++l) d -= A[j * n + l] * A[j * n + l];
      if (!(d > 0) || !std::isfinite(d)) return false;
      d = std::sqrt(d);
      A[j * n + j] = d;
      for (int64_t i = j + 1; i < k1; ++i) {
        double v = A[i * n + j];
        for (int64_t l = k0; l < j; ++l) v -= A[i * n + l] * A[j * n + l];
        A[i * n + j] = v / d;
      }
    }
    if (k1 == n) break;
    // Panel below it: L21 = A21 L11^-T, row by row.
    const int64_t rows = n - k1;
    parallel(pool, rows, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = k1 + b; i < k1 + e; ++i) {
        double* a = A + i * n;
        for (int64_t j = k0; j < k1; ++j) {
          double v = a[j];
          for (int64_t l = k0; l < j; ++l) v -= a[l] * A[j * n + l];
          a[j] = v / A[j * n + j];
        }
      }
    });
    // Trailing update A22 -= L21 L21^T (lower part, plus a few entries above the diagonal
    // inside each 4-row tile), with L21 transposed so the kernel reads rows.
    panel_t.assign(static_cast<size_t>(nb * rows), 0.0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t l = 0; l < nb; ++l) panel_t[l * rows + i] = A[(k1 + i) * n + k0 + l];
    const int64_t items = (rows + kRows - 1) / kRows;
    parallel(pool, items, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t r0 = zigzag(t, items) * kRows, r1 = std::min(r0 + kRows, rows);
        gemm_acc(r1 - r0, r1, nb, -1.0, A + (k1 + r0) * n + k0, n, panel_t.data(), rows, A + (k1 + r0) * n + k1, n);
      }
    });
  }
  return true;
}

// In-place inverse of a lower-triangular L whose strict upper triangle is zero (LAPACK's
// dtrtri order: block columns from the last, A21 := -(X22 A21) L11^-1, then L11 := L11^-1).
void invert_lower(double* A, int64_t n, ThreadPool* pool) {
  std::vector<double> tmp, panel;
  const int64_t last = (n - 1) / kPanel * kPanel;
  for (int64_t c0 = last; c0 >= 0; c0 -= kPanel) {
    const int64_t c1 = std::min(c0 + kPanel, n), nb = c1 - c0, rows = n - c1;
    if (rows > 0) {
      // tmp = X22 A21 (X22 is lower with zeros above, so each 4-row tile may run to its last
      // row), with A21 copied out contiguously first.
      panel.resize(static_cast<size_t>(rows * nb));
      for (int64_t i = 0; i < rows; ++i) std::copy_n(A + (c1 + i) * n + c0, nb, panel.begin() + i * nb);
      tmp.assign(static_cast<size_t>(rows * nb), 0.0);
      const int64_t items = (rows + kRows - 1) / kRows;
      parallel(pool, items, 1, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const int64_t r0 = zigzag(t, items) * kRows, r1 = std::min(r0 + kRows, rows);
          gemm_acc(r1 - r0, nb, r1, 1.0, A + (c1 + r0) * n + c1, n, panel.data(), nb, tmp.data() + r0 * nb, nb);
        }
      });
      // A21 = -tmp L11^-1: solve x L11 = -tmp_row by back substitution.
      parallel(pool, rows, 64, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const double* t = tmp.data() + i * nb;
          double* x = A + (c1 + i) * n + c0;
          for (int64_t j = nb - 1; j >= 0; --j) {
            double v = -t[j];
            for (int64_t m = j + 1; m < nb; ++m) v -= x[m] * A[(c0 + m) * n + c0 + j];
            x[j] = v / A[(c0 + j) * n + c0 + j];
          }
        }
      });
    }
    // L11^-1 in place from X L = I: X[i][j] = -(sum_{j<m<=i} X[i][m] L[m][j]) / L[j][j],
    // column j from the last, rows from the bottom so L[m][j] (m <= i) is still unchanged.
    for (int64_t j = c1 - 1; j >= c0; --j) {
      const double ljj = A[j * n + j];
      for (int64_t i = c1 - 1; i > j; --i) {
        double v = 0;
        for (int64_t m = j + 1; m <= i; ++m) v += A[i * n + m] * A[m * n + j];
        A[i * n + j] = -v / ljj;
      }
      A[j * n + j] = 1.0 / ljj;
    }
  }
}

}  // namespace

// U, upper with U^T U = inverse(Hp) where Hp[i][j] = H[perm[i]][perm[j]], a zero diagonal
// entry reads as 1 and damp is added to the diagonal; as float for the GPTQ loop. Through the
// reversal J (J[i][j] = [i + j == n - 1]): J Hp J = M M^T (lower Cholesky) gives
// Hp = (J M J)(J M J)^T with J M J upper, so U = (J M J)^-1 = J M^-1 J: one Cholesky and one
// triangular inverse instead of the reference code's Cholesky, inverse and Cholesky.
bool inverse_cholesky_upper(const std::vector<double>& H, const std::vector<int64_t>& perm, double damp,
                            std::vector<float>& U, ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(perm.size());
  std::vector<double> A(static_cast<size_t>(n * n), 0.0);
  parallel(pool, n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t hi = perm[n - 1 - i];
      for (int64_t j = 0; j < i; ++j) A[i * n + j] = H[hi * n + perm[n - 1 - j]];
      const double d = H[hi * n + hi];
      A[i * n + i] = (d == 0 ? 1.0 : d) + damp;
    }
  });
  if (!cholesky_lower(A.data(), n, pool)) return false;
  for (int64_t i = 0; i < n; ++i) std::fill(A.begin() + i * n + i + 1, A.begin() + (i + 1) * n, 0.0);
  invert_lower(A.data(), n, pool);
  U.assign(static_cast<size_t>(n * n), 0.f);
  bool finite = true;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      const float v = static_cast<float>(A[(n - 1 - i) * n + (n - 1 - j)]);
      finite = finite && std::isfinite(v);
      U[i * n + j] = v;
    }
  return finite;
}

namespace {

// RTN over tiles of columns, vectorized across columns: W's rows are contiguous in n, so a
// tile of kTile columns is walked row by row (min/max, then codes). Same arithmetic as
// rtn_block + quantize_value, branch-free. For every block of the tile, `sink(n0, nc, b, len,
// codes)` receives the codes row-major (codes[i * kRtnTile + c] for row b*bs + i, column n0 + c).
constexpr int64_t kRtnTile = 64;

// One block of one tile: min/max per column, the RTN scale, then the codes, written row-major
// to qt (qt[i * kRtnTile + c]). Compiled twice (AVX2 and baseline x86-64), chosen at load time
// (an ifunc); the AVX2 clone uses no FMA, so both give the same bits.
__attribute__((target_clones("avx2", "default"))) void rtn_tile_block(
    const float* W, int64_t N, int64_t n0, int64_t nc, int64_t k0, int64_t len, int bits, bool symmetric,
    float* scales, uint8_t* zero_points, uint8_t* qt) {
  const float qmax = static_cast<float>((1 << bits) - 1);
  float mn[kRtnTile], mx[kRtnTile], rc[kRtnTile], zf[kRtnTile];
  uint8_t code[kRtnTile];
  for (int64_t c = 0; c < nc; ++c) {
    mn[c] = std::numeric_limits<float>::max();
    mx[c] = -std::numeric_limits<float>::max();
  }
  for (int64_t i = 0; i < len; ++i) {
    const float* __restrict row = W + (k0 + i) * N + n0;
    for (int64_t c = 0; c < nc; ++c) {
      // std::min's semantics written out on values, so that it becomes minps/maxps.
      const float v = row[c], a = mn[c], z = mx[c];
      mn[c] = v < a ? v : a;
      mx[c] = z < v ? v : z;
    }
  }
  for (int64_t c = 0; c < nc; ++c) {
    const BlockScale s = rtn_scale(mn[c], mx[c], bits, symmetric);
    scales[c] = s.scale;
    zero_points[c] = static_cast<uint8_t>(s.zp);
    rc[c] = s.recip;
    zf[c] = static_cast<float>(s.zp);
  }
  for (int64_t i = 0; i < len; ++i) {
    const float* __restrict row = W + (k0 + i) * N + n0;
    for (int64_t c = 0; c < nc; ++c) {
      // quantize_value without branches: NaN and negatives -> 0, clamp at qmax, round half up.
      float x = row[c] * rc[c] + zf[c];
      x = x >= 0.f ? x : 0.f;
      x = x < qmax ? x : qmax;
      const int ti = static_cast<int>(x);
      code[c] = static_cast<uint8_t>(ti + (x - static_cast<float>(ti) >= 0.5f ? 1 : 0));
    }
    std::memcpy(qt + i * kRtnTile, code, static_cast<size_t>(nc));
  }
}

template <typename Sink>
void rtn_tiles(const float* W, int64_t K, int64_t N, const BlockParams& p, float* scales, uint8_t* zero_points,
               ThreadPool* pool, Sink&& sink) {
  const int64_t bs = p.block_size, kb = (K + bs - 1) / bs;
  const int64_t tiles = (N + kRtnTile - 1) / kRtnTile;
  parallel(pool, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<uint8_t> qt(static_cast<size_t>(kRtnTile * bs));
    float sc[kRtnTile];
    uint8_t zp[kRtnTile];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * kRtnTile, nc = std::min(kRtnTile, N - n0);
      for (int64_t b = 0; b < kb; ++b) {
        const int64_t k0 = b * bs, len = std::min(bs, K - k0);
        rtn_tile_block(W, N, n0, nc, k0, len, p.bits, p.symmetric, sc, zp, qt.data());
        for (int64_t c = 0; c < nc; ++c) {
          scales[(n0 + c) * kb + b] = sc[c];
          zero_points[(n0 + c) * kb + b] = zp[c];
        }
        sink(n0, nc, b, len, qt.data());
      }
    }
  });
}

}  // namespace

BlockQuantized quantize_rtn(const float* W, int64_t K, int64_t N, const BlockParams& p, ThreadPool* pool) {
  check_params(p, "rtn");
  BlockQuantized r = make_result(K, N, p.block_size);
  const int64_t bs = p.block_size;
  rtn_tiles(W, K, N, p, r.scales.data(), r.zero_points.data(), pool,
            [&](int64_t n0, int64_t nc, int64_t b, int64_t len, const uint8_t* codes) {
              for (int64_t c = 0; c < nc; ++c) {
                uint8_t* dst = r.q.data() + (n0 + c) * K + b * bs;
                for (int64_t i = 0; i < len; ++i) dst[i] = codes[i * kRtnTile + c];
              }
            });
  return r;
}

void quantize_rtn_packed(const float* W, int64_t K, int64_t N, const BlockParams& p, uint8_t* B, float* scales,
                         uint8_t* zero_points, ThreadPool* pool) {
  check_params(p, "rtn");
  const int64_t bs = p.block_size, kb = (K + bs - 1) / bs;
  if ((p.bits != 4 && p.bits != 8) || K % bs != 0)
    failure("quantize_rtn_packed: bits {} with K {} and block size {} (needs bits 4 or 8 and whole blocks)", p.bits, K, bs);
  const int64_t blob = bs * p.bits / 8;
  const bool four = p.bits == 4;
  rtn_tiles(W, K, N, p, scales, zero_points, pool,
            [&](int64_t n0, int64_t nc, int64_t b, int64_t, const uint8_t* codes) {
              for (int64_t c = 0; c < nc; ++c) {
                uint8_t* __restrict dst = B + ((n0 + c) * kb + b) * blob;
                const uint8_t* __restrict q = codes + c;
                if (four)
                  for (int64_t j = 0; j < blob; ++j)
                    dst[j] = static_cast<uint8_t>(q[2 * j * kRtnTile] | (q[(2 * j + 1) * kRtnTile] << 4));
                else
                  for (int64_t j = 0; j < bs; ++j) dst[j] = q[j * kRtnTile];
              }
            });
}

namespace {

// One row's blocks (rtn_tile_block's arithmetic along a row instead of down a tile's columns:
// the same min/max, scale and branch-free codes, so the same bits).
__attribute__((target_clones("avx2", "default"))) void rtn_row(const float* __restrict w, int64_t K, int64_t bs,
                                                               int bits, bool symmetric, uint8_t* __restrict dst,
                                                               float* scales, uint8_t* zero_points) {
  const float qmax = static_cast<float>((1 << bits) - 1);
  const int64_t blob = bs * bits / 8;
  uint8_t code[256];
  for (int64_t b = 0; b * bs < K; ++b) {
    const float* __restrict x = w + b * bs;
    float mn = std::numeric_limits<float>::max(), mx = -std::numeric_limits<float>::max();
    for (int64_t i = 0; i < bs; ++i) {
      const float v = x[i];
      mn = v < mn ? v : mn;
      mx = mx < v ? v : mx;
    }
    const BlockScale s = rtn_scale(mn, mx, bits, symmetric);
    scales[b] = s.scale;
    zero_points[b] = static_cast<uint8_t>(s.zp);
    const float rc = s.recip, zf = static_cast<float>(s.zp);
    for (int64_t i = 0; i < bs; ++i) {
      float v = x[i] * rc + zf;
      v = v >= 0.f ? v : 0.f;
      v = v < qmax ? v : qmax;
      const int ti = static_cast<int>(v);
      code[i] = static_cast<uint8_t>(ti + (v - static_cast<float>(ti) >= 0.5f ? 1 : 0));
    }
    uint8_t* out = dst + b * blob;
    if (bits == 4)
      for (int64_t j = 0; j < blob; ++j) out[j] = static_cast<uint8_t>(code[2 * j] | (code[2 * j + 1] << 4));
    else
      std::memcpy(out, code, static_cast<size_t>(bs));
  }
}

// rtn_row for 4 bits in AVX2 intrinsics, float32 or bfloat16 rows read in place: min and max
// per block, then the scales of eight blocks at once (rtn_scale lane by lane), then the codes,
// packed two per byte. No FMA (the target has none) and every comparison as rtn_row makes it,
// so the bits are rtn_row's (tested). Min and max do not depend on the order of the values:
// NaN never enters them, and a signed zero in either gives the same scale and zero point.
__attribute__((target("avx2"))) inline float hmin8(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}
__attribute__((target("avx2"))) inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

// clamp(x, 0, qmax) rounded half up, as rtn_row's codes: NaN and negatives give 0.
__attribute__((target("avx2"))) inline __m256i round_clamped(__m256 x, __m256 qmax) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_setzero_ps()), qmax);  // x > 0 ? x : 0, then x < qmax ? x : qmax
  const __m256i t = _mm256_cvttps_epi32(x);
  const __m256 frac = _mm256_sub_ps(x, _mm256_cvtepi32_ps(t));  // exact (Sterbenz)
  return _mm256_sub_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
}

// rtn_scale (4 bits) of eight blocks, lane by lane: scale, reciprocal and zero point.
__attribute__((target("avx2"))) inline void rtn_scale8(__m256 mn, __m256 mx, bool symmetric, __m256& scale,
                                                       __m256& recip, __m256i& zp) {
  const __m256 zero = _mm256_setzero_ps(), qmax = _mm256_set1_ps(15.f), one = _mm256_set1_ps(1.f);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const __m256i mid = _mm256_set1_epi32(8);
  __m256 s;
  __m256i z;
  if (symmetric) {
    const __m256 take_mx = _mm256_cmp_ps(_mm256_and_ps(mx, abs_mask), _mm256_and_ps(mn, abs_mask), _CMP_GT_OQ);
    s = _mm256_div_ps(_mm256_blendv_ps(mn, mx, take_mx), _mm256_set1_ps(-8.f));
    z = mid;
  } else {
    const __m256 lo = _mm256_min_ps(zero, mn), hi = _mm256_max_ps(zero, mx);  // std::min(mn, 0), std::max(mx, 0)
    s = _mm256_div_ps(_mm256_sub_ps(hi, lo), qmax);
    // clamp(round(-lo / s)) (std::round: z >= 0 here, so half up); a zero s is replaced below.
    z = round_clamped(_mm256_div_ps(_mm256_xor_ps(lo, _mm256_set1_ps(-0.f)), s), qmax);
  }
  const __m256 r = _mm256_div_ps(one, s);
  // A zero scale (its reciprocal is infinite), or a scale or reciprocal that is not finite:
  // scale 1, reciprocal 1, zp 8.
  const __m256 fallback = _mm256_or_ps(_mm256_cmp_ps(_mm256_and_ps(r, abs_mask), inf, _CMP_NLT_UQ),
                                       _mm256_cmp_ps(_mm256_and_ps(s, abs_mask), inf, _CMP_NLT_UQ));
  scale = _mm256_blendv_ps(s, one, fallback);
  recip = _mm256_blendv_ps(r, one, fallback);
  zp = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(z), _mm256_castsi256_ps(mid), fallback));
}

// Rows [N, K] of 4-bit codes: K a multiple of 32 and of bs, bs a multiple of 8.
// kEs: 4 for float32 rows, 2 for bfloat16.
template <size_t kEs>
__attribute__((target("avx2"))) void rtn_rows4_avx2(const void* W, int64_t K, int64_t N, int64_t bs, bool symmetric,
                                                    uint8_t* B, float* scales, uint8_t* zero_points) {
  using runtime::kernels::load8_as_float;
  const int64_t kb = K / bs, kb8 = (kb + 7) / 8 * 8;
  std::vector<float> mn(static_cast<size_t>(kb8), 0.f), mx(mn.size(), 0.f), rc(mn.size()), zpf(mn.size()),
      sc(mn.size());
  alignas(32) int32_t zpi[8];
  const __m256 qmax = _mm256_set1_ps(15.f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), low_bytes = _mm256_set1_epi16(0x00ff);
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* row = static_cast<const uint8_t*>(W) + static_cast<size_t>(n * K) * kEs;
    for (int64_t b = 0; b < kb; ++b) {
      __m256 lo = _mm256_set1_ps(std::numeric_limits<float>::max()),
             hi = _mm256_set1_ps(-std::numeric_limits<float>::max());
      for (int64_t i = b * bs; i < (b + 1) * bs; i += 8) {
        const __m256 v = load8_as_float<kEs>(row + i * kEs);
        lo = _mm256_min_ps(v, lo);  // v < lo ? v : lo: NaN stays out
        hi = _mm256_max_ps(v, hi);
      }
      mn[static_cast<size_t>(b)] = hmin8(lo);
      mx[static_cast<size_t>(b)] = hmax8(hi);
    }
    for (int64_t g = 0; g < kb; g += 8) {
      __m256 s, r;
      __m256i z;
      rtn_scale8(_mm256_loadu_ps(&mn[static_cast<size_t>(g)]), _mm256_loadu_ps(&mx[static_cast<size_t>(g)]), symmetric,
                 s, r, z);
      _mm256_storeu_ps(&sc[static_cast<size_t>(g)], s);
      _mm256_storeu_ps(&rc[static_cast<size_t>(g)], r);
      _mm256_storeu_ps(&zpf[static_cast<size_t>(g)], _mm256_cvtepi32_ps(z));
      _mm256_store_si256(reinterpret_cast<__m256i*>(zpi), z);
      for (int64_t j = 0; j < 8 && g + j < kb; ++j) zero_points[n * kb + g + j] = static_cast<uint8_t>(zpi[j]);
    }
    std::memcpy(scales + n * kb, sc.data(), static_cast<size_t>(kb) * sizeof(float));
    uint8_t* out = B + n * K / 2;
    for (int64_t i = 0; i < K; i += 32) {
      __m256i c[4];
      for (int j = 0; j < 4; ++j) {
        const size_t b = static_cast<size_t>((i + 8 * j) / bs);
        const __m256 x =
            _mm256_add_ps(_mm256_mul_ps(load8_as_float<kEs>(row + (i + 8 * j) * kEs), _mm256_broadcast_ss(&rc[b])),
                          _mm256_broadcast_ss(&zpf[b]));
        c[j] = round_clamped(x, qmax);
      }
      // 32 codes to bytes in order, then each byte pair (even | odd << 8) to even | odd << 4.
      __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
      bytes = _mm256_permutevar8x32_epi32(bytes, order);
      const __m256i pairs = _mm256_and_si256(_mm256_or_si256(bytes, _mm256_srli_epi16(bytes, 4)), low_bytes);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i / 2),
                       _mm_packus_epi16(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1)));
    }
  }
}

bool rows4_avx2_fits(int64_t K, const BlockParams& p) {
  return p.bits == 4 && p.block_size % 8 == 0 && K % 32 == 0 && runtime::kernels::cpu().avx2;
}

void check_rows_params(int64_t K, const BlockParams& p) {
  check_params(p, "rtn");
  if ((p.bits != 4 && p.bits != 8) || K % p.block_size != 0 || p.block_size > 256)
    failure("quantize_rtn_rows_packed: bits {} with K {} and block size {} (needs bits 4 or 8 and whole blocks)",
            p.bits, K, p.block_size);
}

}  // namespace

void quantize_rtn_rows_packed(const float* Wt, int64_t K, int64_t N, const BlockParams& p, uint8_t* B, float* scales,
                              uint8_t* zero_points) {
  check_rows_params(K, p);
  const int64_t bs = p.block_size, kb = K / bs;
  if (rows4_avx2_fits(K, p)) return rtn_rows4_avx2<4>(Wt, K, N, bs, p.symmetric, B, scales, zero_points);
  for (int64_t n = 0; n < N; ++n)
    rtn_row(Wt + n * K, K, bs, p.bits, p.symmetric, B + n * kb * (bs * p.bits / 8), scales + n * kb,
            zero_points + n * kb);
}

void quantize_rtn_rows_packed_bf16(const void* Wt, int64_t K, int64_t N, const BlockParams& p, uint8_t* B,
                                   float* scales, uint8_t* zero_points) {
  check_rows_params(K, p);
  const int64_t bs = p.block_size, kb = K / bs;
  if (rows4_avx2_fits(K, p)) return rtn_rows4_avx2<2>(Wt, K, N, bs, p.symmetric, B, scales, zero_points);
  const uint8_t* bytes = static_cast<const uint8_t*>(Wt);
  std::vector<float> w(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {  // byte copies: a checkpoint's tensors need not be 2-byte aligned
      uint16_t h;
      std::memcpy(&h, bytes + 2 * (n * K + k), 2);
      w[static_cast<size_t>(k)] = ir::bfloat16_to_float(h);
    }
    rtn_row(w.data(), K, bs, p.bits, p.symmetric, B + n * kb * (bs * p.bits / 8), scales + n * kb,
            zero_points + n * kb);
  }
}

BlockQuantized quantize_hqq(const float* W, int64_t K, int64_t N, const BlockParams& p, int iterations,
                            ThreadPool* pool) {
  check_params(p, "hqq");
  if (p.symmetric) return quantize_rtn(W, K, N, p, pool);
  if (iterations < 0) bad_input("hqq: iterations {} must be >= 0", iterations);
  BlockQuantized r = make_result(K, N, p.block_size);
  const int64_t bs = p.block_size, kb = r.k_blocks;
  for_each_block(W, K, N, bs, pool, [&](int64_t n, int64_t b, const float* w, int64_t len) {
    thread_local std::vector<float> qbuf, tbuf;
    qbuf.resize(static_cast<size_t>(bs));
    tbuf.resize(static_cast<size_t>(bs));
    const BlockScale s = hqq_block(w, len, p.bits, iterations, qbuf.data(), tbuf.data());
    quantize_block(w, len, s, p.bits, r.q.data() + n * K + b * bs);
    r.scales[n * kb + b] = s.scale;
    r.zero_points[n * kb + b] = static_cast<uint8_t>(s.zp);
  });
  return r;
}

// GPTQ, following the reference fasterquant with W transposed (our row k = its column k):
//   dead = diag(H) == 0: H[k,k] = 1, W[k,:] = 0
//   act_order: perm = rows by decreasing diag(H) (stable); scales from the unpermuted blocks
//              before any update (the reference's static_groups)
//   U = upper Cholesky of inverse(H + damp * mean(diag(H)) I); on failure damp *= 10, 4 times
//   for each lazy block [i1, i2): for i in it: quantize row i, e = (w - dq) / U[i,i],
//       rows i+1..i2-1 -= U[i, r] e; then rows i2.. -= U[i1:i2, i2:]^T E (one GEMM).
// Without act_order a block's scales are set from its rows when its first row is reached: at
// that point every row of the block has absorbed the errors of all rows before it (the lazy
// block is kept a multiple or a divisor of block_size), unlike the reference, which reads the
// not yet updated copy when a group starts inside a lazy block.
BlockQuantized quantize_gptq(const float* W, int64_t K, int64_t N, const std::vector<double>& H, const BlockParams& p,
                             const GptqOptions& g, ThreadPool* pool) {
  check_params(p, "gptq");
  if (static_cast<int64_t>(H.size()) != K * K)
    failure("gptq: the Hessian holds {} values, expected {} x {}", H.size(), K, K);
  if (!(g.damp >= 0) || !std::isfinite(g.damp)) bad_input("gptq: damp {} must be >= 0", g.damp);
  if (g.lazy_block < 1) bad_input("gptq: lazy_block {} must be >= 1", g.lazy_block);
  const int64_t bs = p.block_size;
  BlockQuantized r = make_result(K, N, bs);
  if (K == 0 || N == 0) return r;
  const int64_t kb = r.k_blocks;
  const int bits = p.bits;
  const float qmax = static_cast<float>((1 << bits) - 1);
  int64_t lazy = g.lazy_block;
  if (bs % lazy != 0) lazy = (lazy + bs - 1) / bs * bs;

  // Working copy of W with dead rows zeroed.
  std::vector<float> Wk(W, W + K * N);
  for (int64_t k = 0; k < K; ++k)
    if (H[k * K + k] == 0) std::fill(Wk.begin() + k * N, Wk.begin() + (k + 1) * N, 0.f);

  std::vector<int64_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  if (g.act_order) {
    auto diag = [&](int64_t k) { return H[k * K + k] == 0 ? 1.0 : H[k * K + k]; };
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return diag(a) > diag(b); });
    // Static groups: scales of the original blocks, then the rows in their new order.
    const BlockQuantized s = quantize_rtn(Wk.data(), K, N, p, pool);
    r.scales = s.scales;
    r.zero_points = s.zero_points;
    std::vector<float> permuted(Wk.size());
    for (int64_t i = 0; i < K; ++i) std::copy_n(Wk.begin() + perm[i] * N, N, permuted.begin() + i * N);
    Wk.swap(permuted);
  }

  double mean_diag = 0;
  for (int64_t k = 0; k < K; ++k) mean_diag += H[k * K + k] == 0 ? 1.0 : H[k * K + k];
  mean_diag /= static_cast<double>(K);
  std::vector<float> U;
  double damp = g.damp;
  for (int attempt = 0;; ++attempt) {
    if (inverse_cholesky_upper(H, perm, damp * mean_diag, U, pool)) break;
    if (attempt == 4)
      failure(
          "gptq: the Hessian of this [{} x {}] weight is not positive definite even with damp {} (check the "
          "calibration data for NaN/Inf, or use a larger damp)",
          K, N, damp);
    damp = damp > 0 ? damp * 10 : 0.01;
  }

  std::vector<uint8_t> qrow(static_cast<size_t>(K * N));  // q in W's layout, original row order
  std::vector<float> E(static_cast<size_t>(lazy * N));
  constexpr int64_t kCols = 64;  // columns per parallel work item
  const int64_t items = (N + kCols - 1) / kCols;
  for (int64_t i1 = 0; i1 < K; i1 += lazy) {
    const int64_t i2 = std::min(i1 + lazy, K);
    parallel(pool, items, 1, [&](int64_t t0, int64_t t1) {
      float scale[kCols], recip[kCols], zp[kCols], lo[kCols], hi[kCols];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * kCols, nc = std::min(kCols, N - n0);
        int64_t loaded = -1;  // the block whose scales are in scale/recip/zp
        for (int64_t i = i1; i < i2; ++i) {
          float* w = Wk.data() + i * N + n0;
          const int64_t b = perm[i] / bs;
          if (!g.act_order && i % bs == 0) {
            // The block starts: its scales from its rows as they are now.
            std::fill_n(lo, nc, std::numeric_limits<float>::max());
            std::fill_n(hi, nc, -std::numeric_limits<float>::max());
            for (int64_t k = i; k < std::min(i + bs, K); ++k) {
              const float* row = Wk.data() + k * N + n0;
              for (int64_t c = 0; c < nc; ++c) {
                lo[c] = std::min(lo[c], row[c]);
                hi[c] = std::max(hi[c], row[c]);
              }
            }
            for (int64_t c = 0; c < nc; ++c) {
              const BlockScale s = rtn_scale(lo[c], hi[c], bits, p.symmetric);
              r.scales[(n0 + c) * kb + b] = s.scale;
              r.zero_points[(n0 + c) * kb + b] = static_cast<uint8_t>(s.zp);
            }
            loaded = -1;
          }
          if (b != loaded) {
            for (int64_t c = 0; c < nc; ++c) {
              scale[c] = r.scales[(n0 + c) * kb + b];
              recip[c] = 1.f / scale[c];
              zp[c] = r.zero_points[(n0 + c) * kb + b];
            }
            loaded = b;
          }
          const float d = U[i * K + i];
          float* e = E.data() + (i - i1) * N + n0;
          uint8_t* q = qrow.data() + perm[i] * N + n0;
          for (int64_t c = 0; c < nc; ++c) {
            q[c] = quantize_value(w[c], recip[c], zp[c], qmax);
            e[c] = (w[c] - (static_cast<float>(q[c]) - zp[c]) * scale[c]) / d;
          }
          for (int64_t k = i + 1; k < i2; ++k) {
            const float u = U[i * K + k];
            float* wk = Wk.data() + k * N + n0;
            for (int64_t c = 0; c < nc; ++c) wk[c] -= u * e[c];
          }
        }
      }
    });
    if (i2 < K)
      runtime::kernels::sgemm(true, false, K - i2, N, i2 - i1, -1.f, U.data() + i1 * K + i2, K, E.data(), N, 1.f,
                              Wk.data() + i2 * N, N, pool);
  }

  // [K, N] -> [N, K] in 64 x 64 tiles.
  constexpr int64_t kT = 64;
  parallel(pool, (N + kT - 1) / kT, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t n0 = t0 * kT; n0 < std::min(N, t1 * kT); n0 += kT)
      for (int64_t k0 = 0; k0 < K; k0 += kT)
        for (int64_t n = n0; n < std::min(n0 + kT, N); ++n)
          for (int64_t k = k0; k < std::min(k0 + kT, K); ++k) r.q[n * K + k] = qrow[k * N + n];
  });
  return r;
}

std::vector<float> dequantize(const BlockQuantized& b, int64_t block_size) {
  if (block_size < 1 || b.k_blocks != (b.K + block_size - 1) / block_size ||
      b.q.size() != static_cast<size_t>(b.K * b.N) || b.scales.size() != static_cast<size_t>(b.k_blocks * b.N) ||
      b.zero_points.size() != b.scales.size())
    failure("dequantize: block quantized data of [{}, {}] does not match block_size {}", b.K, b.N, block_size);
  std::vector<float> w(static_cast<size_t>(b.K * b.N));
  for (int64_t n = 0; n < b.N; ++n)
    for (int64_t k = 0; k < b.K; ++k) {
      const int64_t s = n * b.k_blocks + k / block_size;
      w[k * b.N + n] = (static_cast<float>(b.q[n * b.K + k]) - static_cast<float>(b.zero_points[s])) * b.scales[s];
    }
  return w;
}

namespace {

void check_packing(const BlockQuantized& b, int bits, const char* what) {
  if (bits != 2 && bits != 4 && bits != 8) failure("{}: bits {} cannot be packed (2, 4 or 8)", what, bits);
  if (b.zero_points.size() != static_cast<size_t>(b.k_blocks * b.N))
    failure("{}: {} zero points for [{} x {}] blocks", what, b.zero_points.size(), b.N, b.k_blocks);
}

}  // namespace

std::vector<uint8_t> pack_matmulnbits_b(const BlockQuantized& b, int bits, int64_t block_size) {
  check_packing(b, bits, "pack_matmulnbits_b");
  if (block_size < 1 || (block_size * bits) % 8 != 0 || b.k_blocks != (b.K + block_size - 1) / block_size ||
      b.q.size() != static_cast<size_t>(b.K * b.N))
    failure("pack_matmulnbits_b: block quantized data of [{}, {}] does not match block_size {}", b.K, b.N, block_size);
  const int64_t blob = block_size * bits / 8;
  const int mask = (1 << bits) - 1;
  std::vector<uint8_t> out(static_cast<size_t>(b.N * b.k_blocks * blob), 0);
  if (b.K % block_size == 0 && (bits == 4 || bits == 8)) {
    // No padding: B is q itself, N-major, packed pairwise (bits 4) or as it is (bits 8).
    const uint8_t* q = b.q.data();
    if (bits == 8) {
      std::memcpy(out.data(), q, out.size());
    } else {
      uint8_t* __restrict o = out.data();
      for (size_t j = 0; j < out.size(); ++j)
        o[j] = static_cast<uint8_t>((q[2 * j] & 0xF) | ((q[2 * j + 1] & 0xF) << 4));
    }
    return out;
  }
  for (int64_t n = 0; n < b.N; ++n)
    for (int64_t blk = 0; blk < b.k_blocks; ++blk) {
      uint8_t* dst = out.data() + (n * b.k_blocks + blk) * blob;
      const uint8_t pad = b.zero_points[n * b.k_blocks + blk];
      for (int64_t e = 0; e < block_size; ++e) {
        const int64_t k = blk * block_size + e;
        const int v = (k < b.K ? b.q[n * b.K + k] : pad) & mask;
        dst[e * bits / 8] |= static_cast<uint8_t>(v << (e * bits % 8));
      }
    }
  return out;
}

std::vector<uint8_t> pack_zero_points(const BlockQuantized& b, int bits) {
  check_packing(b, bits, "pack_zero_points");
  const int64_t per_col = (b.k_blocks * bits + 7) / 8;
  const int mask = (1 << bits) - 1;
  std::vector<uint8_t> out(static_cast<size_t>(b.N * per_col), 0);
  for (int64_t n = 0; n < b.N; ++n)
    for (int64_t blk = 0; blk < b.k_blocks; ++blk)
      out[n * per_col + blk * bits / 8] |=
          static_cast<uint8_t>((b.zero_points[n * b.k_blocks + blk] & mask) << (blk * bits % 8));
  return out;
}

}  // namespace slmops::passes::quant
