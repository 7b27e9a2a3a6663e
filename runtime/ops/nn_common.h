// Shared by the nn op family (nn_*.cpp): sliding-window attributes and geometry, and the
// registration entry points of each file (called by register_nn_ops in nn.cpp).
#pragma once
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kernels/conv.h"
#include "runtime/ops/common.h"

namespace slmops::runtime::ops {

// The attributes Conv, ConvTranspose and the pooling ops share, as written on the node
// (empty lists when absent).
struct WindowAttrs {
  std::string auto_pad;  // NOTSET, SAME_UPPER, SAME_LOWER or VALID
  std::vector<int64_t> kernel_shape, strides, dilations, pads;
  bool ceil_mode = false;

  explicit WindowAttrs(const ir::Node& n);
};

// The pads as [begin..., end...] for `rank` spatial dims (zeros when not given); throws when
// the attribute has the wrong length.
std::vector<int64_t> pads_or_zeros(const WindowAttrs& a, size_t rank);
// strides or dilations for `rank` spatial dims (ones when not given).
std::vector<int64_t> ones_or(const std::vector<int64_t>& v, size_t rank, const char* what);

// Output dims and pads of a convolution or pooling window of `kernel` over the
// spatial dims `in` (auto_pad, explicit pads, ceil_mode).
kernels::WindowShape forward_window(const WindowAttrs& a, const std::vector<int64_t>& in,
                                    const std::vector<int64_t>& kernel);

// Runs fn(begin, end, inner) over tasks [0, tasks): spread over the pool when there are
// enough tasks to keep every thread busy (inner = nullptr), otherwise one range on the
// calling thread with the pool handed on for parallel loops inside a task.
void run_tasks(ThreadPool* pool, int64_t tasks, const std::function<void(int64_t, int64_t, ThreadPool*)>& fn);

// fn(begin, end) over [0, n): on the pool in chunks of at least `grain` when there is one,
// otherwise in one call.
void parallel_range(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Throws unless `t` holds float, double, float16 or bfloat16 (the ops that compute in
// float32 through to_float_tensor).
void require_float_type(const Tensor& t, const char* what);

// Keys' cubic convolution kernel with parameter a (-0.75 or -0.5 in practice) at distance d:
// the weight of an input sample d steps from the point being interpolated.
inline double cubic_weight(double a, double d) {
  d = std::abs(d);
  if (d <= 1) return ((a + 2) * d - (a + 3)) * d * d + 1;
  if (d < 2) return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
  return 0;
}

// A factory for kernel class K constructed from the node.
template <typename K>
KernelFactory node_kernel() {
  return [](const ir::Node& n, const PlanContext&) { return std::make_unique<K>(n); };
}

void register_conv_ops();      // nn_conv.cpp
void register_pool_ops();      // nn_pool.cpp
void register_resize_ops();    // nn_resize.cpp
void register_sampling_ops();  // nn_sample.cpp

}  // namespace slmops::runtime::ops
