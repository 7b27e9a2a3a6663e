// quantize: the modes of `slmops quantize` and the recipe pass of the same name.
//
//   int8-dynamic    MatMul(X, W)            -> DynamicQuantizeMatMul(X, Wq, sw, zw)
//   int8-static     Conv/MatMul/Gemm(X, W)  -> DQ(Q(X)) -> op(DQ(Wq), DQ(bias_i32))
//   int16-static    as int8-static with int16 activations (opset 21 QDQ)
//   int4-weight     MatMul(X, W)            -> MatMulNBits(X, Bq, scales, zp)  (or DQ blocked)
//   int8-weight     as int4-weight with bits 8
// Conditions: the weight is a float initializer (not a graph input); nodes named by
// --exclude-nodes or typed by --exclude-op-types stay float; a model that already holds
// quantized ops is refused.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/edit.h"
#include "ir/graph.h"
#include "passes/common/data.h"
#include "passes/common/node_filter.h"
#include "passes/common/opset.h"
#include "passes/options.h"
#include "runtime/value.h"

namespace slmops::passes {

class Progress;

struct QuantizeOptions {
  std::string mode;  // int8-dynamic | int8-static | int16-static | int4-weight | int8-weight
  // Which nodes.
  std::vector<std::string> op_types;          // empty: the mode's default set
  std::vector<std::string> exclude_nodes;     // names or globs (* and ?)
  std::vector<std::string> exclude_op_types;
  bool keep_io_types = true;                  // graph inputs/outputs keep their float type
  // Weights.
  bool per_channel = false;                   // dynamic/static: one scale per output channel
  bool symmetric = false;                     // weight-only: asymmetric (uint zero points) by default
  int64_t block_size = 32;                    // weight-only: 16..256, a power of two
  int64_t accuracy_level = 0;                 // MatMulNBits accuracy_level (0 or 4 typical)
  std::string format = "matmulnbits";         // weight-only: matmulnbits | qdq
  std::string algorithm = "rtn";              // weight-only: rtn | gptq | hqq
  bool quantize_embeddings = false;           // weight-only: Gather on a float table too
  // GPTQ.
  double gptq_damp = 0.01;                    // damping: fraction of mean(diag(H))
  bool gptq_act_order = false;                // quantize columns by decreasing diag(H)
  // HQQ.
  int64_t hqq_iterations = 20;
  // Static (and GPTQ) calibration.
  std::string calib_data;                     // any evaluate data source
  std::string tokenizer;                      // JSONL text rows: tokenizer.json or its folder
  int64_t context_length = 0;                 // JSONL text rows: window length (0: whole rows)
  std::string calib_method = "minmax";        // minmax | entropy | percentile
  double calib_percentile = 99.999;
  int64_t calib_samples = 0;                  // 0: all
  int64_t calib_batch_size = 1;
  bool symmetric_activations = false;
  // Accuracy-aware mode.
  std::string max_degradation;                // METRIC:VALUE, e.g. accuracy:0.01 or perplexity:0.5%
  std::string eval_data;
  int64_t max_fallback_steps = 0;             // 0: until the goal is met or nothing is left
  bool allow_noop = false;                    // a run that quantizes no node is an error unless set
  static const OptionTable<QuantizeOptions>& table();
  NodeSelection selection() const { return {op_types, exclude_nodes, exclude_op_types}; }
};

namespace quant {

// One line of the per-node summary.
struct NodeReport {
  std::string node, op_type, how;  // how: "MatMulNBits int4 block 32 sym", "skipped: ..."
  int64_t bytes_before = 0, bytes_after = 0;
};

struct QuantReport {
  std::vector<NodeReport> nodes;
  nlohmann::json extra = nlohmann::json::object();  // mode-specific facts (calibration, fallback)
  nlohmann::json to_json() const;
};

// The float32 weight behind an input, or nullptr when the input is not a float32 initializer
// of this graph (or is also a graph input, which callers may override).
const ir::Tensor* float_initializer(const ir::Graph& g, const ir::Value* v);

// A vector of attributes (ir::Attribute is move-only, so an initializer list cannot hold it):
// attr_list(ir::Attribute::make_int("axis", 0), ...).
template <typename... A>
std::vector<ir::Attribute> attr_list(A&&... a) {
  std::vector<ir::Attribute> v;
  (v.push_back(std::forward<A>(a)), ...);
  return v;
}

// Tells the kernel that a weight read from a memory-mapped file is no longer needed, so its
// pages leave the resident set (quantizing a model then never holds the float weights and
// their quantized form at once). Only file-backed buffers; a no-op for heap memory.
void release_file_pages(const ir::Tensor& t);

// Throws Error(BadInput) naming the first node when the model already holds quantized ops.
void refuse_quantized(const ir::Model& m);

// The modes. Each edits `m` in place and fills `report`.
// `progress` (may be null) gets one stage with an update per weight quantized: GPTQ or HQQ on a
// large decoder takes minutes.
void quantize_weight_only(ir::Model& m, const QuantizeOptions& o, const NodeFilter& f, const FeedSource* calib,
                          int threads, QuantReport& report, Progress* progress = nullptr);
void quantize_dynamic(ir::Model& m, const QuantizeOptions& o, const NodeFilter& f, int threads, QuantReport& report);
void quantize_static(ir::Model& m, const QuantizeOptions& o, const NodeFilter& f, const FeedSource& calib,
                     int threads, QuantReport& report);

}  // namespace quant
}  // namespace slmops::passes
