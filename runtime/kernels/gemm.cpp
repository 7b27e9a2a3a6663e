// SGEMM driver in the GotoBLAS/BLIS scheme:
//
//   for each column block of op(B) (kNC wide)
//     for each depth block (kKC deep)
//       pack the B block into kNR-wide strips (shared by the threads)
//       for each row block of op(A) (mc rows; blocks spread over threads)
//         pack the A block into kMR-high panels (per thread; narrow products, N <= 512,
//         read op(A)'s rows in place instead where the kernel set can)
//         for each B strip, for each A panel: micro-kernel on a kMR x kNR tile of C
//
// An A panel and a B strip (kKC deep) stay in L1 while a tile is computed, the A block in
// L2, the B block in L2/L3. Single-row and single-column products (GEMV) are bound by memory
// bandwidth, not by arithmetic, and skip the packing: they stream the matrix once.
#include "runtime/kernels/gemm.h"

#include <algorithm>
#include <stdexcept>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/gemm_kernels.h"
#include "runtime/thread_pool.h"

namespace slmops::runtime::kernels {

using detail::kMR;
using detail::kNR;
using detail::scale_add;

namespace {

constexpr int64_t kKC = 256;   // depth of a block
constexpr int64_t kMC = 144;   // most rows of op(A) in a packed block (a multiple of 6 and 8)
constexpr int64_t kNC = 3072;  // columns of op(B) in a packed block (a multiple of kNR)
constexpr size_t kAlign = 64;  // packed buffers start on a cache line
constexpr int64_t kDirectMaxN = 512;  // the widest op(B) for which A is not packed (see gemm_blocked)

// Below this many multiply-adds a product runs on the calling thread: waking the pool
// would cost more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---- portable kernels (see gemm_kernels.h for what each computes) --------------------------

void micro_portable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                    int mr, int nr) {
  float tile[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR)
    for (int r = 0; r < kMR; ++r)
      for (int j = 0; j < kNR; ++j) tile[r][j] += a[r] * b[j];
  detail::store_tile_edge(tile, mr, nr, c, ldc, alpha, beta);
}

void gemv_dot_portable(int64_t K, const float* x, const float* W, int64_t ldw, int64_t n, float* y) {
  for (int64_t j = 0; j < n; ++j) {
    float s = 0;
    for (int64_t k = 0; k < K; ++k) s += x[k] * W[j * ldw + k];
    y[j] = s;
  }
}

void gemv_axpy_portable(int64_t K, const float* x, const float* W, int64_t ldw, int64_t n, float* y) {
  std::fill(y, y + n, 0.f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < n; ++j) y[j] += x[k] * W[k * ldw + j];
}

void gemv_strips_portable(int64_t kc, const float* x, const float* strips, int64_t count, float* y) {
  for (int64_t s = 0; s < count; ++s)
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < kNR; ++j) y[s * kNR + j] += x[k] * strips[(s * kc + k) * kNR + j];
}

// From the CPU-features table (SLMOPS_ISA=avx2, fma or portable caps the choice).
const detail::GemmKernels& best_kernels() {
  static const detail::GemmKernels& k = [] () -> const detail::GemmKernels& {
    if (cpu().avx512f) return detail::avx512_kernels();
    return cpu().fma ? detail::fma_kernels() : detail::portable_kernels();
  }();
  return k;
}

// ---- buffers ------------------------------------------------------------------------------

float* aligned_floats(size_t n) {
  const size_t bytes = round_up(static_cast<int64_t>(std::max<size_t>(n, 1) * sizeof(float)), kAlign);
  void* p = std::aligned_alloc(kAlign, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

// A per-thread packing buffer that grows to the largest size asked for and is reused.
class Scratch {
 public:
  float* get(size_t n) {
    if (n > size_) {
      data_.reset(aligned_floats(n));
      size_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
};

// The calling thread's packing buffers. Reached through functions, so that every thread
// (pool workers too) passes through the thread_local's declaration: that is where its
// destructor is registered. A block-scope thread_local named from a lambda that runs on a
// worker skips it, and each worker leaked its buffer at exit (LeakSanitizer found it).
Scratch& a_scratch() {
  static thread_local Scratch s;
  return s;
}
Scratch& b_scratch() {
  static thread_local Scratch s;
  return s;
}

// ---- operands -----------------------------------------------------------------------------

// A matrix read through strides: element (r, k) is p[r * rs + k * ks]. Both operands are
// seen with the depth k as second index: op(A) as (m, k), op(B) transposed as (n, k).
struct Strided {
  const float* p;
  int64_t rs, ks;
};

Strided view_a(bool trans_a, const float* A, int64_t lda) { return trans_a ? Strided{A, 1, lda} : Strided{A, lda, 1}; }
Strided view_b(bool trans_b, const float* B, int64_t ldb) { return trans_b ? Strided{B, ldb, 1} : Strided{B, 1, ldb}; }

// Packs rows [r0, r0 + rows) x depth [k0, k0 + kc) into one panel of width W, interleaved by
// depth (dst[k * W + r]) and zero-padded to W rows.
template <int W>
void pack_panel(const Strided& v, int64_t r0, int64_t rows, int64_t k0, int64_t kc, float* dst) {
  const float* src = v.p + r0 * v.rs + k0 * v.ks;
  if (rows == W && v.rs == 1) {  // each depth step is W contiguous floats
    for (int64_t k = 0; k < kc; ++k)
      for (int r = 0; r < W; ++r) dst[k * W + r] = src[k * v.ks + r];
    return;
  }
  if (rows == W && v.ks == 1) {  // W contiguous rows: a W-row transpose, k innermost per row
    for (int r = 0; r < W; ++r) {
      const float* row = src + r * v.rs;
      for (int64_t k = 0; k < kc; ++k) dst[k * W + r] = row[k];
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    for (int64_t r = 0; r < rows; ++r) dst[k * W + r] = src[r * v.rs + k * v.ks];
    for (int64_t r = rows; r < W; ++r) dst[k * W + r] = 0.f;
  }
}

// pack_panel for the panel height of the kernel set in use (6 or 8 rows).
void pack_a_panel(int mr, const Strided& v, int64_t r0, int64_t rows, int64_t k0, int64_t kc, float* dst) {
  if (mr == 8) pack_panel<8>(v, r0, rows, k0, kc, dst);
  else pack_panel<kMR>(v, r0, rows, k0, kc, dst);
}

// Packs `strips` B strips from column n0 (kc deep from k0): strip j at dst + j * kc * kNR.
void pack_b_strips(const Strided& bt, int64_t N, int64_t n0, int64_t strips, int64_t k0, int64_t kc, float* dst) {
  for (int64_t j = 0; j < strips; ++j) {
    const int64_t c = n0 + j * kNR;
    pack_panel<kNR>(bt, c, std::min<int64_t>(kNR, N - c), k0, kc, dst + j * kc * kNR);
  }
}

// fn over [0, n) in chunks of at least `grain`, on the pool when there is one.
void run(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) pool->parallel_for(n, grain, fn);
  else fn(0, n);
}

// C = beta * C, for products with nothing to add (K == 0 or alpha == 0).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = scale_add(0.f, 0.f, beta, C[m * ldc + n]);
}

// A strided vector as contiguous floats: x itself, or a copy gathered into `storage`.
const float* contiguous(const Strided& x, int64_t K, std::vector<float>& storage) {
  if (x.ks == 1) return x.p;
  storage.resize(K);
  for (int64_t k = 0; k < K; ++k) storage[k] = x.p[k * x.ks];
  return storage.data();
}

// y[j * incy] = alpha * sum_k x[k] * W(j, k) + beta * y[j * incy] for j < n: the product when
// C is one row (x = the row of op(A), W = op(B) transposed) or one column (x = the column of
// op(B), W = op(A)). Threads split j.
void gemv(int64_t n, int64_t K, float alpha, const Strided& x, const Strided& W, float beta, float* y, int64_t incy,
          ThreadPool* pool) {
  const auto& kern = best_kernels();
  std::vector<float> storage;
  const float* xp = contiguous(x, K, storage);
  std::vector<float> sums(n);
  // One chunk per thread (the work is uniform, and the axpy form reads W's rows in longer
  // runs), of at least 64 outputs and ~64k multiply-adds.
  const int64_t per_thread = pool ? ceil_div(n, pool->threads()) : n;
  const int64_t grain = std::max<int64_t>({64, (int64_t{1} << 16) / std::max<int64_t>(K, 1), per_thread});
  run(pool, n, grain, [&](int64_t j0, int64_t j1) {
    if (W.ks == 1) kern.gemv_dot(K, xp, W.p + j0 * W.rs, W.rs, j1 - j0, sums.data() + j0);
    else kern.gemv_axpy(K, xp, W.p + j0 * W.rs, W.ks, j1 - j0, sums.data() + j0);  // W.rs == 1
    for (int64_t j = j0; j < j1; ++j) y[j * incy] = scale_add(alpha, sums[j], beta, y[j * incy]);
  });
}

// C (one row) = alpha * x * B + beta * C with B pre-packed: each thread streams whole strips.
void gemv_packed(float alpha, const Strided& x, const PackedB& B, float beta, float* c, ThreadPool* pool) {
  const auto& kern = best_kernels();
  const int64_t K = B.rows(), N = B.cols();
  std::vector<float> storage;
  const float* xp = contiguous(x, K, storage);
  const int64_t strips = ceil_div(N, kNR);
  std::vector<float> sums(strips * kNR, 0.f);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / (K * kNR));
  run(pool, strips, grain, [&](int64_t s0, int64_t s1) {
    // Depth blocks outermost: the strips [s0, s1) of a block are contiguous.
    const int64_t kb = B.depth_block();
    for (int64_t k0 = 0; k0 < K; k0 += kb)
      kern.gemv_strips(std::min(kb, K - k0), xp + k0, B.block(k0, s0 * kNR), s1 - s0, &sums[s0 * kNR]);
    for (int64_t j = s0 * kNR; j < std::min(s1 * kNR, N); ++j) c[j] = scale_add(alpha, sums[j], beta, c[j]);
  });
}

// The blocked product (see the top of the file). `packed` replaces `bt` when B is pre-packed,
// `packed_a` replaces `a` when A is.
void gemm_blocked(int64_t M, int64_t N, int64_t K, float alpha, const Strided& a, const Strided& bt,
                  const PackedB* packed, float beta, float* C, int64_t ldc, ThreadPool* pool,
                  const PackedA* packed_a = nullptr) {
  const auto& kern = best_kernels();
  const int64_t threads = pool ? pool->threads() : 1;
  // Depth blocks: the pre-packed operands' (which agree, or both hold all K rows in one), else
  // the driver's own.
  const int64_t kb = packed ? packed->depth_block() : packed_a ? packed_a->depth_block() : kKC;
  if (packed && packed_a && packed_a->depth_block() != kb && K > std::min(kb, packed_a->depth_block()))
    throw std::invalid_argument("sgemm: the packed operands' depth blocks differ");
  // Equal row blocks of at most kMC rows; as many as a multiple of the thread count so that
  // every thread gets the same share. When there are fewer blocks than threads, the threads
  // split the B strips instead (each packs the same A block).
  int64_t blocks = ceil_div(M, kMC);
  if (blocks >= threads) blocks = round_up(blocks, threads);
  const int64_t MR = kern.mr;
  const int64_t mc = round_up(ceil_div(M, blocks), MR);
  blocks = ceil_div(M, mc);
  const int64_t splits = blocks >= threads ? 1 : threads;
  // A read in place instead of packed (GemmKernels::micro_direct) in narrow products, where a
  // packed row block serves few B strips: packing it cost as much as a third of the product
  // (N = 16-64, the attention and projection products of small decoders). With many strips
  // the packed panel wins (gpt2's N = 768-50257: 4% slower unpacked on the FMA set).
  const bool direct_a = !packed_a && a.ks == 1 && kern.micro_direct && N <= kDirectMaxN;
  const bool has_wide = direct_a ? kern.micro_wide_direct != nullptr : kern.micro_wide != nullptr;

  for (int64_t n0 = 0; n0 < N; n0 += kNC) {
    const int64_t nc = std::min(kNC, N - n0);
    const int64_t strips = ceil_div(nc, kNR);
    for (int64_t k0 = 0; k0 < K; k0 += kb) {
      const int64_t kc = std::min(kb, K - k0);
      const float* b_block;
      if (packed) {
        b_block = packed->block(k0, n0);
      } else {
        float* dst = b_scratch().get(strips * kc * kNR);
        run(pool, strips, 1, [&](int64_t s0, int64_t s1) {
          pack_b_strips(bt, N, n0 + s0 * kNR, s1 - s0, k0, kc, dst + s0 * kc * kNR);
        });
        b_block = dst;
      }
      const float beta_k = k0 == 0 ? beta : 1.f;  // later depth blocks add to the partial sums
      run(pool, blocks * splits, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t m0 = (t / splits) * mc, rows = std::min(mc, M - m0);
          const int64_t panels = ceil_div(rows, MR);
          const float* a_block = nullptr;
          if (packed_a) {
            a_block = packed_a->block(k0, m0);
          } else if (direct_a) {
            a_block = a.p + m0 * a.rs + k0;  // panel p at + p * MR * a.rs
          } else {
            float* dst = a_scratch().get(panels * kc * MR);
            for (int64_t p = 0; p < panels; ++p)
              pack_a_panel(static_cast<int>(MR), a, m0 + p * MR, std::min<int64_t>(MR, rows - p * MR), k0, kc, dst + p * kc * MR);
            a_block = dst;
          }
          const int64_t s_begin = strips * (t % splits) / splits, s_end = strips * (t % splits + 1) / splits;
          for (int64_t s = s_begin; s < s_end;) {
            // Two full strips at once where the set has a wide tile (more accumulators than
            // one strip fills hide the FMA latency).
            const bool wide = has_wide && s + 1 < s_end && (s + 2) * kNR <= nc;
            const int nr = static_cast<int>(std::min<int64_t>(kNR, nc - s * kNR));
            for (int64_t p = 0; p < panels; ++p) {
              const int mr = static_cast<int>(std::min<int64_t>(MR, rows - p * MR));
              float* c_tile = C + (m0 + p * MR) * ldc + n0 + s * kNR;
              if (direct_a) {
                const float* ap = a_block + p * MR * a.rs;
                if (wide)
                  kern.micro_wide_direct(kc, ap, a.rs, b_block + s * kc * kNR, c_tile, ldc, alpha, beta_k, mr);
                else
                  kern.micro_direct(kc, ap, a.rs, b_block + s * kc * kNR, c_tile, ldc, alpha, beta_k, mr, nr);
                continue;
              }
              if (wide) kern.micro_wide(kc, a_block + p * kc * MR, b_block + s * kc * kNR, c_tile, ldc, alpha, beta_k, mr);
              else kern.micro(kc, a_block + p * kc * MR, b_block + s * kc * kNR, c_tile, ldc, alpha, beta_k, mr, nr);
            }
            s += wide ? 2 : 1;
          }
        }
      });
    }
  }
}

}  // namespace

namespace detail {
const GemmKernels& portable_kernels() {
  static const GemmKernels k{kMR, micro_portable, nullptr, gemv_dot_portable, gemv_axpy_portable, gemv_strips_portable};
  return k;
}
}  // namespace detail

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        float a = trans_a ? A[k * lda + m] : A[m * lda + k];
        float b = trans_b ? B[n * ldb + k] : B[k * ldb + n];
        acc += static_cast<double>(a) * b;
      }
      float prev = beta == 0.f ? 0.f : beta * C[m * ldc + n];
      C[m * ldc + n] = alpha * static_cast<float>(acc) + prev;
    }
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);
  if (M * N * K < kMinParallelWork) pool = nullptr;
  const Strided a = view_a(trans_a, A, lda), bt = view_b(trans_b, B, ldb);
  if (M == 1) return gemv(N, K, alpha, a, bt, beta, C, 1, pool);
  if (N == 1) return gemv(M, K, alpha, bt, a, beta, C, ldc, pool);
  gemm_blocked(M, N, K, alpha, a, bt, nullptr, beta, C, ldc, pool);
}

// ---- pre-packed B -----------------------------------------------------------------------------

// Layout: the depth block starting at k0 sits at k0 * n_padded (every earlier block is kKC
// deep); inside it, strip s (kc deep) at s * kc * kNR, as pack_b_strips writes it.
PackedB::PackedB(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb)
    : k_(K), n_(N), n_padded_(round_up(N, kNR)), data_(aligned_floats(static_cast<size_t>(K * n_padded_))) {
  base_ = data_.get();
  const Strided bt = view_b(trans_b, B, ldb);
  for (int64_t k0 = 0; k0 < K; k0 += kKC)
    pack_b_strips(bt, N, 0, n_padded_ / kNR, k0, std::min(kKC, K - k0), data_.get() + k0 * n_padded_);
}

void PackedB::Free::operator()(float* p) const { std::free(p); }

// Layout: as PackedB's with rows for columns: the depth block at k0 sits at k0 * m_padded;
// inside it, panel p (kc deep) at p * kc * mr, as gemm_blocked packs its A blocks (mr: the
// panel height of the kernel set in use).
PackedA::PackedA(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, int64_t depth_block)
    : m_(M),
      k_(K),
      m_padded_(round_up(M, best_kernels().mr)),
      kc_(depth_block > 0 ? std::min(depth_block, kKC) : kKC),
      data_(aligned_floats(static_cast<size_t>(K * m_padded_))) {
  const Strided a = view_a(trans_a, A, lda);
  const int mr = best_kernels().mr;
  for (int64_t k0 = 0; k0 < K; k0 += kc_) {
    const int64_t kc = std::min(kc_, K - k0);
    for (int64_t p = 0; p * mr < M; ++p)
      pack_a_panel(mr, a, p * mr, std::min<int64_t>(mr, M - p * mr), k0, kc, data_.get() + k0 * m_padded_ + p * kc * mr);
  }
}

void PackedA::Free::operator()(float* p) const { std::free(p); }

const float* PackedA::block(int64_t k0, int64_t m0) const {
  return data_.get() + k0 * m_padded_ + m0 * std::min(kc_, k_ - k0);
}

static_assert(PackedB::kStrip == kNR && PackedB::kWrapMaxK <= kKC && PackedB::kMaxDepthBlock == kKC,
              "PackedB::wrap's layout is one depth block");

PackedB PackedB::wrap(int64_t K, int64_t N, float* memory) {
  if (K > kWrapMaxK) throw std::invalid_argument("PackedB::wrap: K above one depth block");
  PackedB b;
  b.k_ = K;
  b.n_ = N;
  b.n_padded_ = round_up(N, kNR);
  b.base_ = memory;
  return b;
}

PackedB PackedB::wrap_blocked(int64_t K, int64_t N, int64_t depth_block, float* memory) {
  if (depth_block < 1 || depth_block > kMaxDepthBlock) throw std::invalid_argument("PackedB::wrap: bad depth block");
  PackedB b = wrap(std::min(K, kWrapMaxK), N, memory);
  b.k_ = K;
  b.kc_ = depth_block;
  return b;
}

const float* PackedB::block(int64_t k0, int64_t n0) const {
  return base_ + k0 * n_padded_ + n0 * std::min(kc_, k_ - k0);
}

void sgemm_packed(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedB& B, float beta,
                  float* C, int64_t ldc, ThreadPool* pool) {
  const int64_t N = B.cols(), K = B.rows();
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);
  if (M * N * K < kMinParallelWork) pool = nullptr;
  const Strided a = view_a(trans_a, A, lda);
  if (M == 1) return gemv_packed(alpha, a, B, beta, C, pool);
  gemm_blocked(M, N, K, alpha, a, Strided{}, &B, beta, C, ldc, pool);
}

void sgemm_packed_a(const PackedA& A, bool trans_b, int64_t N, float alpha, const float* B, int64_t ldb, float beta,
                    float* C, int64_t ldc, ThreadPool* pool) {
  const int64_t M = A.rows(), K = A.depth();
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);
  if (M * N * K < kMinParallelWork) pool = nullptr;
  gemm_blocked(M, N, K, alpha, Strided{}, view_b(trans_b, B, ldb), nullptr, beta, C, ldc, pool, &A);
}

void sgemm_packed_ab(const PackedA& A, const PackedB& B, float alpha, float beta, float* C, int64_t ldc,
                     ThreadPool* pool) {
  const int64_t M = A.rows(), N = B.cols(), K = B.rows();
  if (A.depth() != K) throw std::invalid_argument("sgemm_packed_ab: A's depth differs from B's rows");
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);
  if (M * N * K < kMinParallelWork) pool = nullptr;
  gemm_blocked(M, N, K, alpha, Strided{}, Strided{}, &B, beta, C, ldc, pool, &A);
}

}  // namespace slmops::runtime::kernels
