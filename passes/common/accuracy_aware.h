// The accuracy-aware loop, for any rewrite that can leave chosen nodes unchanged (quantize
// keeps them float, prune keeps them dense): rewrite everything, measure the goal against
// the original, and while it is missed return the node that adds the most error (ranked
// once by node_sensitivity) to its original form and try again.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/graph.h"
#include "passes/common/data.h"
#include "passes/options.h"

namespace slmops::passes {

class Progress;

// A rewrite with a per-node strength: nodes named in `keep` stay as they are (or, with
// AccuracyAwareConfig::levels > 1, are rewritten less, by how often they are named), every other
// node it selects is rewritten. Returns the names of the nodes it changed.
using KeepingRewrite = std::function<std::vector<std::string>(ir::Model& m, const std::vector<std::string>& keep)>;

struct AccuracyAwareConfig {
  std::string goal;            // Olive form, METRIC:TYPE:VALUE (DataHooks::measure)
  std::string eval_data;       // the data the goal is measured on
  TextData text;               // how its text rows are tokenized
  int64_t max_steps = 0;       // nodes kept at most (0: until met or none left)
  const FeedSource* sensitivity_data = nullptr;  // batches the ranking runs on
  int64_t sensitivity_limit = 0;                 // samples of it (0: all)
  int threads = 1;
  int verbosity = 1;
  std::string kept_as = "kept float";  // how log lines name a kept node ("kept dense")
  std::string kept_key = "kept_float";  // its key in the steps of the report ("kept_dense")
  // How often the ranking is walked: with 2, a node can be named twice in `keep` (prune
  // halves a layer's sparsity when it is named once and keeps it dense when named twice).
  int levels = 1;
  std::string stage = "accuracy-aware";  // the progress stage's label
};

struct AccuracyAwareResult {
  std::vector<std::string> kept;  // nodes returned to their original form, in order
  bool met = false;
  nlohmann::json steps = nlohmann::json::array();        // {kept, value, baseline, met} per round
  nlohmann::json sensitivity = nlohmann::json::array();  // {node, added_nmse}, most sensitive first
};

// A --max-degradation value, METRIC:VALUE or METRIC:VALUE%, as the Olive goal text the
// evaluator understands (METRIC:max-degradation:VALUE); bad input naming the option otherwise.
std::string degradation_goal(const std::string& spec, Naming naming = Naming::Cli);

// A config from a pass's options: the goal from its max-degradation text, measured on
// eval_data; sensitivity ranked on `sensitivity` (its first `limit` samples).
AccuracyAwareConfig accuracy_aware_config(const std::string& max_degradation, const std::string& eval_data,
                                          const TextData& text, const FeedSource* sensitivity, int64_t limit,
                                          int threads, int verbosity);

// The option checks every accuracy-aware pass makes: a malformed max-degradation, or one
// without eval-data, appended to `problems` (empty max-degradation: nothing to check).
void degradation_problems(const std::string& max_degradation, const std::string& eval_data, Naming naming,
                          std::vector<std::string>& problems);

// Replaces `m` by the last candidate (the one that met the goal, or the one with the most
// nodes kept when it was never met).
AccuracyAwareResult accuracy_aware(ir::Model& m, const KeepingRewrite& rewrite, const AccuracyAwareConfig& cfg,
                                   const DataHooks& data, Progress* progress = nullptr);

}  // namespace slmops::passes
