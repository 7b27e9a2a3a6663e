// One way to look at a model's intermediate values while it runs over data: calibration
// ranges (static quantization), input Hessians (GPTQ, SparseGPT), activation norms (Wanda)
// and per-node sensitivity all go through ActivationCollector.
//
//   observe()  streams: fn(k, value) as soon as values[k] is computed, nothing kept, so the
//              memory held is one batch's live activations (statistics, Hessians, norms).
//   capture()  keeps: returns every requested value of the batch (comparing two models).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "passes/common/data.h"
#include "runtime/executor.h"

namespace slmops::passes {

class ActivationCollector {
 public:
  // `names`: values of the model's main graph (graph inputs or node outputs) to look at. A
  // name the model does not have is never reported (capture() leaves it empty).
  ActivationCollector(const ir::Model& m, std::vector<std::string> names, int threads);

  using Visit = std::function<void(size_t k, const runtime::RValue& value)>;
  // Runs one batch, calling fn for each requested value: graph inputs first (from the
  // feeds), then node outputs in execution order.
  void observe(std::vector<runtime::RValue> feeds, const Visit& fn);
  // Runs one batch and returns the requested values in the order of names() (kind None for a
  // value the model does not have or did not compute).
  std::vector<runtime::RValue> capture(std::vector<runtime::RValue> feeds);

  const std::vector<std::string>& names() const { return names_; }
  runtime::Session& session() { return session_; }

 private:
  const ir::Model& model_;
  std::vector<std::string> names_;
  std::unordered_map<const ir::Value*, size_t> index_;  // main-graph value -> k
  std::vector<size_t> present_;         // the k whose value the model has, in order
  runtime::RunOptions capture_opts_;    // extra_outputs: those values (capture)
  runtime::Session session_;
};

// Sensitivity of each node of `nodes` to a rewrite: the error the rewritten model `changed`
// adds at the node, measured on `data` (first `limit` samples) as the normalized squared
// error of its output against `reference` minus that of its first input (error carried in
// from upstream). Sorted most sensitive first.
std::vector<std::pair<std::string, double>> node_sensitivity(const ir::Model& reference, const ir::Model& changed,
                                                             const std::vector<std::string>& nodes,
                                                             const FeedSource& data, int64_t limit, int threads);

}  // namespace slmops::passes
