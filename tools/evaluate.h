// slmops evaluate, also reached from recipes ({"pass": "evaluate", ...} steps).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/graph.h"
#include "tools/check_data.h"

namespace slmops::cli {

struct EvalArgs {
  std::string model, data, baseline, report, shard, metrics;
  std::vector<std::string> goals, merge, shapes;
  bool check = false, json = false, random = false, progress = false, no_progress = false;
  int64_t batch_size = 0, warmup = 1, samples = 16;
  int top_k = 1;
  std::string labels;
  Tolerance tol;
  uint64_t base_rss = 0;  // RSS before the model was loaded (set by evaluate; 0: not measured)
};

// Runs the evaluation and applies the goals ("goals": [{goal, met, detail}]); writes the
// Markdown report when asked. Unmet goals are in the report, not thrown.
nlohmann::json evaluation_report(const EvalArgs& a);
// The same on models already in memory (a.model / a.baseline only name them in the report).
nlohmann::json evaluation_report(const ir::Model& m, const ir::Model* baseline, const EvalArgs& a);
// Prints the report as a table on stdout.
void print_evaluation(const nlohmann::json& report);
// Throws Error(GoalNotMet) listing the unmet goals, if any.
void enforce_goals(const nlohmann::json& report);

}  // namespace slmops::cli
