// Structured pruning (prune method=structured): removes whole units so that tensors shrink and
// every runtime gets faster, where the pruned model stays a valid graph of the same ops.
//
// A unit is one index of a channel axis shared by a set of tensors: the hidden neurons of a
// transformer MLP (columns of up/gate, rows of down), the output channels of a Conv (its
// filters, bias, the BatchNormalization parameters after it, the input channels of the Conv or
// the features of the Gemm that read them). Such a set is found by following values from a
// MatMul/Gemm/Conv that writes them:
//
//   Before: h = MatMul(x, W_up[64, 256]); g = Gelu(h + b[256]); y = MatMul(g, W_down[256, 64])
//   After:  h = MatMul(x, W_up[64, 192]); g = Gelu(h + b[192]); y = MatMul(g, W_down[192, 64])
//
// Through element-wise ops (with constants broadcast on the axis, or another value of the same
// units: gate * up), pooling, BatchNormalization/InstanceNormalization, depthwise Conv and
// Flatten (a channel becomes a block of features) up to the nodes that read the units away
// (MatMul/Gemm input A, Conv input X). Anything else that touches them (a Reshape into
// attention heads, a residual Add with the model's input, a graph output) makes the set
// unprunable, and the report says which node stopped it.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "ir/graph.h"
#include "passes/common/data.h"
#include "passes/common/node_filter.h"

namespace slmops::passes {

class Progress;

struct StructuredConfig {
  double sparsity = 0.5;             // fraction of each set's units removed (of all units with global)
  bool global = false;               // one ranking over every set (scores normalized per set)
  std::string importance;            // "weight" or "activation"
  int64_t multiple_of = 1;           // units kept rounded up to a multiple of this
  std::set<std::string> structures;  // "ffn", "heads", "channels" (empty: all)
  const NodeFilter* filter = nullptr;
  // Accuracy-aware loop: a set with a node named here loses half its share (1) or nothing (2).
  std::map<std::string, int> lowered;
  const FeedSource* calib = nullptr;  // activation importance, compensation
  bool compensate = true;             // with calib: readers' weights re-fit to the kept units
  bool allow_noop = false;            // no set to prune is not an error
  int64_t calib_samples = 0;
  int threads = 1;
};

// Prunes `m` in place. Returns the report: {"groups": [{producers, readers, units_before,
// units_after, parameters_before, parameters_after}], "skipped": [{node, why}], parameter
// counts}. Throws BadInput when no set of units can be pruned.
nlohmann::json prune_structured(ir::Model& m, const StructuredConfig& c, Progress* progress);

// Elements of the graph's float initializers (the parameters a prune report counts).
int64_t float_parameters(const ir::Graph& g);

}  // namespace slmops::passes
