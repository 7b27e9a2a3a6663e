// MatMulNBits kernels: weight packing, the driver (A preparation, zero-point and bias terms,
// threads), portable kernels and the reference loops. The AVX2 kernels are in
// nbits_avx2_avx512.cpp; see nbits.h for the layouts and the arithmetic.
#include "runtime/kernels/nbits.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>

#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/gemm.h"
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

bool nbits_cpu_avx2() { return cpu().avx2; }
bool nbits_int8_prefill_fast() { return cpu().avxvnni || cpu().avx512vnni; }

bool nbits_cpu_avx512() { return nbits_cpu_avx2() && nbdetail::avx512_usable(); }

int NBitsSource::q(int64_t n, int64_t k) const {
  const int64_t blk = k / block_size, i = k % block_size;
  const uint8_t* blob = B + (n * k_blocks() + blk) * blob_bytes();
  const int64_t bit = i * bits;
  return (blob[bit / 8] >> (bit % 8)) & ((1 << bits) - 1);
}

NBitsPacked::NBitsPacked(const NBitsSource& src, NBitsMode mode_, bool use_avx2, bool use_avx512)
    : N(src.N), K(src.K), bits(src.bits), block_size(src.block_size), k_blocks(src.k_blocks()), mode(mode_) {
  if (bits != 2 && bits != 4 && bits != 8) throw std::invalid_argument("MatMulNBits: bits must be 2, 4 or 8");
  if (block_size < 16 || (block_size & (block_size - 1))) throw std::invalid_argument("MatMulNBits: bad block_size");
  avx2 = use_avx2 && nbits_cpu_avx2() && block_size <= 256;
  avx512 = avx2 && use_avx512 && nbdetail::avx512_usable();
  vnni = avx2 && use_avx512 && nbdetail::int8_vnni_kind() != 0;
  chunk = chunk_elems(bits, mode);
  k_padded = round_up(std::max<int64_t>(K, 1), std::max(chunk, block_size));
  chunks = k_padded / chunk;
  kbp = k_padded / block_size;
  groups = (N + kGroup - 1) / kGroup;
  zp_const = static_cast<float>(1 << (bits - 1));
  zp_kind = src.zp_float ? Zp::F32 : src.zp_packed ? Zp::U8 : Zp::Const;
  const size_t per_block = static_cast<size_t>(groups * kbp * kGroup);
  scale.assign(per_block, 0.f);
  if (zp_kind == Zp::U8) zp_u8.assign(per_block, 0);
  if (zp_kind == Zp::F32) zp_f32.assign(per_block, 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < k_blocks; ++b) {
      const size_t i = static_cast<size_t>(((n / kGroup) * kbp + b) * kGroup + n % kGroup);
      scale[i] = src.scales[n * k_blocks + b];
      if (zp_kind == Zp::U8) zp_u8[i] = static_cast<uint8_t>(src.zero_point(n, b));
      if (zp_kind == Zp::F32) zp_f32[i] = src.zp_float[n * k_blocks + b];
    }
  q.assign(static_cast<size_t>(groups * chunks * 128), 0);
  // Element k of column n sits at bit k * bits of the column's bytes (blocks are contiguous
  // and a block holds whole bytes).
  const int64_t col_src_bytes = k_blocks * src.blob_bytes();
  const uint32_t mask = (1u << bits) - 1;
  const int64_t per_byte = 8 / bits;
  std::vector<uint8_t> col(static_cast<size_t>(chunks * chunk), 0);  // unpacked column, zero padded
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* sb = src.B + n * col_src_bytes;
    if (bits == 4) {
      for (int64_t i = 0; i < K / 2; ++i) {
        col[2 * i] = sb[i] & 0xF;
        col[2 * i + 1] = sb[i] >> 4;
      }
      if (K % 2) col[K - 1] = sb[K / 2] & 0xF;
    } else if (bits == 8) {
      std::memcpy(col.data(), sb, static_cast<size_t>(K));
    } else {
      for (int64_t k = 0; k < K; ++k)
        col[k] = static_cast<uint8_t>((sb[k / per_byte] >> ((k % per_byte) * bits)) & mask);
    }
    uint8_t* grp = q.data() + (n / kGroup) * chunks * 128 + (n % kGroup) * 32;
    for (int64_t c = 0; c < chunks; ++c) {
      const uint8_t* e = col.data() + c * chunk;
      uint8_t* ch = grp + c * 128;
      if (mode == NBitsMode::Float) {
        // Lane L holds element 8j + L at bit position bits * j.
        uint32_t words[8] = {};
        const int64_t groups_per_chunk = chunk / 8;
        for (int64_t j = 0; j < groups_per_chunk; ++j) {
          const int sh = static_cast<int>(bits * j);
          for (int L = 0; L < 8; ++L) words[L] |= static_cast<uint32_t>(e[8 * j + L]) << sh;
        }
        std::memcpy(ch, words, 32);
      } else if (bits == 4) {
        for (int i = 0; i < 32; ++i) ch[i] = static_cast<uint8_t>(e[i] | (e[32 + i] << 4));
      } else {
        std::memcpy(ch, e, 32);
      }
    }
  }
}

// Written on 16-lane GCC vectors and compiled for AVX-512, AVX2 and baseline x86-64
// (target_clones, as kernels/qdq.cpp): every clone computes the same values. Rounding half to
// even is (v + 1.5 * 2^23) - 1.5 * 2^23, exact for |v| < 2^22 (here |v| <= 127 plus rounding),
// which equals nearbyintf in the default rounding mode; the scalar tail does the same.
__attribute__((target_clones("avx512f", "avx2", "default"))) void nbits_quantize_row(const float* a, int64_t K,
                                                                                     int64_t bs, int8_t* q,
                                                                                     float* scale, float* scaled_sum) {
  using V16 = float __attribute__((vector_size(64)));
  using I16 = int32_t __attribute__((vector_size(64)));
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  const int64_t blocks = (K + bs - 1) / bs;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t k0 = b * bs, k1 = std::min(K, k0 + bs);
    // max |a| (NaN never wins: v > m is false)
    V16 m = {};
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16) {
      V16 v;
      __builtin_memcpy(&v, a + k, sizeof v);
      v = v < 0 ? -v : v;
      m = v > m ? v : m;
    }
    // Tree reduction of the 16 lanes (max is exact in any order).
    using V8 = float __attribute__((vector_size(32)));
    using V4 = float __attribute__((vector_size(16)));
    V8 m8 = __builtin_shufflevector(m, m, 0, 1, 2, 3, 4, 5, 6, 7);
    const V8 h8 = __builtin_shufflevector(m, m, 8, 9, 10, 11, 12, 13, 14, 15);
    m8 = h8 > m8 ? h8 : m8;
    V4 m4 = __builtin_shufflevector(m8, m8, 0, 1, 2, 3);
    const V4 h4 = __builtin_shufflevector(m8, m8, 4, 5, 6, 7);
    m4 = h4 > m4 ? h4 : m4;
    float amax = 0.f;
    for (int j = 0; j < 4; ++j) amax = m4[j] > amax ? m4[j] : amax;
    for (; k < k1; ++k) amax = std::max(amax, std::fabs(a[k]));
    const float s = amax / 127.f;
    const float inv = amax != 0.f ? 127.f / amax : 0.f;
    I16 sums = {};
    k = k0;
    for (; k + 16 <= k1; k += 16) {
      V16 v;
      __builtin_memcpy(&v, a + k, sizeof v);
      v = v * inv;
      v = v > -128.f ? v : -128.f;
      v = v < 127.f ? v : 127.f;
      v = (v + kRound) - kRound;
      const I16 iv = __builtin_convertvector(v, I16);
      sums += iv;
      using N16 = int8_t __attribute__((vector_size(16)));
      const N16 narrow = __builtin_convertvector(iv, N16);  // in [-128, 127]: exact
      __builtin_memcpy(q + k, &narrow, sizeof narrow);
    }
    using I8 = int32_t __attribute__((vector_size(32)));
    const I8 s8 = __builtin_shufflevector(sums, sums, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(sums, sums, 8, 9, 10, 11, 12, 13, 14, 15);
    int32_t sum = 0;
    for (int j = 0; j < 8; ++j) sum += s8[j];
    for (; k < k0 + bs; ++k) {
      int32_t v = 0;
      if (k < k1) {
        float f = a[k] * inv;
        f = f > -128.f ? f : -128.f;
        f = f < 127.f ? f : 127.f;
        v = static_cast<int32_t>((f + kRound) - kRound);
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

// Element k of column n in the packed layout.
int packed_q(const NBitsPacked& W, int64_t n, int64_t k) {
  const uint8_t* ch = W.group_q(n / 4) + (k / W.chunk) * 128 + (n % 4) * 32;
  const int64_t e = k % W.chunk;
  if (W.mode == NBitsMode::Float) {
    uint32_t word;
    std::memcpy(&word, ch + (e % 8) * 4, 4);
    return static_cast<int>((word >> (W.bits * (e / 8))) & ((1u << W.bits) - 1));
  }
  if (W.bits == 4) return e < 32 ? ch[e] & 0xF : ch[e - 32] >> 4;
  return ch[e];
}

// Float mode, rows [0, M), unscaled A: y = sum_b s_b * (sum_k q a - zp_b * asum_b).
void float_gemm_scalar(const NBitsPacked& W, int64_t M, const float* a, int64_t lda, const float* asum, int64_t g0,
                       int64_t g1, float* Y, int64_t ldy) {
  for (int64_t n = g0 * 4; n < std::min(W.N, g1 * 4); ++n)
    for (int64_t m = 0; m < M; ++m) {
      float total = 0.f;
      for (int64_t b = 0; b < W.kbp; ++b) {
        float acc = 0.f;
        for (int64_t k = b * W.block_size; k < (b + 1) * W.block_size; ++k)
          acc += static_cast<float>(packed_q(W, n, k)) * a[m * lda + k];
        total += (acc - W.zp_at(n, b) * asum[m * W.kbp + b]) * W.scale_at(n, b);
      }
      Y[m * ldy + n] = total;
    }
}

void int8_gemm_scalar(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                      const float* ablksum, int64_t g0, int64_t g1, float* Y, int64_t ldy) {
  for (int64_t n = g0 * 4; n < std::min(W.N, g1 * 4); ++n)
    for (int64_t m = 0; m < M; ++m) {
      float total = 0.f;
      for (int64_t b = 0; b < W.kbp; ++b) {
        int32_t dot = 0;
        for (int64_t k = b * W.block_size; k < (b + 1) * W.block_size; ++k) dot += packed_q(W, n, k) * aq[m * ldq + k];
        const float sb = W.scale_at(n, b);
        total += static_cast<float>(dot) * (ascale[m * W.kbp + b] * sb) - W.zp_at(n, b) * sb * ablksum[m * W.kbp + b];
      }
      Y[m * ldy + n] = total;
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
  // Exact powers of two: 2^(-bits * j) for group j, 1 for the last group.
  float factor[16];
  for (int64_t j = 0; j < groups; ++j) factor[j] = j == groups - 1 ? 1.f : std::ldexp(1.f, static_cast<int>(-W.bits * j));
  for (int64_t k = 0; k < W.k_padded; ++k) {
    const float v = k < W.K ? a[k] : 0.f;
    a_scaled[k] = W.avx2 ? v * factor[(k % W.chunk) / 8] : v;
  }
}

}  // namespace

void nbits_gemm(int64_t M, const float* A, int64_t lda, const NBitsPacked& W, const float* bias, float* Y,
                int64_t ldy, ThreadPool* pool) {
  const int64_t N = W.N, K = W.K, kbp = W.kbp;
  if (M <= 0 || N <= 0) return;
  const int threads = pool ? pool->threads() : 1;
  auto add_bias = [&](int64_t g0, int64_t g1) {
    if (!bias) return;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = g0 * 4; n < std::min(N, g1 * 4); ++n) Y[m * ldy + n] += bias[n];
  };
  // Tasks over column groups, about 4 per thread.
  const int64_t grain = std::max<int64_t>(1, W.groups / (threads * 4));
  ThreadPool* tp = threads > 1 ? pool : nullptr;

  if (W.mode == NBitsMode::Int8) {
    std::vector<int8_t> aq(static_cast<size_t>(M * W.k_padded), 0);
    std::vector<float> ascale(static_cast<size_t>(M * kbp), 0.f), asum(static_cast<size_t>(M * kbp), 0.f);
    run(M >= 16 ? tp : nullptr, M, 8, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m)
        nbits_quantize_row(A + m * lda, K, W.block_size, aq.data() + m * W.k_padded, ascale.data() + m * kbp,
                           asum.data() + m * kbp);
    });
    if (M >= kDequantMinRows && nbdetail::int8_prefill_usable(W)) {
      const int64_t tiles = nbdetail::int8_prefill_tiles(W);
      run(tp, tiles, 1, [&](int64_t t0, int64_t t1) {
        nbdetail::int8_gemm_prefill(W, M, aq.data(), W.k_padded, ascale.data(), asum.data(), t0, t1, Y, ldy);
        if (bias)
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = t0 * 32; n < std::min(N, t1 * 32); ++n) Y[m * ldy + n] += bias[n];
      });
      return;
    }
    run(tp, W.groups, grain, [&](int64_t g0, int64_t g1) {
      if (W.vnni && W.bits != 2)
        nbdetail::int8_gemm_vnni(W, M, aq.data(), W.k_padded, ascale.data(), asum.data(), g0, g1, Y, ldy);
      else if (W.avx2 && W.bits != 2)
        nbdetail::int8_gemm_avx2(W, M, aq.data(), W.k_padded, ascale.data(), asum.data(), g0, g1, Y, ldy);
      else int8_gemm_scalar(W, M, aq.data(), W.k_padded, ascale.data(), asum.data(), g0, g1, Y, ldy);
      add_bias(g0, g1);
    });
    return;
  }

  // Float mode: A (scaled per group for the AVX2 kernels, see nbits.h) and its block sums.
  std::vector<float> a_scaled(static_cast<size_t>(M * W.k_padded)), asum(static_cast<size_t>(M * kbp));
  for (int64_t m = 0; m < M; ++m)
    prepare_float_row(W, A + m * lda, a_scaled.data() + m * W.k_padded, asum.data() + m * kbp);
  run(tp, W.groups, grain, [&](int64_t g0, int64_t g1) {
    if (!W.avx2) float_gemm_scalar(W, M, a_scaled.data(), W.k_padded, asum.data(), g0, g1, Y, ldy);
    else if (M == 1) nbdetail::float_gemv_avx2(W, a_scaled.data(), asum.data(), g0, g1, Y);
    else nbdetail::float_gemm_avx2(W, M, a_scaled.data(), W.k_padded, asum.data(), g0, g1, Y, ldy);
    add_bias(g0, g1);
  });
}

namespace {

// Columns [n0, n0 + cols) of W, rows [k0, k0 + kc), dequantized into PackedB::wrap's layout
// (strips of 16 columns, kc rows of 16 floats each; columns past N are zeros). 2- and 4-bit
// values go through a table of the 2^bits values of each block, (q - zp) * scale.
void dequant_tile(const NBitsSource& W, int64_t n0, int64_t cols, int64_t k0, int64_t kc, float* dst) {
  constexpr int64_t S = PackedB::kStrip;
  const int64_t kb = W.k_blocks(), bs = W.block_size, bits = W.bits;
  const int64_t col_bytes = kb * W.blob_bytes();
  const int64_t strips = (cols + S - 1) / S;
  const bool avx2 = bits == 4 && kc % 8 == 0 && nbits_cpu_avx2();
  for (int64_t s = 0; s < strips; ++s) {
    float* ds = dst + s * kc * S;
    if (avx2 && (s + 1) * S <= cols && n0 + (s + 1) * S <= W.N) {
      // The next strip's bytes meanwhile: 16 columns' runs of kc / 2 bytes, col_bytes apart,
      // which the hardware prefetchers do not follow (the decode waited on them).
      if (n0 + (s + 2) * S <= W.N)
        for (int64_t j = 0; j < S; ++j)
          for (int64_t off = 0; off < kc / 2; off += 64)
            __builtin_prefetch(W.B + (n0 + (s + 1) * S + j) * col_bytes + k0 / 2 + off);
      nbdetail::dequant_strip4_avx2(W, n0 + s * S, k0, kc, ds);
      continue;
    }
    for (int64_t j = 0; j < S; ++j) {
      const int64_t n = n0 + s * S + j;
      if (s * S + j >= cols || n >= W.N) {
        for (int64_t k = 0; k < kc; ++k) ds[k * S + j] = 0.f;
        continue;
      }
      const uint8_t* col = W.B + n * col_bytes;
      for (int64_t b0 = k0; b0 < k0 + kc;) {
        const int64_t blk = b0 / bs, b1 = std::min({k0 + kc, (blk + 1) * bs, W.K});
        const float sc = W.scales[n * kb + blk], zp = W.zero_point(n, blk);
        float* d = ds + (b0 - k0) * S + j;
        if (bits == 4) {
          float table[16];
          for (int v = 0; v < 16; ++v) table[v] = (static_cast<float>(v) - zp) * sc;
          int64_t k = b0;
          if (k & 1) *d = table[col[k / 2] >> 4], d += S, ++k;
          for (; k + 1 < b1; k += 2, d += 2 * S) {
            const uint8_t byte = col[k / 2];
            d[0] = table[byte & 0xF];
            d[S] = table[byte >> 4];
          }
          if (k < b1) *d = table[col[k / 2] & 0xF];
        } else if (bits == 8) {
          for (int64_t k = b0; k < b1; ++k, d += S) *d = (static_cast<float>(col[k]) - zp) * sc;
        } else {
          float table[4];
          for (int v = 0; v < 4; ++v) table[v] = (static_cast<float>(v) - zp) * sc;
          for (int64_t k = b0; k < b1; ++k, d += S) *d = table[(col[k / 4] >> ((k % 4) * 2)) & 3];
        }
        b0 = b1;
        if (b1 == W.K) break;
      }
      for (int64_t k = std::max(k0, W.K); k < k0 + kc; ++k) ds[(k - k0) * S + j] = 0.f;
    }
  }
}

// The per-thread tile of nbits_gemm_dequant (64-byte aligned, kWrapMaxK x kDequantCols floats).
float* dequant_scratch() {
  struct Buffer {
    float* p = nullptr;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buf;
  if (!buf.p) {
    buf.p = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * PackedB::kWrapMaxK * kDequantCols));
    if (!buf.p) throw std::bad_alloc();
  }
  return buf.p;
}

}  // namespace

void nbits_gemm_dequant(int64_t M, const float* A, int64_t lda, const NBitsSource& W, const float* bias, float* Y,
                        int64_t ldy, ThreadPool* pool) {
  const int64_t N = W.N, K = W.K;
  if (M <= 0 || N <= 0) return;
  // Column tiles of whole strips, at most kDequantCols wide. With threads, a multiple of
  // ThreadPool::kChunksPerThread x threads tiles when there are enough strips, so that
  // parallel_for's chunks are equal and each thread gets the same number of strips (2304
  // columns on 2 threads: 16 tiles of 9 strips; 9 tiles of 16 had run 5 against 4, and 10
  // tiles in chunks of 2 ran 6 against 4).
  constexpr int64_t S = PackedB::kStrip;
  const int threads = pool ? pool->threads() : 1;
  const int64_t strips = (N + S - 1) / S;
  int64_t tiles = (strips + kDequantCols / S - 1) / (kDequantCols / S);
  if (threads > 1) tiles = std::min(strips, round_up(tiles, threads * ThreadPool::kChunksPerThread));
  const auto tile_begin = [&](int64_t t) { return std::min(N, strips * t / tiles * S); };
  // A packed once per call, one PackedA per depth tile, shared by every column tile.
  std::vector<PackedA> a_tiles;
  for (int64_t k0 = 0; k0 < K; k0 += PackedB::kWrapMaxK)
    a_tiles.emplace_back(false, M, std::min(PackedB::kWrapMaxK, K - k0), A + k0, lda);
  run(pool && pool->threads() > 1 ? pool : nullptr, tiles, 1, [&](int64_t t0, int64_t t1) {
    float* tile = dequant_scratch();
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = tile_begin(t), cols = tile_begin(t + 1) - n0;
      float* y = Y + n0;
      if (K == 0)
        for (int64_t m = 0; m < M; ++m) std::fill(y + m * ldy, y + m * ldy + cols, 0.f);
      for (int64_t k0 = 0, i = 0; k0 < K; k0 += PackedB::kWrapMaxK, ++i) {
        const int64_t kc = std::min(PackedB::kWrapMaxK, K - k0);
        dequant_tile(W, n0, cols, k0, kc, tile);
        sgemm_packed_ab(a_tiles[i], PackedB::wrap(kc, cols, tile), 1.f, k0 == 0 ? 0.f : 1.f, y, ldy, nullptr);
      }
      if (bias)
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < cols; ++n) y[m * ldy + n] += bias[n0 + n];
    }
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
