// Evaluation metrics as additive sums, so that shard reports merge into the exact figures of
// one run: every floating sum is kept in fixed point (an integer count of 2^-40), whose
// addition is associative, and shards are cut at batch boundaries.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/graph.h"
#include "ir/tensor.h"

namespace slmops::eval {

// A sum of doubles that does not depend on the order of the additions.
class ExactSum {
 public:
  void add(double x);
  void add(const ExactSum& o) { acc_ += o.acc_; }
  double value() const;
  nlohmann::json to_json() const;  // decimal string of the fixed-point integer
  static ExactSum from_json(const nlohmann::json& j);

 private:
  __int128 acc_ = 0;
};

struct MetricSums {
  int64_t samples = 0;
  // accuracy (2-D logits against class labels)
  int64_t labeled = 0, correct = 0, correct_top_k = 0;
  // language modelling (3-D logits against next tokens)
  ExactSum nll;
  int64_t tokens = 0;
  // fidelity of the primary output against the baseline (or the data's reference outputs)
  int64_t elements = 0, rows = 0, agree = 0;
  double max_abs_err = 0;
  ExactSum abs_err, signal_sq, noise_sq, dot, norm_model, norm_base, kl;
  // timing: one entry per batch (not additive, concatenated)
  std::vector<double> batch_ms;
  double run_seconds = 0;

  void add(const MetricSums& o);
  nlohmann::json to_json() const;
  static MetricSums from_json(const nlohmann::json& j);
};

// Accumulates one batch. `logits` is the model's primary output.
void add_accuracy(MetricSums& s, const ir::Tensor& logits, const ir::Tensor& labels, int top_k);
void add_lm(MetricSums& s, const ir::Tensor& logits, const ir::Tensor& targets);  // targets [B,T] (next tokens)
void add_fidelity(MetricSums& s, const ir::Tensor& model, const ir::Tensor& base);

// Final figures with stable keys (documented in the README).
nlohmann::json finish_metrics(const MetricSums& s, bool has_accuracy, bool has_lm, bool has_fidelity, int top_k);

// latency_ms {p50, p90, p99, mean, batches} (per batch) and throughput {samples_per_s,
// tokens_per_s}: the figures that differ between runs.
nlohmann::json timing_metrics(const MetricSums& s);

// size_bytes (the model's files on disk), parameters and parameter_bytes by dtype, as
// ir::model_statistics counts them (logical parameters: a MatMulNBits weight counts N x K,
// scales and zero points not at all).
nlohmann::json size_metrics(const ir::Model& m);

// Goals (Olive's goal types): METRIC:TYPE:VALUE.
struct Goal {
  std::string metric, type;
  double value = 0;
  std::string text;
};
// Parses and checks a goal's syntax, type and metric name (one of goal_metric_names() or
// top_K_accuracy); throws Error(BadInput) naming the goal, with the nearest metric name.
Goal parse_goal(const std::string& s);
// The metric names goals may use, and the --metrics family that measures each
// ("accuracy", "perplexity", "fidelity", "latency", "size", "memory").
const std::vector<std::string>& goal_metric_names();
std::string goal_metric_family(const std::string& metric);
// Everything about goals that can be checked before any work: syntax, metric names, a
// relative goal or fidelity metric without a baseline, a metric outside --metrics.
// `has_reference`: a baseline (or test data with outputs) is there. One message per problem.
std::vector<std::string> goal_problems(const std::vector<std::string>& goals, bool has_reference,
                                       const std::vector<std::string>& metrics);
// Checks goals against the final metrics (and the baseline's, for relative goals). Returns one
// message per unmet goal; throws Error(BadInput) for a goal whose metric is missing.
std::vector<std::string> check_goals(const std::vector<Goal>& goals, const nlohmann::json& metrics,
                                     const nlohmann::json* baseline);
// The value of a goal metric name ("accuracy", "latency_p50", "perplexity", ...) in a metrics
// object, if present.
bool metric_value(const nlohmann::json& metrics, const std::string& name, double& out);
bool higher_is_better(const std::string& metric);

}  // namespace slmops::eval
