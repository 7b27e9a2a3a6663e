// The `evaluate` step: not a graph rewrite but a measurement of a model. One table declares
// the options that `slmops evaluate` and a recipe's {"pass": "evaluate", ...} step share: it
// drives the CLI flags (tools/cmd_evaluate.cpp), recipe validation and `slmops passes`; the
// evaluator (eval/run.h) takes the struct as it is. In a recipe the step measures the saved
// output model, against the recipe's input by default; the recipe runner carries it out.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "passes/options.h"

namespace slmops::passes {

struct EvaluateStepOptions {
  std::string data;
  std::string baseline = "input";  // "input": the recipe's input model; "": none; else a path
  std::vector<std::string> metrics;  // empty: all that the data and the model allow
  std::string labels;
  int64_t batch_size = 1;
  int64_t top_k = 1;
  std::vector<std::string> goals;  // METRIC:TYPE:VALUE (--goal, once per goal, on the command line)
  std::string report;
  // Run the standard graph optimizations (passes/optimize, target onnx) on a copy of the model
  // before the session is planned, and let the executor run QDQ groups as integer kernels;
  // false: the graph exactly as written, QDQ pairs in float (--no-optimize).
  bool optimize = true;
  std::string tokenizer;       // tokenizer.json (or its folder) for JSONL text rows
  int64_t context_length = 0;  // text rows cut into windows of this many tokens (0: whole rows)
  int64_t stride = 0;          // windows start every this many tokens (0: the context length)
  static const OptionTable<EvaluateStepOptions>& table();
};

// Paths (data, baseline, report) are relative to the recipe's folder in a recipe; the report is
// written, so it need not exist.
inline const OptionTable<EvaluateStepOptions>& EvaluateStepOptions::table() {
  using E = EvaluateStepOptions;
  static const OptionTable<E> t({
      {"data", &E::data, ".npz, .jsonl, or a test_data_set folder (or a folder of them)", {}, true},
      {"baseline",
       &E::baseline,
       "reference model: fidelity and side-by-side metrics; in a recipe \"input\" (the recipe's input model) or "
       "\"\" for none",
       {},
       true},
      {"metrics",
       &E::metrics,
       "what to measure (default: all that the data and model allow)",
       {"accuracy", "perplexity", "fidelity", "latency", "size", "memory"}},
      {"labels", &E::labels, "the .npz array holding labels (default: label or labels)", {}},
      {"batch-size", &E::batch_size, "samples per run", {}, false, {1, 65536}},
      {"top-k", &E::top_k, "also report top-k accuracy", {}, false, {1, 1000}},
      {"goals",
       &E::goals,
       "METRIC:TYPE:VALUE, TYPE one of threshold, max-degradation, min-improvement, percent-max-degradation, "
       "percent-min-improvement; exit 3 when one is unmet",
       {}},
      {"report", &E::report, "also write a Markdown report", {}, true},
      {"optimize",
       &E::optimize,
       "optimize a copy of the model (the optimize pass, standard ONNX ops) and run QDQ groups as integer kernels "
       "before evaluating; false: run the graph as written (--no-optimize)",
       {}},
      {"tokenizer",
       &E::tokenizer,
       "tokenizer.json, or a folder holding one, for JSONL rows {\"text\": ...} and {\"messages\": [...]} (chat "
       "rows, rendered with the folder's chat template) (default: the model folder's)",
       {},
       true},
      {"context-length",
       &E::context_length,
       "cut each text row's tokens into windows of this many (0: one sample per row)",
       {},
       false,
       {0, 1 << 24}},
      {"stride",
       &E::stride,
       "with context-length: a window starts every this many tokens and scores only the tokens the one before did "
       "not (Hugging Face's sliding-window perplexity); 0: the context length (windows do not overlap)",
       {},
       false,
       {0, 1 << 24}},
  });
  return t;
}

}  // namespace slmops::passes
