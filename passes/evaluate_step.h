// The `evaluate` recipe step: not a graph rewrite but a measurement of the recipe's output
// model (after it is saved), against the recipe's input as baseline by default. Declared
// here so that recipe validation and `slmops passes` see its options like any pass; the
// recipe runner (tools/) carries it out.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "passes/options.h"

namespace slmops::passes {

struct EvaluateStepOptions {
  std::string data;
  std::string baseline = "input";  // "input": the recipe's input model; "": none; else a path
  std::vector<std::string> metrics;
  std::string labels;
  int64_t batch_size = 1;
  int64_t top_k = 1;
  std::vector<std::string> goals;
  std::string report;
  static const OptionTable<EvaluateStepOptions>& table();
};

}  // namespace slmops::passes
