// Inner kernels of the SGEMM driver (gemm.cpp), in a portable version (gemm.cpp) and an
// AVX+FMA version (gemm_fma.cpp). The driver picks one set once by CPU features.
//
// Packed layouts (made by the driver, see gemm.cpp):
//   A panel: kMR rows of op(A) interleaved by k: a[k * kMR + r], zero-padded to kMR rows.
//   B strip: kNR columns of op(B) interleaved by k: b[k * kNR + c], zero-padded to kNR columns.
#pragma once
#include <cstdint>

namespace slmops::runtime::kernels::detail {

inline constexpr int kMR = 6;     // rows of the register tile (portable and FMA sets)
inline constexpr int kMaxMR = 8;  // the most rows of any set's tile (AVX-512: 8)
inline constexpr int kNR = 16;    // columns of the register tile (two 8-float vectors)

struct GemmKernels {
  // Rows of this set's register tile and of its packed A panels (kMR, or 8 for AVX-512):
  // "kMR" in the layouts above and below means this value for the set in use.
  int mr;
  // C[mr, nr] = alpha * (A panel x B strip over kc) + beta * C; beta == 0 never reads C.
  // mr <= kMR and nr <= kNR give the valid part of the tile at the edges of C.
  void (*micro)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta, int mr,
                int nr);
  // The same over two full-width strips side by side (a kMR x 2*kNR tile, all 2*kNR columns
  // valid): the strip at b and the one after it, at b + kc * kNR. nullptr where the set has
  // none (the driver then calls micro twice).
  void (*micro_wide)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                     int mr);
  // y[j] = sum_k x[k] * W[j * ldw + k] for j < n (W rows are dot-product operands).
  void (*gemv_dot)(int64_t K, const float* x, const float* W, int64_t ldw, int64_t n, float* y);
  // y[j] = sum_k x[k] * W[k * ldw + j] for j < n (W rows are scaled and summed).
  void (*gemv_axpy)(int64_t K, const float* x, const float* W, int64_t ldw, int64_t n, float* y);
  // y[s * kNR + c] += sum_k x[k] * strips[(s * kc + k) * kNR + c] for s < count, c < kNR
  // (consecutive packed B strips of kc rows).
  void (*gemv_strips)(int64_t kc, const float* x, const float* strips, int64_t count, float* y);
  // micro and micro_wide reading A unpacked: row r of the tile at a + r * lda, its kc values
  // contiguous (op(A) not transposed). The same products in the same order as from a packed
  // panel; the driver skips packing A when N is narrow (see gemm.cpp). nullptr where the set
  // has none.
  void (*micro_direct)(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha,
                       float beta, int mr, int nr) = nullptr;
  void (*micro_wide_direct)(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha,
                            float beta, int mr) = nullptr;
};

// Plain C++ (any x86-64); and the AVX+FMA set, to call only when the CPU has AVX, FMA and F16C
// (cpu().fma; AVX2 is not needed).
const GemmKernels& portable_kernels();
const GemmKernels& fma_kernels();
// The FMA set with an AVX-512F micro-kernel (gemm_avx512.cpp); only when the CPU has
// AVX-512F as well as AVX2 and FMA.
const GemmKernels& avx512_kernels();

// alpha * sum + beta * c, where beta == 0 ignores c (which may be garbage, even NaN).
inline float scale_add(float alpha, float sum, float beta, float c) {
  return alpha * sum + (beta == 0.f ? 0.f : beta * c);
}

// Writes the valid mr x nr part of a register tile (alpha * tile + beta * C), for the edges.
inline void store_tile_edge(const float (&tile)[kMR][kNR], int mr, int nr, float* c, int64_t ldc, float alpha,
                            float beta) {
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) c[r * ldc + j] = scale_add(alpha, tile[r][j], beta, c[r * ldc + j]);
}

}  // namespace slmops::runtime::kernels::detail
