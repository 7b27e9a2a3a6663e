// Integer GEMM driver: packing, zero-point corrections, threading, the portable micro-kernel
// and the reference loop. The AVX2 and VNNI micro-kernels live in qgemm_avx2_avx512.cpp.
#include "runtime/kernels/qgemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <type_traits>

#include "runtime/thread_pool.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace slmops::runtime::kernels {

using namespace qdetail;

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Bytes per packed B element in the layout of `isa`.
int elem_bytes(QGemmIsa isa) { return isa == QGemmIsa::Avx2 ? 2 : 1; }

inline uint8_t canon_a(uint8_t v, bool a_signed) { return a_signed ? static_cast<uint8_t>(v ^ 0x80) : v; }
inline int8_t canon_b(uint8_t v, bool b_signed) {
  return static_cast<int8_t>(b_signed ? v : static_cast<uint8_t>(v ^ 0x80));
}

// Portable micro-kernel over the Scalar (= Vnni) layouts.
void scalar_micro(int64_t kc, const void* a_, const uint8_t* b, int32_t* c, int64_t ldc, int mr, int nr, bool acc) {
  const uint8_t* a = static_cast<const uint8_t*>(a_);
  int32_t tile[kQMR][kQNR] = {};
  for (int64_t q = 0; q < kc / 4; ++q) {
    const int8_t* bq = reinterpret_cast<const int8_t*>(b + q * 64);
    for (int r = 0; r < kQMR; ++r) {
      const uint8_t* ar = a + r * kc + q * 4;
      for (int j = 0; j < kQNR; ++j) {
        const int8_t* bj = bq + j * 4;
        tile[r][j] += ar[0] * bj[0] + ar[1] * bj[1] + ar[2] * bj[2] + ar[3] * bj[3];
      }
    }
  }
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) {
      int32_t& out = c[r * ldc + j];
      out = acc ? static_cast<int32_t>(static_cast<uint32_t>(out) + static_cast<uint32_t>(tile[r][j])) : tile[r][j];
    }
}

// A row of A into its tile: rows are short (a convolution's 147 to 4608 bytes per depth
// block), where memcpy's inlined rep movsq start-up cost more than the copy (11% of an int8
// ResNet-18 run); 16-byte moves instead.
inline void copy_row(const uint8_t* src, int64_t n, uint8_t* dst) {
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) __builtin_memcpy(dst + k, src + k, 16);
  for (; k < n; ++k) dst[k] = src[k];
}

QMicroFn micro_for(QGemmIsa isa) {
  switch (isa) {
    case QGemmIsa::Avx2: return avx2_micro();
    case QGemmIsa::Vnni: return vnni_micro();
    default: return scalar_micro;
  }
}

}  // namespace

QGemmIsa qgemm_best_isa() {
  static const QGemmIsa best = [] {
    if (cpu_has_vnni() && vnni_micro()) return QGemmIsa::Vnni;
    if (cpu_has_avx2()) return QGemmIsa::Avx2;
    return QGemmIsa::Scalar;
  }();
  return best;
}

const char* qgemm_isa_name(QGemmIsa isa) {
  switch (isa) {
    case QGemmIsa::Avx2: return "avx2";
    case QGemmIsa::Vnni: return "vnni";
    default: return "scalar";
  }
}

void QPackedB::Free::operator()(uint8_t* p) const { std::free(p); }

QPackedB::QPackedB(int64_t K, int64_t N, const void* B_, int64_t ldb, bool b_signed, bool trans_b, QGemmIsa isa)
    : k_(K), n_(N), kp_(round_up(std::max<int64_t>(K, 1), 4)), signed_(b_signed), isa_(isa) {
  const uint8_t* B = static_cast<const uint8_t*>(B_);
  const int64_t panels = (N + kQNR - 1) / kQNR;
  const int eb = elem_bytes(isa);
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(panels, 1) * kp_ * kQNR * eb);
  void* mem = std::aligned_alloc(64, round_up(static_cast<int64_t>(bytes), 64));
  if (!mem) throw std::bad_alloc();
  data_.reset(static_cast<uint8_t*>(mem));
  colsum_.assign(static_cast<size_t>(N), 0);
  // Entry (k, j) of panel p is at
  // p * kp * 16 + (k / per) * per * 16 + j * per + k % per elements (of eb bytes).
  const int64_t per = eb == 1 ? 4 : 2;  // k values per column entry (quad or pair)
  // Zeros only where nothing is written below: the last group of k (past K) of every panel,
  // and all of a last panel with fewer than 16 columns. (ConvInteger packs a column matrix per
  // call; clearing all of it first was 7% of an int8 ResNet-18's run.)
  {
    const int64_t panel_bytes = kp_ * kQNR * eb, tail = (K / per) * per * kQNR * eb;
    for (int64_t p = 0; p < panels; ++p) {
      uint8_t* dp = data_.get() + p * panel_bytes;
      if ((p + 1) * kQNR > N)
        std::memset(dp, 0, static_cast<size_t>(panel_bytes));
      else if (tail < panel_bytes)
        std::memset(dp + tail, 0, static_cast<size_t>(panel_bytes - tail));
    }
    if (panels == 0) std::memset(data_.get(), 0, bytes);
  }
  std::vector<uint32_t> sums(static_cast<size_t>(N), 0);
  const uint8_t flip = b_signed ? 0 : 0x80;  // uint8 -> int8 by subtracting 128
  const int64_t row_step = trans_b ? 1 : ldb, col_step = trans_b ? ldb : 1;
  // Fast path (byte layouts, B not transposed): whole panels x whole k quads are a 4 x 16 byte
  // interleave per quad, done with unpack instructions; their column sums in a separate
  // vectorizable pass. The generic loop below then fills only the edges. ConvInteger packs
  // its im2col matrix this way on every call (32 x 144 x 2048 on the CNN at batch 32).
  int64_t fast_panels = 0, fast_k = 0;
#if defined(__SSE2__)
  if (eb == 1 && !trans_b) {
    fast_panels = N / kQNR;
    fast_k = K / 4 * 4;
    const __m128i fl = _mm_set1_epi8(static_cast<char>(flip));
    int8_t* dst = reinterpret_cast<int8_t*>(data_.get());
    for (int64_t p = 0; p < fast_panels; ++p) {
      int8_t* dp = dst + p * kp_ * kQNR;
      const uint8_t* src = B + p * kQNR;
      for (int64_t k = 0; k < fast_k; k += 4) {
        const __m128i r0 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k * ldb)), fl);
        const __m128i r1 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (k + 1) * ldb)), fl);
        const __m128i r2 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (k + 2) * ldb)), fl);
        const __m128i r3 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (k + 3) * ldb)), fl);
        const __m128i lo01 = _mm_unpacklo_epi8(r0, r1), hi01 = _mm_unpackhi_epi8(r0, r1);
        const __m128i lo23 = _mm_unpacklo_epi8(r2, r3), hi23 = _mm_unpackhi_epi8(r2, r3);
        __m128i* d = reinterpret_cast<__m128i*>(dp + k * kQNR);  // (k / 4) * 4 * 16
        _mm_storeu_si128(d + 0, _mm_unpacklo_epi16(lo01, lo23));  // columns 0-3
        _mm_storeu_si128(d + 1, _mm_unpackhi_epi16(lo01, lo23));  // 4-7
        _mm_storeu_si128(d + 2, _mm_unpacklo_epi16(hi01, hi23));  // 8-11
        _mm_storeu_si128(d + 3, _mm_unpackhi_epi16(hi01, hi23));  // 12-15
      }
    }
    const int64_t nf = fast_panels * kQNR;
    for (int64_t k = 0; k < fast_k; ++k) {
      const uint8_t* row = B + k * ldb;
      for (int64_t n = 0; n < nf; ++n)
        sums[n] += static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(row[n] ^ flip)));
    }
  }
#endif
  // Rows of B in blocks of 64 (in cache while every panel takes its part of them).
  auto pack = [&](auto* dst) {
    for (int64_t k0 = 0; k0 < K; k0 += 64) {
      const int64_t k1 = std::min<int64_t>(K, k0 + 64);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t n0 = p * kQNR, nr = std::min<int64_t>(kQNR, N - n0);
        auto* dp = dst + p * kp_ * kQNR;
        for (int64_t k = k0; k < k1; ++k) {
          if (p < fast_panels && k < fast_k) continue;  // done above
          const uint8_t* src = B + k * row_step + n0 * col_step;
          auto* d = dp + (k / per) * per * kQNR + k % per;
          for (int64_t j = 0; j < nr; ++j) {
            const int8_t v = static_cast<int8_t>(src[j * col_step] ^ flip);
            sums[n0 + j] += static_cast<uint32_t>(static_cast<int32_t>(v));
            d[j * per] = static_cast<std::remove_reference_t<decltype(*d)>>(v);
          }
        }
      }
    }
  };
  if (eb == 1) pack(reinterpret_cast<int8_t*>(data_.get()));
  else pack(reinterpret_cast<int16_t*>(data_.get()));
  for (int64_t n = 0; n < N; ++n) colsum_[n] = static_cast<int32_t>(sums[n]);
}

void qgemm_packed(int64_t M, const void* A_, int64_t lda, bool a_signed, QZeroPoints a_zp, const QPackedB& B,
                  QZeroPoints b_zp, int32_t* C, int64_t ldc, ThreadPool* pool, const QBlockDone* block_done,
                  const QRowFill* fill_a) {
  const int64_t N = B.cols(), K = B.rows(), kp = B.padded_k();
  if (M <= 0 || N <= 0) return;
  if (K == 0) {  // an empty sum: zeros
    for (int64_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, 0);
    if (block_done) (*block_done)(0, M, 0, N);
    return;
  }
  const uint8_t* A = static_cast<const uint8_t*>(A_);
  const QGemmIsa isa = B.isa();
  const QMicroFn micro = micro_for(isa);
  const QMicro4Fn micro4 = isa == QGemmIsa::Vnni ? vnni_micro4() : nullptr;
  const int eb = elem_bytes(isa);
  const int64_t panels = (N + kQNR - 1) / kQNR;

  // Zero points after moving A to uint8 and B to int8.
  const int32_t a_shift = a_signed ? 128 : 0, b_shift = B.is_signed() ? 0 : -128;
  auto za = [&](int64_t m) { return static_cast<uint32_t>(a_zp.at(m) + a_shift); };
  auto zb = [&](int64_t n) { return static_cast<uint32_t>(b_zp.at(n) + b_shift); };
  bool need_rows = false, need_cols = false;
  for (int64_t n = 0; n < (b_zp.per_channel ? N : 1) && !need_rows; ++n) need_rows = zb(n) != 0;
  for (int64_t m = 0; m < (a_zp.per_channel ? M : 1) && !need_cols; ++m) need_cols = za(m) != 0;
  std::vector<uint32_t> row_sums;
  if (need_rows) {
    row_sums.assign(static_cast<size_t>(M), 0);
    std::vector<uint8_t> filled(static_cast<size_t>(fill_a ? K : 0));
    for (int64_t m = 0; m < M; ++m) {
      uint32_t s = 0;
      if (fill_a) (*fill_a)(m, 0, K, filled.data());
      const uint8_t* a = fill_a ? filled.data() : A + m * lda;
      for (int64_t k = 0; k < K; ++k) s += canon_a(a[k], a_signed);
      row_sums[m] = s;
    }
  }
  const int32_t* col_sums = B.col_sums();

  // Tasks: blocks of rows x groups of panels.
  const int threads = pool ? pool->threads() : 1;
  const int64_t mb = std::min<int64_t>(round_up(M, kQMR), 64);
  const int64_t mblocks = (M + mb - 1) / mb;
  int64_t want_groups = std::max<int64_t>(1, (threads * 4 + mblocks - 1) / mblocks);
  if (threads == 1) want_groups = 1;
  int64_t pg = std::max<int64_t>(1, (panels + want_groups - 1) / want_groups);
  if (micro4 && panels >= 4) pg = (pg + 3) / 4 * 4;  // whole 4-panel tiles per task
  const int64_t pgroups = (panels + pg - 1) / pg;
  const int64_t tasks = mblocks * pgroups;
  const int64_t work = M * N * K;

  auto task = [&](int64_t t) {
    const int64_t mbi = t / pgroups, pgi = t % pgroups;
    const int64_t m0 = mbi * mb, m1 = std::min(M, m0 + mb);
    const int64_t p0 = pgi * pg, p1 = std::min(panels, p0 + pg);
    // A's rows [m0, m1) packed once for the whole depth: per depth block k0, per quad of rows,
    // a kQMR x kc tile (zero rows past M, zeros past K), so the column chunks below reuse it.
    const int64_t quads = (m1 - m0 + kQMR - 1) / kQMR;
    thread_local std::vector<uint8_t> abuf;
    abuf.resize(static_cast<size_t>(quads * kQMR * kp * eb));
    auto tile_of = [&](int64_t k0, int64_t q) {
      const int64_t kc = std::min<int64_t>(kQKC, kp - k0);
      return abuf.data() + (quads * kQMR * k0 + q * kQMR * kc) * eb;
    };
    for (int64_t k0 = 0; k0 < kp; k0 += kQKC) {
      const int64_t kc = std::min<int64_t>(kQKC, kp - k0);
      const int64_t kreal = std::clamp<int64_t>(K - k0, 0, kc);
      for (int64_t q = 0; q < quads; ++q) {
        const int64_t r0 = m0 + q * kQMR;
        const int mr = static_cast<int>(std::min<int64_t>(kQMR, m1 - r0));
        if (eb == 1) {
          uint8_t* dst = tile_of(k0, q);
          // Zeros only in the padding: rows past M and depth past K.
          if (mr < kQMR) std::memset(dst + mr * kc, 0, static_cast<size_t>((kQMR - mr) * kc));
          for (int r = 0; r < mr; ++r) {
            uint8_t* d = dst + r * kc;
            if (fill_a) {
              (*fill_a)(r0 + r, k0, kreal, d);
              if (a_signed)
                for (int64_t k = 0; k < kreal; ++k) d[k] ^= 0x80;
            } else {
              const uint8_t* src = A + (r0 + r) * lda + k0;
              if (a_signed)
                for (int64_t k = 0; k < kreal; ++k) d[k] = static_cast<uint8_t>(src[k] ^ 0x80);
              else
                copy_row(src, kreal, d);
            }
            if (kreal < kc) std::memset(d + kreal, 0, static_cast<size_t>(kc - kreal));
          }
        } else {
          int16_t* dst = reinterpret_cast<int16_t*>(tile_of(k0, q));
          std::memset(dst, 0, static_cast<size_t>(kQMR * kc * 2));
          thread_local std::vector<uint8_t> filled;
          for (int r = 0; r < mr; ++r) {
            const uint8_t* src = A + (r0 + r) * lda + k0;
            if (fill_a) {
              filled.resize(static_cast<size_t>(kreal));
              (*fill_a)(r0 + r, k0, kreal, filled.data());
              src = filled.data();
            }
            int16_t* d = dst + r * kc;
            for (int64_t k = 0; k < kreal; ++k) d[k] = canon_a(src[k], a_signed);
          }
        }
      }
    }
    // Columns in chunks of kChunkPanels panels (kQKC x 256 bytes of B, in L2 while every quad
    // of rows passes over it). Without the chunks a wide B (GPT-2's 3072 or 50257 columns)
    // came from L3 or memory again for every quad of rows.
    constexpr int64_t kChunkPanels = 16;
    for (int64_t c0 = p0; c0 < p1; c0 += kChunkPanels) {
      const int64_t c1 = std::min(p1, c0 + kChunkPanels);
      for (int64_t k0 = 0; k0 < kp; k0 += kQKC) {
        const int64_t kc = std::min<int64_t>(kQKC, kp - k0);
        for (int64_t q = 0; q < quads; ++q) {
          const int64_t r0 = m0 + q * kQMR;
          const int mr = static_cast<int>(std::min<int64_t>(kQMR, m1 - r0));
          const uint8_t* at = tile_of(k0, q);
          int64_t p = c0;
          if (micro4)  // four panels at a time
            for (; p + 4 <= c1; p += 4) {
              const uint8_t* bp = B.data() + (p * kp + k0) * kQNR * eb;
              int32_t* cp = C + r0 * ldc + p * kQNR;
              if ((p + 4) * kQNR <= N) {
                micro4(kc, at, bp, kp * kQNR * eb, cp, ldc, mr, k0 > 0);
                continue;
              }
              // The last columns (fewer than 64; the panels are zero padded): through a tile, so
              // that a product as narrow as a 7x7 convolution's 49 pixels still takes this kernel.
              const int64_t w = N - p * kQNR;
              alignas(64) int32_t tile[kQMR][4 * kQNR];
              if (k0 > 0)
                for (int r = 0; r < mr; ++r) std::memcpy(tile[r], cp + r * ldc, static_cast<size_t>(w) * 4);
              micro4(kc, at, bp, kp * kQNR * eb, tile[0], 4 * kQNR, mr, k0 > 0);
              for (int r = 0; r < mr; ++r) std::memcpy(cp + r * ldc, tile[r], static_cast<size_t>(w) * 4);
            }
          for (; p < c1; ++p) {
            const int nr = static_cast<int>(std::min<int64_t>(kQNR, N - p * kQNR));
            micro(kc, at, B.data() + (p * kp + k0) * kQNR * eb, C + r0 * ldc + p * kQNR, ldc, mr, nr, k0 > 0);
          }
        }
      }
    }
    const int64_t n0 = p0 * kQNR, n1 = std::min(N, p1 * kQNR);
    if (!need_rows && !need_cols) {
      if (block_done) (*block_done)(m0, m1, n0, n1);
      return;
    }
    const uint32_t kk = static_cast<uint32_t>(K);
    if (!a_zp.per_channel) {
      // One zero point for A (the usual case): the column terms are the same for every row,
      // so the correction is two vectorizable loops (same wrapping uint32 arithmetic).
      //   C[m][n] -= zb[n] * rowsum[m] + za * colsum[n] - K * za * zb[n]
      const uint32_t zam = za(0);
      thread_local std::vector<uint32_t> colterm, zbcol;
      colterm.resize(static_cast<size_t>(n1 - n0));
      zbcol.resize(static_cast<size_t>(n1 - n0));
      for (int64_t n = n0; n < n1; ++n) {
        const uint32_t zbn = zb(n);
        zbcol[n - n0] = zbn;
        colterm[n - n0] = zam * static_cast<uint32_t>(col_sums[n]) - kk * zam * zbn;
      }
      const uint32_t* ct = colterm.data();
      const uint32_t* zc = zbcol.data();
      for (int64_t m = m0; m < m1; ++m) {
        uint32_t* c = reinterpret_cast<uint32_t*>(C + m * ldc + n0);
        const int64_t w = n1 - n0;
        if (need_rows) {
          const uint32_t ra = row_sums[m];
          for (int64_t j = 0; j < w; ++j) c[j] -= zc[j] * ra + ct[j];
        } else {
          for (int64_t j = 0; j < w; ++j) c[j] -= ct[j];
        }
      }
    } else {
      for (int64_t m = m0; m < m1; ++m) {
        const uint32_t zam = za(m);
        const uint32_t ra = need_rows ? row_sums[m] : 0;
        int32_t* c = C + m * ldc;
        for (int64_t n = n0; n < n1; ++n) {
          const uint32_t zbn = zb(n);
          uint32_t v = static_cast<uint32_t>(c[n]);
          v -= zbn * ra;
          v -= zam * static_cast<uint32_t>(col_sums[n]);
          v += kk * zam * zbn;
          c[n] = static_cast<int32_t>(v);
        }
      }
    }
    if (block_done) (*block_done)(m0, m1, n0, n1);
  };
  if (!pool || tasks == 1 || work < (1 << 16)) {
    for (int64_t t = 0; t < tasks; ++t) task(t);
  } else {
    pool->parallel_for(tasks, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) task(t);
    });
  }
}

void qgemm(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, bool a_signed, QZeroPoints a_zp,
           const void* B, int64_t ldb, bool b_signed, QZeroPoints b_zp, int32_t* C, int64_t ldc, ThreadPool* pool,
           QGemmIsa isa) {
  if (M <= 0 || N <= 0) return;
  QPackedB packed(K, N, B, ldb, b_signed, false, isa);
  qgemm_packed(M, A, lda, a_signed, a_zp, packed, b_zp, C, ldc, pool);
}

void qgemm_reference(int64_t M, int64_t N, int64_t K, const void* A_, int64_t lda, bool a_signed, QZeroPoints a_zp,
                     const void* B_, int64_t ldb, bool b_signed, QZeroPoints b_zp, int32_t* C, int64_t ldc) {
  const uint8_t* A = static_cast<const uint8_t*>(A_);
  const uint8_t* B = static_cast<const uint8_t*>(B_);
  auto av = [&](int64_t m, int64_t k) -> int64_t {
    uint8_t v = A[m * lda + k];
    return a_signed ? static_cast<int8_t>(v) : v;
  };
  auto bv = [&](int64_t k, int64_t n) -> int64_t {
    uint8_t v = B[k * ldb + n];
    return b_signed ? static_cast<int8_t>(v) : v;
  };
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += (av(m, k) - a_zp.at(m)) * (bv(k, n) - b_zp.at(n));
      C[m * ldc + n] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(s)));
    }
}

}  // namespace slmops::runtime::kernels
