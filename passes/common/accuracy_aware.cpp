#include "passes/common/accuracy_aware.h"

#include <cstdio>
#include <stdexcept>

#include <fmt/format.h>

#include "ir/error.h"
#include "passes/common/activations.h"
#include "passes/progress.h"

namespace slmops::passes {

std::string degradation_goal(const std::string& spec, Naming naming) {
  const std::string flag = option_label("max-degradation", naming);
  auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= spec.size())
    bad_input("{} '{}': expected METRIC:VALUE, e.g. accuracy:0.005 or perplexity:1%", flag, spec);
  std::string metric = spec.substr(0, colon), value = spec.substr(colon + 1);
  bool percent = value.back() == '%';
  if (percent) value.pop_back();
  try {
    size_t used = 0;
    double v = std::stod(value, &used);
    if (used != value.size() || v < 0) throw std::invalid_argument("x");
  } catch (const std::exception&) {
    bad_input("{} '{}': '{}' is not a non-negative number", flag, spec, value);
  }
  return fmt::format("{}:{}:{}", metric, percent ? "percent-max-degradation" : "max-degradation", value);
}

AccuracyAwareConfig accuracy_aware_config(const std::string& max_degradation, const std::string& eval_data,
                                          const TextData& text, const FeedSource* sensitivity, int64_t limit,
                                          int threads, int verbosity) {
  AccuracyAwareConfig cfg;
  cfg.goal = degradation_goal(max_degradation);
  cfg.eval_data = eval_data;
  cfg.text = text;
  cfg.sensitivity_data = sensitivity;
  cfg.sensitivity_limit = limit;
  cfg.threads = threads;
  cfg.verbosity = verbosity;
  return cfg;
}

void degradation_problems(const std::string& max_degradation, const std::string& eval_data, Naming naming,
                          std::vector<std::string>& problems) {
  if (max_degradation.empty()) return;
  if (eval_data.empty())
    problems.push_back(fmt::format("{} needs {} (the data the goal is measured on)",
                                   option_label("max-degradation", naming), option_label("eval-data", naming)));
  try {
    degradation_goal(max_degradation, naming);
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
}

AccuracyAwareResult accuracy_aware(ir::Model& m, const KeepingRewrite& rewrite, const AccuracyAwareConfig& cfg,
                                   const DataHooks& data, Progress* progress) {
  AccuracyAwareResult res;
  const ir::Model original = m.clone();
  std::vector<std::pair<std::string, double>> ranking;
  size_t next = 0;
  int walks = 0;
  ProgressStage stage(progress, cfg.stage, cfg.max_steps, "rounds");
  while (true) {
    stage.update(static_cast<int64_t>(res.steps.size()), fmt::format("{} node(s) {}", res.kept.size(), cfg.kept_as));
    ir::Model cand = original.clone();
    std::vector<std::string> changed = rewrite(cand, res.kept);
    nlohmann::json r = data.measure(cand, original, cfg.eval_data, cfg.goal, cfg.text);
    res.met = r.value("met", false);
    res.steps.push_back(
        {{cfg.kept_key, res.kept}, {"value", r["value"]}, {"baseline", r["baseline"]}, {"met", res.met}});
    if (cfg.verbosity >= 1)
      fmt::print(stderr, "slmops: accuracy-aware step {}: {} node(s) {}, {} = {} (float {}): {}\n", res.steps.size(),
                 res.kept.size(), cfg.kept_as, cfg.goal.substr(0, cfg.goal.find(':')), json_text(r["value"]),
                 json_text(r["baseline"]), res.met ? "goal met" : "goal missed");
    const bool last =
        res.met || (cfg.max_steps > 0 && static_cast<int64_t>(res.kept.size()) >= cfg.max_steps);
    if (!last && ranking.empty() && cfg.sensitivity_data) {
      ranking = node_sensitivity(original, cand, changed, *cfg.sensitivity_data, cfg.sensitivity_limit, cfg.threads);
      for (auto& [name, e] : ranking) res.sensitivity.push_back({{"node", name}, {"added_nmse", e}});
    }
    if (!last && next >= ranking.size() && !ranking.empty() && ++walks < cfg.levels) next = 0;
    if (last || next >= ranking.size()) {
      m = std::move(cand);
      return res;
    }
    res.kept.push_back(ranking[next++].first);
  }
}

}  // namespace slmops::passes
