// Sliding-window helpers for convolutions: plain functions on pointers and shapes.
//
// A window geometry maps output positions to input positions along each spatial dim:
//   input = output * stride - pad_begin + kernel_offset * dilation
// im2col lays the input under every window out as the columns of a matrix so that a
// convolution becomes one GEMM; col2im is its adjoint (it scatters such a matrix back,
// adding), which turns a transposed convolution into a GEMM followed by col2im.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace slmops::runtime::kernels {

struct WindowShape {
  // One entry per spatial dim.
  std::vector<int64_t> in, out, kernel, strides, dilations, pad_begin;
  // Padding after the input; windows may reach past it (pooling's ceil_mode). The kernels
  // below do not read it: pooling divisors do.
  std::vector<int64_t> pad_end;

  size_t rank() const { return in.size(); }
  int64_t in_size() const;      // product of `in`
  int64_t out_size() const;     // product of `out`
  int64_t kernel_size() const;  // product of `kernel`
  // True when every window is a single input element at the same position (a 1x1 kernel with
  // stride 1 and no padding): im2col and col2im are then the identity.
  bool pointwise() const;
};

// The column matrix has one row per (channel, kernel offset) pair, r = c * kernel_size + k
// with k row-major over the kernel dims, and one column per output position. `col` points
// at row 0 column `j_begin`; rows are `ldcol` apart.
//
// im2col writes rows of channels [c_begin, c_end), columns [j_begin, j_end), from `x`
// (channel-major planes of in_size elements); positions in the padding read as zero.
void im2col(const float* x, const WindowShape& s, int64_t c_begin, int64_t c_end, int64_t j_begin, int64_t j_end,
            float* col, int64_t ldcol);

// The column matrix of one image written straight in PackedB's strip layout (gemm.h): strip
// t (output positions 16t .. 16t + 15) is K x 16 floats at col + t * K * 16, row k = (c,
// kernel offset) as above. Only for 2-D windows of stride 1 whose output rows are as wide as
// the input rows ("same" width, any dilation and padding) and out_size a multiple of 16:
// then output position j reads input element j + delta(kernel offset) of its channel plane or
// lies in the padding, and each strip row is one masked 16-wide load. supported() tells
// whether a geometry qualifies; the constructor works out the shifts and masks once (per Conv
// call), run() writes one image. It uses AVX-512 masked loads where the CPU has them, plain
// code otherwise or when allow_avx512 is false (the tests compare the two).
class Im2colStrips {
 public:
  static bool supported(const WindowShape& s);
  explicit Im2colStrips(const WindowShape& s);
  // `strip_rows` (>= K; 0 means K) is the row count of each strip in `col`: rows K and up are
  // left as they are (a caller may keep a row of ones there to add a bias in the GEMM).
  void run(const float* x, int64_t channels, float* col, int64_t strip_rows = 0, bool allow_avx512 = true) const;

 private:
  int64_t ksize_ = 0, plane_ = 0, strips_ = 0;
  std::vector<int64_t> delta_;    // [kernel offset]: input element of output position 0
  std::vector<uint16_t> mask_;    // [strip * ksize + kernel offset]: positions inside the input
};

// Which instruction set a kernel below runs with. The *_at functions take it explicitly so
// the tests can run every level the CPU has; conv_isa() is the best one (cpu(), SLMOPS_ISA).
enum class ConvIsa { Portable, Fma, Avx512 };
ConvIsa conv_isa();

// The column matrix of a 2-D window of any stride, dilation and padding, written in PackedB's
// strip layout (gemm.h) a block at a time: the rows of a range of channels (row (c - c0) *
// kernel_size + k, k row-major over the kernel dims) for a range of strips (strip t: output
// positions 16t .. 16t + 15). The last strip of a plane may be partial: its columns past
// out_size are written as zeros, as PackedB::wrap wants. Where the 16 windows of a strip start
// at consecutive input elements (stride 1 within an output row, or a whole strip when output
// rows are as wide as input rows) a row is one masked load; two apart (stride 2 within an
// output row) two masked loads and a permute; otherwise a masked gather. The
// tables (per strip: the input offset of each window's first element; per strip and kernel
// offset: the lanes inside the input) are made once per geometry.
class StripIm2col {
 public:
  static constexpr int64_t kStrip = 16;
  // Rank 2, a non-empty output, and every offset within an int32 (planes up to 2^31 floats).
  static bool supported(const WindowShape& s);
  explicit StripIm2col(const WindowShape& s);

  int64_t strips() const { return strips_; }  // ceil(out_size / 16)
  int64_t kernel_size() const { return ksize_; }

  // Writes strips [t0, t1) of the rows of channels [c0, c1) of the image `x` (channel-major
  // planes): strip t at col + (t - t0) * strip_rows * 16, row r at + r * 16. strip_rows >=
  // (c1 - c0) * kernel_size; rows past that are left as they are.
  void run(const float* x, int64_t c0, int64_t c1, int64_t t0, int64_t t1, float* col, int64_t strip_rows) const {
    run_at(conv_isa(), x, c0, c1, t0, t1, col, strip_rows);
  }
  void run_at(ConvIsa isa, const float* x, int64_t c0, int64_t c1, int64_t t0, int64_t t1, float* col,
              int64_t strip_rows) const;

 private:
  int64_t ksize_ = 0, plane_ = 0, strips_ = 0;
  std::vector<int32_t> delta_;   // [k]: input offset of kernel offset k from a window's start
  std::vector<int32_t> origin_;  // [t * 16 + i]: input offset of the start of window 16t + i
  // [t]: 1 when origin_ of lane i of strip t is origin_[16t] + i for every lane in use, 2 when
  // it is origin_[16t] + 2i (stride 2 within a row), 0 otherwise (a gather).
  std::vector<uint8_t> shifted_;
  std::vector<uint16_t> mask_;  // [t * ksize + k]: lanes of strip t whose element k is inside
};

// One block of a convolution as a GEMM on StripIm2col's strips, reading the weights where
// they are (no packed copy: a weight row is streamed once per 8-row tile, and a model's
// weights need no second home in memory):
//   C[m, j] = (first ? 0 : C[m, j]) + sum_k A[m, k] * B(k, j) (+ bias[m] when first and bias)
// for m < M, j < width, k < kc; A row-major (lda), B(k, j) at B[(j / 16) * sstride + k * ldb +
// j % 16]: StripIm2col's strips with ldb = 16, sstride = 16 * kc (the last strip may be
// partial), or a row-major matrix with ldb = its row length, sstride = 16 (a pointwise
// convolution reads X itself; columns past width are not read). C rows ldc apart. With
// `last`, C is clamped to [lo, hi] as it is stored (a fused Relu: lo = 0, hi = +inf; an
// infinite bound is not applied). Tiles of 8 rows by 32 columns (AVX-512) keep 16
// accumulators in registers.
void conv_gemm_strips(int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda, const float* B, int64_t ldb,
                      int64_t sstride, const float* bias, bool first, bool last, float lo, float hi, float* C,
                      int64_t ldc);
void conv_gemm_strips_at(ConvIsa isa, int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda, const float* B,
                         int64_t ldb, int64_t sstride, const float* bias, bool first, bool last, float lo, float hi,
                         float* C, int64_t ldc);

// Convolution weights W[M, K] (row-major) in panels of 32 maps for conv_gemm_maps: W(m, k) at
// (m / 32) * K * 32 + k * 32 + m % 32, maps past M as zeros.
constexpr int64_t kMapPanel = 32;
// Output positions conv_gemm_maps broadcasts at a time (a caller compares the padding this
// leaves with that of 16-wide strips).
constexpr int64_t kMapPositions = 7;
std::vector<float> pack_map_panels(const float* w, int64_t M, int64_t K);

// conv_gemm_strips with the operands' roles turned: vectors along 32 maps of a weight panel,
// output positions broadcast 7 at a time, so that maps of 49 or 196 positions (7x7, 14x14)
// waste no lanes where 16-wide strips compute 64 and 208. Accumulates position-major:
//   CT[p, j, i] = (first ? 0 : CT[p, j, i]) + sum_{k < kc} W(32p + i, k) * B(k, j)
// for panels p < `panels`, positions j < width, i < 32; CT[p, j, i] at ct + p * ct_pstride +
// j * 32 + i, W(32p + i, k) at wt + p * wt_pstride + k * 32 + i (pack_map_panels' layout from
// the block's first depth row), B(k, j) at B[(j / 16) * sstride + k * ldb + j % 16] as in
// conv_gemm_strips (StripIm2col's strips, or X itself for a pointwise convolution).
void conv_gemm_maps(int64_t panels, int64_t kc, int64_t width, const float* wt, int64_t wt_pstride, const float* B,
                    int64_t ldb, int64_t sstride, bool first, float* ct, int64_t ct_pstride);
void conv_gemm_maps_at(ConvIsa isa, int64_t panels, int64_t kc, int64_t width, const float* wt, int64_t wt_pstride,
                       const float* B, int64_t ldb, int64_t sstride, bool first, float* ct, int64_t ct_pstride);

// conv_gemm_maps' tile (ct_pstride = width * 32) written out as rows of Y with the bias and
// clamp: Y[i, j] = clamp(CT[i / 32, j, i % 32] + bias[i]) for maps i < rows, positions
// j < width, Y[i, j] at y + i * ldy + j; bias may be nullptr; a bound at -inf / +inf is not
// applied, and a NaN sum becomes lo (or hi without lo), as x > lo ? x : lo does. On AVX-512
// 16 x 16 blocks transposed in registers (a scalar strided gather was 7% of mobilenet_v2).
void maps_to_rows(const float* ct, int64_t width, int64_t rows, const float* bias, float lo, float hi, float* y,
                  int64_t ldy);
void maps_to_rows_at(ConvIsa isa, const float* ct, int64_t width, int64_t rows, const float* bias, float lo, float hi,
                     float* y, int64_t ldy);

// A depthwise 2-D convolution (one input channel per output map, multiplier 1) with its bias
// and a clamp fused:
//   y[c, oy, ox] = min(max(bias[c] + sum_{ky,kx} w[c, ky, kx] * x[c, iy, ix], lo), hi)
//   iy = oy * sh - ph + ky * dh, ix = ox * sw - pw + kx * dw (terms in the padding are 0),
// for channels [c0, c1) of x (planes of in_size) into y (planes of out_size). bias may be
// nullptr; lo = 0, hi = +inf is a fused Relu, (-inf, +inf) none. Vector code takes the 2-D
// windows of stride 1 or 2 (any kernel size, dilation 1); other windows run the portable
// loop. The max is _mm*_max_ps(v, lo): NaN sums become lo, as Relu's x > 0 ? x : 0 does.
bool depthwise_vectorized(const WindowShape& s);
void depthwise_conv2d(const float* x, const WindowShape& s, const float* w, const float* bias, int64_t c0, int64_t c1,
                      float lo, float hi, float* y);
void depthwise_conv2d_at(ConvIsa isa, const float* x, const WindowShape& s, const float* w, const float* bias,
                         int64_t c0, int64_t c1, float lo, float hi, float* y);

// y[i] = min(max(y[i], lo), hi) over n floats (a fused Relu or Clip on a block in cache).
void clamp_in_place(float* y, int64_t n, float lo, float hi);

// col2im adds the same rows and columns of `col` into the input-shaped `y` (the inverse
// scatter of im2col); columns that land in the padding are dropped. Different channels
// touch disjoint parts of `y`, so channel ranges may run in parallel.
void col2im(const float* col, const WindowShape& s, int64_t c_begin, int64_t c_end, int64_t j_begin, int64_t j_end,
            int64_t ldcol, float* y);

// A single-channel convolution (depthwise: one input channel per group) computed directly:
// y[j] += sum over kernel offsets k of w[k] * (input under offset k of window j). y is
// out_size long; `x` is one channel plane.
void depthwise_accumulate(const float* x, const WindowShape& s, const float* w, float* y);

namespace detail {
// The vector bodies behind StripIm2col::run_at and depthwise_conv2d_at (conv_avx512.cpp),
// called only where the CPU has the ISA.
struct StripTables {
  int64_t ksize, plane;
  const int32_t* delta;
  const int32_t* origin;
  const uint8_t* shifted;
  const uint16_t* mask;
};
void strip_im2col_avx512(const StripTables& t, const float* x, int64_t c0, int64_t c1, int64_t t0, int64_t t1,
                         float* col, int64_t strip_rows);
void conv_gemm_strips_avx512(int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda, const float* B,
                             int64_t ldb, int64_t sstride, const float* bias, bool first, bool last, float lo, float hi,
                             float* C, int64_t ldc);
// The address of element `offset` of `base`, which may lie outside the plane (its lanes are
// then masked off): computed as an integer, not as out-of-range pointer arithmetic.
inline const float* element_at(const float* base, int64_t offset) {
  return reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(base) + offset * int64_t{sizeof(float)});
}

// Window mask bit i moved to bit 2i (pdep by hand, 16 bits): the elements of a stride-2 strip.
inline uint32_t spread_to_even_bits(uint32_t m) {
  m = (m | (m << 8)) & 0x00ff00ffu;
  m = (m | (m << 4)) & 0x0f0f0f0fu;
  m = (m | (m << 2)) & 0x33333333u;
  return (m | (m << 1)) & 0x55555555u;
}

// fn(std::integral_constant<int, rows>{}, m) for 1 <= rows <= Max (nothing for other counts):
// a run-time count as a kernel's template argument.
template <int Max, typename Fn>
inline void with_rows(int64_t rows, int64_t m, Fn& fn) {
  if constexpr (Max > 0) {
    if (rows == Max) return fn(std::integral_constant<int, Max>{}, m);
    with_rows<Max - 1>(rows, m, fn);
  }
}
// with_rows over the row tiles of an M-row product: tiles of Max rows from m = 0, then one of
// the rest.
template <int Max, typename Fn>
inline void for_each_row_tile(int64_t M, Fn&& fn) {
  int64_t m = 0;
  for (; m + Max <= M; m += Max) fn(std::integral_constant<int, Max>{}, m);
  with_rows<Max - 1>(M - m, m, fn);
}

// The strip im2col and GEMM on the AVX + FMA tier (conv_fma.cpp).
void strip_im2col_fma(const StripTables& t, const float* x, int64_t c0, int64_t c1, int64_t t0, int64_t t1, float* col,
                      int64_t strip_rows);
void conv_gemm_strips_fma(int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda, const float* B,
                          int64_t ldb, int64_t sstride, const float* bias, bool first, bool last, float lo, float hi,
                          float* C, int64_t ldc);
void maps_to_rows_avx512(const float* ct, int64_t width, int64_t rows, const float* bias, float lo, float hi, float* y,
                         int64_t ldy);
void conv_gemm_maps_avx512(int64_t panels, int64_t kc, int64_t width, const float* wt, int64_t wt_pstride,
                           const float* B, int64_t ldb, int64_t sstride, bool first, float* ct, int64_t ct_pstride);
// One plane of depthwise_conv2d (stride 1 or 2 along the rows, any stride down the columns).
// A 3x3 depthwise plane (dilation 1, stride 1 or 2) built with AVX + FMA (conv_fma.cpp);
// false when the window is not one it takes.
bool depthwise3x3_plane_fma(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                            float* y);
void depthwise_plane_avx512(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                            float* y);
}  // namespace detail

}  // namespace slmops::runtime::kernels
