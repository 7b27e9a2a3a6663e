// MatMulNBits kernels: weight packing, the driver (A preparation, zero-point and bias terms,
// threads), portable kernels and the reference loops. The AVX2 kernels are in
// nbits_avx2.cpp; see nbits.h for the layouts and the arithmetic.
#include "runtime/kernels/nbits.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "runtime/thread_pool.h"

namespace slmops::runtime::kernels {

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

void run(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool && n > grain) pool->parallel_for(n, grain, fn);
  else fn(0, n);
}

// Elements per packed 32-byte chunk.
int64_t chunk_elems(int64_t bits, NBitsMode mode) {
  if (mode == NBitsMode::Float) return 256 / bits;
  return bits == 4 ? 64 : 32;  // Int8: 4-bit split in halves; 8-bit (and 2-bit) one byte each
}

}  // namespace

bool nbits_cpu_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

int NBitsSource::q(int64_t n, int64_t k) const {
  const int64_t blk = k / block_size, i = k % block_size;
  const uint8_t* blob = B + (n * k_blocks() + blk) * blob_bytes();
  const int64_t bit = i * bits;
  return (blob[bit / 8] >> (bit % 8)) & ((1 << bits) - 1);
}

float NBitsSource::zero_point(int64_t n, int64_t blk) const {
  if (zp_float) return zp_float[n * k_blocks() + blk];
  if (zp_packed) {
    const int64_t row_bytes = (k_blocks() * bits + 7) / 8;
    const int64_t bit = blk * bits;
    return static_cast<float>((zp_packed[n * row_bytes + bit / 8] >> (bit % 8)) & ((1 << bits) - 1));
  }
  return static_cast<float>(1 << (bits - 1));
}

NBitsPacked::NBitsPacked(const NBitsSource& src, NBitsMode mode_, bool use_avx2)
    : N(src.N), K(src.K), bits(src.bits), block_size(src.block_size), k_blocks(src.k_blocks()), mode(mode_) {
  if (bits != 2 && bits != 4 && bits != 8) throw std::invalid_argument("MatMulNBits: bits must be 2, 4 or 8");
  if (block_size < 16 || (block_size & (block_size - 1))) throw std::invalid_argument("MatMulNBits: bad block_size");
  avx2 = use_avx2 && nbits_cpu_avx2() && block_size <= 256;
  chunk = chunk_elems(bits, mode);
  k_padded = round_up(std::max<int64_t>(K, 1), std::max(chunk, block_size));
  const int64_t kbp = k_padded / block_size;
  zp_integer = src.zp_float == nullptr;
  scale.assign(static_cast<size_t>(N * kbp), 0.f);
  zps.assign(static_cast<size_t>(N * kbp), 0.f);
  zp.assign(static_cast<size_t>(N * kbp), 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < k_blocks; ++b) {
      const float s = src.scales[n * k_blocks + b];
      const float z = src.zero_point(n, b);
      scale[n * kbp + b] = s;
      zps[n * kbp + b] = z * s;
      zp[n * kbp + b] = z;
    }
  const int64_t chunks = k_padded / chunk;
  col_bytes = chunks * 32;
  q.assign(static_cast<size_t>(N * col_bytes), 0);
  for (int64_t n = 0; n < N; ++n) {
    uint8_t* col = q.data() + n * col_bytes;
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t v = static_cast<uint32_t>(src.q(n, k));
      const int64_t c = k / chunk, e = k % chunk;
      uint8_t* ch = col + c * 32;
      if (mode == NBitsMode::Float) {
        // Lane L = e % 8 holds element e at bit position bits * (e / 8).
        uint32_t word;
        std::memcpy(&word, ch + (e % 8) * 4, 4);
        word |= v << (bits * (e / 8));
        std::memcpy(ch + (e % 8) * 4, &word, 4);
      } else if (bits == 4) {
        if (e < 32) ch[e] |= static_cast<uint8_t>(v);
        else ch[e - 32] |= static_cast<uint8_t>(v << 4);
      } else {
        ch[e] = static_cast<uint8_t>(v);
      }
    }
  }
}

void nbits_quantize_row(const float* a, int64_t K, int64_t bs, int8_t* q, float* scale, float* scaled_sum) {
  const int64_t blocks = (K + bs - 1) / bs;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t k0 = b * bs, k1 = std::min(K, k0 + bs);
    float amax = 0.f;
    for (int64_t k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(a[k]));
    const float s = amax / 127.f;
    const float inv = amax != 0.f ? 127.f / amax : 0.f;
    int32_t sum = 0;
    for (int64_t k = k0; k < k0 + bs; ++k) {
      int32_t v = 0;
      if (k < k1) {
        v = static_cast<int32_t>(std::nearbyintf(a[k] * inv));
        v = std::clamp(v, -128, 127);
      }
      q[k] = static_cast<int8_t>(v);
      sum += v;
    }
    scale[b] = s;
    scaled_sum[b] = s * static_cast<float>(sum);
  }
}

namespace {

// ---- portable kernels over the packed layouts ----------------------------------------------

void float_gemv_scalar(const NBitsPacked& W, const float* a, const float* asum, int64_t n0, int64_t n1, float* y) {
  const int64_t kbp = W.k_padded / W.block_size, mask = (1 << W.bits) - 1;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* col = W.q.data() + n * W.col_bytes;
    float total = 0.f;
    for (int64_t b = 0; b < kbp; ++b) {
      float acc = 0.f;
      for (int64_t k = b * W.block_size; k < (b + 1) * W.block_size; ++k) {
        const int64_t c = k / W.chunk, e = k % W.chunk;
        uint32_t word;
        std::memcpy(&word, col + c * 32 + (e % 8) * 4, 4);
        acc += static_cast<float>((word >> (W.bits * (e / 8))) & mask) * a[k];
      }
      total += acc * W.scale[n * kbp + b];
    }
    for (int64_t b = 0; b < kbp; ++b) total -= W.zps[n * kbp + b] * asum[b];
    y[n] = total;
  }
}

void int8_gemm_scalar(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                      int64_t n0, int64_t n1, float* Y, int64_t ldy) {
  const int64_t kbp = W.k_padded / W.block_size;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* col = W.q.data() + n * W.col_bytes;
    for (int64_t m = 0; m < M; ++m) {
      float total = 0.f;
      for (int64_t b = 0; b < kbp; ++b) {
        int32_t dot = 0;
        for (int64_t k = b * W.block_size; k < (b + 1) * W.block_size; ++k) {
          const int64_t c = k / W.chunk, e = k % W.chunk;
          int qv;
          if (W.bits == 4) qv = e < 32 ? col[c * 32 + e] & 0xF : col[c * 32 + e - 32] >> 4;
          else qv = col[c * 32 + e];
          dot += qv * aq[m * ldq + k];
        }
        total += static_cast<float>(dot) * (ascale[m * kbp + b] * W.scale[n * kbp + b]);
      }
      Y[m * ldy + n] = total;
    }
  }
}

// Float-mode GEMV for one row: the scaled copy of A the AVX2 kernel reads and the block sums.
void prepare_float_row(const NBitsPacked& W, const float* a, float* a_scaled, float* asum) {
  const int64_t kbp = W.k_padded / W.block_size;
  const int64_t groups = W.chunk / 8;
  for (int64_t b = 0; b < kbp; ++b) {
    float s = 0.f;
    for (int64_t k = b * W.block_size; k < std::min(W.K, (b + 1) * W.block_size); ++k) s += a[k];
    asum[b] = s;
  }
  for (int64_t k = 0; k < W.k_padded; ++k) {
    const float v = k < W.K ? a[k] : 0.f;
    if (!W.avx2) {
      a_scaled[k] = v;
      continue;
    }
    const int64_t j = (k % W.chunk) / 8;
    a_scaled[k] = j == groups - 1 ? v : std::ldexp(v, static_cast<int>(-W.bits * j));
  }
}

}  // namespace

void nbits_gemm(int64_t M, const float* A, int64_t lda, const NBitsPacked& W, const float* bias, float* Y,
                int64_t ldy, ThreadPool* pool) {
  const int64_t N = W.N, K = W.K, kbp = W.k_padded / W.block_size;
  if (M <= 0 || N <= 0) return;
  const int threads = pool ? pool->threads() : 1;
  auto add_bias = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (!bias) return;
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = n0; n < n1; ++n) Y[m * ldy + n] += bias[n];
  };
  // Column ranges in multiples of 16, about 4 per thread.
  const int64_t col_grain = 16;
  const int64_t col_units = (N + col_grain - 1) / col_grain;

  if (W.mode == NBitsMode::Int8) {
    std::vector<int8_t> aq(static_cast<size_t>(M * W.k_padded), 0);
    std::vector<float> ascale(static_cast<size_t>(M * kbp), 0.f), asum(static_cast<size_t>(M * kbp), 0.f);
    for (int64_t m = 0; m < M; ++m)
      nbits_quantize_row(A + m * lda, K, W.block_size, aq.data() + m * W.k_padded, ascale.data() + m * kbp,
                         asum.data() + m * kbp);
    run(threads > 1 ? pool : nullptr, col_units, std::max<int64_t>(1, col_units / (threads * 4)), [&](int64_t u0, int64_t u1) {
      const int64_t n0 = u0 * col_grain, n1 = std::min(N, u1 * col_grain);
      if (W.avx2 && W.bits != 2) nbdetail::int8_gemm_avx2(W, M, aq.data(), W.k_padded, ascale.data(), n0, n1, Y, ldy);
      else int8_gemm_scalar(W, M, aq.data(), W.k_padded, ascale.data(), n0, n1, Y, ldy);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = n0; n < n1; ++n) {
          float corr = 0.f;
          for (int64_t b = 0; b < kbp; ++b) corr += W.zps[n * kbp + b] * asum[m * kbp + b];
          Y[m * ldy + n] -= corr;
        }
      add_bias(0, M, n0, n1);
    });
    return;
  }

  // Float mode: A scaled per group (see nbits.h) and its block sums, per row.
  std::vector<float> a_scaled(static_cast<size_t>(M * W.k_padded)), asum(static_cast<size_t>(M * kbp));
  for (int64_t m = 0; m < M; ++m)
    prepare_float_row(W, A + m * lda, a_scaled.data() + m * W.k_padded, asum.data() + m * kbp);
  run(threads > 1 ? pool : nullptr, col_units, std::max<int64_t>(1, col_units / (threads * 4)), [&](int64_t u0, int64_t u1) {
    const int64_t n0 = u0 * col_grain, n1 = std::min(N, u1 * col_grain);
    if (M == 1) {
      if (W.avx2) nbdetail::float_gemv_avx2(W, a_scaled.data(), asum.data(), n0, n1, Y);
      else float_gemv_scalar(W, a_scaled.data(), asum.data(), n0, n1, Y);
    } else if (W.avx2) {
      nbdetail::float_gemm_avx2(W, M, a_scaled.data(), W.k_padded, n0, n1, Y, ldy);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = n0; n < n1; ++n) {
          float corr = 0.f;
          for (int64_t b = 0; b < kbp; ++b) corr += W.zps[n * kbp + b] * asum[m * kbp + b];
          Y[m * ldy + n] -= corr;
        }
    } else {
      for (int64_t m = 0; m < M; ++m)
        float_gemv_scalar(W, a_scaled.data() + m * W.k_padded, asum.data() + m * kbp, n0, n1, Y + m * ldy);
    }
    add_bias(0, M, n0, n1);
  });
}

void nbits_gemm_reference(int64_t M, const float* A, int64_t lda, const NBitsSource& W, NBitsMode mode,
                          const float* bias, float* Y, int64_t ldy) {
  const int64_t kb = W.k_blocks(), bs = W.block_size;
  std::vector<int8_t> aq(static_cast<size_t>(kb * bs));
  std::vector<float> ascale(static_cast<size_t>(kb)), asum(static_cast<size_t>(kb));
  for (int64_t m = 0; m < M; ++m) {
    const float* a = A + m * lda;
    if (mode == NBitsMode::Int8) nbits_quantize_row(a, W.K, bs, aq.data(), ascale.data(), asum.data());
    for (int64_t n = 0; n < W.N; ++n) {
      double total = 0;
      for (int64_t b = 0; b < kb; ++b) {
        const double s = W.scales[n * kb + b], z = W.zero_point(n, b);
        if (mode == NBitsMode::Int8) {
          double dot = 0;
          for (int64_t k = b * bs; k < std::min(W.K, (b + 1) * bs); ++k) dot += (W.q(n, k) - z) * aq[k];
          total += dot * ascale[b] * s;
        } else {
          for (int64_t k = b * bs; k < std::min(W.K, (b + 1) * bs); ++k) total += (W.q(n, k) - z) * s * a[k];
        }
      }
      Y[m * ldy + n] = static_cast<float>(total + (bias ? bias[n] : 0.f));
    }
  }
}

}  // namespace slmops::runtime::kernels
