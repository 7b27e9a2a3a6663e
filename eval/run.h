// An evaluation: runs a model (and a baseline) over data and reports accuracy, perplexity,
// fidelity, latency, size and memory, with goals. `slmops evaluate`, recipes' evaluate steps
// and the accuracy-aware quantizer all come here. Shards of one run merge into the figures of
// the whole run (eval/metrics.h keeps every sum exact).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/graph.h"
#include "passes/evaluate_step.h"
#include "passes/progress.h"

namespace slmops::eval {

struct EvalArgs {
  std::string model;  // the model's path (for models in memory: only its name in the report)
  // What the CLI and a recipe's evaluate step both set, from their one option table. Here
  // `options.baseline` is a model path or "" (none); the recipe runner resolves "input".
  passes::EvaluateStepOptions options;
  // Command line only.
  bool random = false;               // random inputs from the declared shapes
  std::vector<std::string> shapes;   // NAME=DIMS, for random inputs
  int64_t samples = 16;              // how many random samples
  int64_t warmup = 1;                // untimed runs before timing
  std::string shard;                 // I/N: the I-th of N slices (0-based)
  // Where it runs.
  int threads = 1;
  passes::Progress* progress = nullptr;  // nullptr: no progress
  uint64_t base_rss = 0;  // RSS before the model was loaded (set by evaluation_report; 0: not measured)
};

// Everything about the arguments that can be checked before a model is loaded; throws
// Error(BadInput) naming the flag.
void check_arguments(const EvalArgs& a);
// A file to be written (`flag` names it in the message): its folder must exist and be
// writable, checked before any work.
void check_writable_file(const std::string& flag, const std::string& path);

// Runs the evaluation and applies the goals ("goals": [{goal, met, detail}]); writes the
// Markdown report when asked. Unmet goals are in the report, not thrown.
nlohmann::json evaluation_report(const EvalArgs& a);
// The same on models already in memory (a.model / a.options.baseline only name them in the report).
nlohmann::json evaluation_report(const ir::Model& m, const ir::Model* baseline, const EvalArgs& a);
// Combines the --json reports of the shards of one run into the report of the whole run;
// applies a.options.goals and writes a.options.report as evaluation_report does.
nlohmann::json merge_reports(const std::vector<std::string>& files, const EvalArgs& a);
// Throws Error(GoalNotMet) listing the unmet goals, if any.
void enforce_goals(const nlohmann::json& report);

}  // namespace slmops::eval
