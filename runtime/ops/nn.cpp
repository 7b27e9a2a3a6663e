// Neural-network ops: convolutions (nn_conv.cpp), pooling (nn_pool.cpp), resizing
// (nn_resize.cpp) and sampling (nn_sample.cpp). This file holds the window geometry they
// share and registers the family.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/ops/nn_common.h"

namespace slmops::runtime::ops {

WindowAttrs::WindowAttrs(const ir::Node& n)
    : auto_pad(n.attr_string("auto_pad", "NOTSET")),
      kernel_shape(n.attr_ints("kernel_shape")),
      strides(n.attr_ints("strides")),
      dilations(n.attr_ints("dilations")),
      pads(n.attr_ints("pads")),
      ceil_mode(n.attr_int("ceil_mode", 0) != 0) {
  if (auto_pad != "NOTSET" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER" && auto_pad != "VALID")
    bad_input("auto_pad '{}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", auto_pad);
}

std::vector<int64_t> pads_or_zeros(const WindowAttrs& a, size_t rank) {
  if (a.pads.empty()) return std::vector<int64_t>(2 * rank, 0);
  if (a.pads.size() != 2 * rank)
    bad_input("pads has {} values, expected {} for {} spatial dims", a.pads.size(), 2 * rank, rank);
  return a.pads;
}

std::vector<int64_t> ones_or(const std::vector<int64_t>& v, size_t rank, const char* what) {
  if (v.empty()) return std::vector<int64_t>(rank, 1);
  if (v.size() != rank) bad_input("{} has {} values, expected {}", what, v.size(), rank);
  for (int64_t x : v)
    if (x < 1) bad_input("{} [{}] must be positive", what, fmt::join(v, ", "));
  return v;
}

kernels::WindowShape forward_window(const WindowAttrs& a, const std::vector<int64_t>& in,
                                    const std::vector<int64_t>& kernel) {
  const size_t rank = in.size();
  kernels::WindowShape s;
  s.in = in;
  s.kernel = kernel;
  s.strides = ones_or(a.strides, rank, "strides");
  s.dilations = ones_or(a.dilations, rank, "dilations");
  s.out.resize(rank);
  s.pad_begin.resize(rank);
  s.pad_end.resize(rank);
  const std::vector<int64_t> pads = pads_or_zeros(a, rank);
  for (int64_t p : pads)
    if (p < 0) bad_input("pads [{}] must not be negative", fmt::join(pads, ", "));
  // Attributes are arbitrary 64-bit values: the geometry is computed in 128 bits and every
  // result must fit a dimension again, so an absurd attribute is refused, never wrapped.
  using wide = __int128;
  auto narrow = [&](wide v, size_t d) {
    if (v < 0 || v > (wide{1} << 62))
      bad_input("the window attributes (kernel {}, stride {}, dilation {}) give a size out of range along spatial "
                "dim {}",
                kernel[d], s.strides[d], s.dilations[d], d);
    return static_cast<int64_t>(v);
  };
  for (size_t d = 0; d < rank; ++d) {
    if (kernel[d] < 1) bad_input("kernel_shape [{}] must be positive", fmt::join(kernel, ", "));
    const wide stride = s.strides[d];
    const wide extent = wide{kernel[d] - 1} * s.dilations[d] + 1;  // input span of one window
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      // Output ceil(in / stride); the padding that needs is split evenly, the odd element
      // going to the end (SAME_UPPER) or the beginning (SAME_LOWER).
      s.out[d] = narrow((in[d] + stride - 1) / stride, d);
      const int64_t total = narrow(std::max<wide>(0, (s.out[d] - 1) * stride + extent - in[d]), d);
      s.pad_begin[d] = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      s.pad_end[d] = total - s.pad_begin[d];
      continue;
    }
    const bool valid = a.auto_pad == "VALID";
    const int64_t begin = valid ? 0 : pads[d];
    const int64_t end = valid ? 0 : pads[rank + d];
    const wide span = wide{in[d]} + begin + end - extent;
    if (span < 0)
      bad_input("the window (kernel {}, dilation {}) is larger than the padded input ({}) along spatial dim {}",
                kernel[d], s.dilations[d], static_cast<int64_t>(std::min<wide>(span + extent, INT64_MAX)), d);
    s.out[d] = narrow((a.ceil_mode ? span + stride - 1 : span) / stride + 1, d);
    // With ceil_mode the last window must still start inside the input or the begin padding.
    if (a.ceil_mode && wide{s.out[d] - 1} * stride >= wide{in[d]} + begin) --s.out[d];
    s.pad_begin[d] = begin;
    s.pad_end[d] = end;
  }
  return s;
}

void run_tasks(ThreadPool* pool, int64_t tasks, const std::function<void(int64_t, int64_t, ThreadPool*)>& fn) {
  if (pool && tasks >= pool->threads()) {
    pool->parallel_for(tasks, 1, [&](int64_t b, int64_t e) { fn(b, e, nullptr); });
  } else {
    fn(0, tasks, pool);
  }
}

void parallel_range(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) pool->parallel_for(n, grain, fn);
  else if (n > 0) fn(0, n);
}

void require_float_type(const Tensor& t, const char* what) {
  if (t.dtype != DType::Float && t.dtype != DType::Double && t.dtype != DType::Float16 && t.dtype != DType::BFloat16)
    unsupported_type(t.dtype, what);
}

}  // namespace slmops::runtime::ops

namespace slmops::runtime {
void register_nn_ops() {
  ops::register_conv_ops();
  ops::register_pool_ops();
  ops::register_resize_ops();
  ops::register_sampling_ops();
}
}  // namespace slmops::runtime
