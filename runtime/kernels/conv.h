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

// col2im adds the same rows and columns of `col` into the input-shaped `y` (the inverse
// scatter of im2col); columns that land in the padding are dropped. Different channels
// touch disjoint parts of `y`, so channel ranges may run in parallel.
void col2im(const float* col, const WindowShape& s, int64_t c_begin, int64_t c_end, int64_t j_begin, int64_t j_end,
            int64_t ldcol, float* y);

// A single-channel convolution (depthwise: one input channel per group) computed directly:
// y[j] += sum over kernel offsets k of w[k] * (input under offset k of window j). y is
// out_size long; `x` is one channel plane.
void depthwise_accumulate(const float* x, const WindowShape& s, const float* w, float* y);

}  // namespace slmops::runtime::kernels
