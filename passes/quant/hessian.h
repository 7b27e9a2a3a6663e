// The layer-input statistics that GPTQ, SparseGPT and Wanda need, from one streamed pass of
// the float model over calibration data: H = sum over rows a of a layer's input A (flattened
// to [rows, K]) of a a^T (GPTQ's Hessian up to the factor 2), or only its diagonal (sum of
// a_k^2, Wanda's squared input norms).
#pragma once
#include <cstdint>
#include <map>
#include <vector>

#include "ir/graph.h"
#include "passes/common/data.h"
#include "runtime/thread_pool.h"

namespace slmops::passes::quant {

struct HessianTarget {
  ir::Node* node;  // input 0 is the layer input A; its last dimension is K
  int64_t K;
};

// Per target: [K, K] row-major (full) or [K] (diagonal_only), in double. Each activation is
// folded in as soon as it is computed, so no batch's activations outlive their last reader.
// `samples` returns the batches seen.
std::map<ir::Node*, std::vector<double>> collect_hessians(const ir::Model& m, const std::vector<HessianTarget>& targets,
                                                          const FeedSource& calib, int64_t limit,
                                                          runtime::ThreadPool& pool, int threads, int64_t& samples,
                                                          bool diagonal_only = false);

}  // namespace slmops::passes::quant
