#include "eval/metrics.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "ir/edit.h"
#include "ir/error.h"
#include "passes/options.h"
#include "runtime/ops/common.h"

namespace slmops::eval {

namespace {
constexpr double kScale = 1099511627776.0;  // 2^40

std::string int128_to_string(__int128 v) {
  if (v == 0) return "0";
  bool neg = v < 0;
  unsigned __int128 u = neg ? static_cast<unsigned __int128>(-(v + 1)) + 1 : static_cast<unsigned __int128>(v);
  std::string s;
  while (u) {
    s.push_back(static_cast<char>('0' + static_cast<int>(u % 10)));
    u /= 10;
  }
  if (neg) s.push_back('-');
  return {s.rbegin(), s.rend()};
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // nearest-rank on the sorted sample
  size_t k = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)];
}

std::vector<float> as_floats(const ir::Tensor& t) {
  ir::Tensor f = runtime::ops::to_float_tensor(t);
  return std::vector<float>(f.values<float>(), f.values<float>() + f.numel());
}

}  // namespace

void ExactSum::add(double x) {
  if (!std::isfinite(x)) x = x > 0 ? 1e15 : -1e15;  // keep the sum finite; such runs are broken anyway
  acc_ += static_cast<__int128>(std::llround(x * kScale));
}
double ExactSum::value() const { return static_cast<double>(acc_) / kScale; }
nlohmann::json ExactSum::to_json() const { return int128_to_string(acc_); }
ExactSum ExactSum::from_json(const nlohmann::json& j) {
  ExactSum s;
  std::string str = j.get<std::string>();
  bool neg = !str.empty() && str[0] == '-';
  for (size_t i = neg ? 1 : 0; i < str.size(); ++i) s.acc_ = s.acc_ * 10 + (str[i] - '0');
  if (neg) s.acc_ = -s.acc_;
  return s;
}

void MetricSums::add(const MetricSums& o) {
  samples += o.samples;
  labeled += o.labeled;
  correct += o.correct;
  correct_top_k += o.correct_top_k;
  nll.add(o.nll);
  tokens += o.tokens;
  elements += o.elements;
  rows += o.rows;
  agree += o.agree;
  max_abs_err = std::max(max_abs_err, o.max_abs_err);
  for (auto [a, b] : {std::pair{&abs_err, &o.abs_err}, {&signal_sq, &o.signal_sq}, {&noise_sq, &o.noise_sq},
                      {&dot, &o.dot}, {&norm_model, &o.norm_model}, {&norm_base, &o.norm_base}, {&kl, &o.kl}})
    a->add(*b);
  batch_ms.insert(batch_ms.end(), o.batch_ms.begin(), o.batch_ms.end());
  run_seconds += o.run_seconds;
}

nlohmann::json MetricSums::to_json() const {
  return {{"samples", samples},         {"labeled", labeled},
          {"correct", correct},         {"correct_top_k", correct_top_k},
          {"nll", nll.to_json()},       {"tokens", tokens},
          {"elements", elements},       {"rows", rows},
          {"agree", agree},             {"max_abs_err", max_abs_err},
          {"abs_err", abs_err.to_json()}, {"signal_sq", signal_sq.to_json()},
          {"noise_sq", noise_sq.to_json()}, {"dot", dot.to_json()},
          {"norm_model", norm_model.to_json()}, {"norm_base", norm_base.to_json()},
          {"kl", kl.to_json()},         {"batch_ms", batch_ms},
          {"run_seconds", run_seconds}};
}

MetricSums MetricSums::from_json(const nlohmann::json& j) {
  MetricSums s;
  s.samples = j.at("samples");
  s.labeled = j.at("labeled");
  s.correct = j.at("correct");
  s.correct_top_k = j.at("correct_top_k");
  s.nll = ExactSum::from_json(j.at("nll"));
  s.tokens = j.at("tokens");
  s.elements = j.at("elements");
  s.rows = j.at("rows");
  s.agree = j.at("agree");
  s.max_abs_err = j.at("max_abs_err");
  s.abs_err = ExactSum::from_json(j.at("abs_err"));
  s.signal_sq = ExactSum::from_json(j.at("signal_sq"));
  s.noise_sq = ExactSum::from_json(j.at("noise_sq"));
  s.dot = ExactSum::from_json(j.at("dot"));
  s.norm_model = ExactSum::from_json(j.at("norm_model"));
  s.norm_base = ExactSum::from_json(j.at("norm_base"));
  s.kl = ExactSum::from_json(j.at("kl"));
  s.batch_ms = j.at("batch_ms").get<std::vector<double>>();
  s.run_seconds = j.at("run_seconds");
  return s;
}

void add_accuracy(MetricSums& s, const ir::Tensor& logits, const ir::Tensor& labels, int top_k) {
  if (logits.dims.size() != 2)
    bad_input("accuracy needs 2-D logits [batch, classes]; the model's first output is {}", runtime::describe(logits));
  const int64_t b = logits.dims[0], c = logits.dims[1];
  if (static_cast<int64_t>(labels.numel()) != b)
    bad_input("accuracy: {} labels for a batch of {}", labels.numel(), b);
  auto v = as_floats(logits);
  const int64_t* lab = labels.values<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    const float* row = v.data() + r * c;
    const int64_t y = lab[r];
    if (y < 0 || y >= c) bad_input("accuracy: label {} is outside the {} classes", y, c);
    // rank of the true class: how many classes score strictly higher (ties favour the label
    // only when it comes first, as argmax does)
    int64_t higher = 0;
    for (int64_t k = 0; k < c; ++k)
      if (row[k] > row[y] || (row[k] == row[y] && k < y)) ++higher;
    s.correct += higher == 0;
    s.correct_top_k += higher < top_k;
    ++s.labeled;
  }
}

void add_lm(MetricSums& s, const ir::Tensor& logits, const ir::Tensor& targets) {
  if (logits.dims.size() != 3)
    bad_input("perplexity needs 3-D logits [batch, tokens, vocab]; the model's first output is {}",
              runtime::describe(logits));
  const int64_t b = logits.dims[0], t = logits.dims[1], vocab = logits.dims[2];
  if (targets.dims.size() != 2 || targets.dims[0] != b || targets.dims[1] != t)
    bad_input("perplexity: targets have shape {}, expected [{}, {}]", runtime::describe(targets), b, t);
  auto v = as_floats(logits);
  const int64_t* tg = targets.values<int64_t>();
  for (int64_t r = 0; r < b * t; ++r) {
    const int64_t y = tg[r];
    if (y < 0) continue;  // -1: no target (the last position)
    if (y >= vocab) bad_input("perplexity: token id {} is outside the vocabulary of {}", y, vocab);
    const float* row = v.data() + r * vocab;
    // NLL = logsumexp(row) - row[y], computed with the max subtracted
    float m = *std::max_element(row, row + vocab);
    double se = 0;
    for (int64_t k = 0; k < vocab; ++k) se += std::exp(static_cast<double>(row[k]) - m);
    s.nll.add(std::log(se) + m - row[y]);
    ++s.tokens;
  }
}

void add_fidelity(MetricSums& s, const ir::Tensor& model, const ir::Tensor& base) {
  if (model.dims != base.dims)
    bad_input("fidelity: the model's first output is {} but the baseline's is {}", runtime::describe(model),
              runtime::describe(base));
  auto a = as_floats(model), b = as_floats(base);
  const int64_t n = static_cast<int64_t>(a.size());
  for (int64_t i = 0; i < n; ++i) {
    double x = a[i], y = b[i], e = std::fabs(x - y);
    s.max_abs_err = std::max(s.max_abs_err, e);
    s.abs_err.add(e);
    s.signal_sq.add(y * y);
    s.noise_sq.add((x - y) * (x - y));
    s.dot.add(x * y);
    s.norm_model.add(x * x);
    s.norm_base.add(y * y);
  }
  s.elements += n;
  // Rows along the last axis: softmax KL(base || model) and top-1 agreement.
  const int64_t c = model.dims.empty() ? 1 : model.dims.back();
  if (c < 2) return;
  for (int64_t r = 0; r < n / c; ++r) {
    const float* x = a.data() + r * c;
    const float* y = b.data() + r * c;
    float mx = *std::max_element(x, x + c), my = *std::max_element(y, y + c);
    double zx = 0, zy = 0;
    for (int64_t k = 0; k < c; ++k) {
      zx += std::exp(static_cast<double>(x[k]) - mx);
      zy += std::exp(static_cast<double>(y[k]) - my);
    }
    double kl = 0;
    for (int64_t k = 0; k < c; ++k) {
      double log_py = y[k] - my - std::log(zy), log_px = x[k] - mx - std::log(zx);
      kl += std::exp(log_py) * (log_py - log_px);
    }
    s.kl.add(std::max(0.0, kl));
    s.agree += (std::max_element(x, x + c) - x) == (std::max_element(y, y + c) - y);
    ++s.rows;
  }
}

nlohmann::json finish_metrics(const MetricSums& s, bool has_accuracy, bool has_lm, bool has_fidelity, int top_k) {
  nlohmann::json m;
  m["samples"] = s.samples;
  if (has_accuracy && s.labeled > 0) {
    m["accuracy"] = static_cast<double>(s.correct) / s.labeled;
    m["correct"] = s.correct;
    if (top_k > 1) m[fmt::format("top_{}_accuracy", top_k)] = static_cast<double>(s.correct_top_k) / s.labeled;
  }
  if (has_lm && s.tokens > 0) {
    double mean = s.nll.value() / s.tokens;
    m["nll"] = mean;
    m["perplexity"] = std::exp(mean);
    m["tokens"] = s.tokens;
  }
  if (has_fidelity && s.elements > 0) {
    double noise = s.noise_sq.value(), signal = s.signal_sq.value();
    double denom = std::sqrt(s.norm_model.value() * s.norm_base.value());
    nlohmann::json f = {{"max_abs_err", s.max_abs_err},
                        {"mean_abs_err", s.abs_err.value() / s.elements},
                        {"cosine", denom > 0 ? s.dot.value() / denom : 1.0}};
    // SNR = 10 log10(sum base^2 / sum (model - base)^2); identical outputs: +inf ("inf" in JSON)
    if (noise == 0) f["snr_db"] = "inf";
    else f["snr_db"] = 10 * std::log10(signal / noise);
    if (s.rows > 0) {
      f["kl"] = s.kl.value() / s.rows;
      f["top1_agreement"] = static_cast<double>(s.agree) / s.rows;
    }
    m["fidelity"] = f;
  }
  return m;
}

nlohmann::json timing_metrics(const MetricSums& s) {
  nlohmann::json m;
  if (s.batch_ms.empty()) return m;
  double sum = 0;
  for (double x : s.batch_ms) sum += x;
  m["latency_ms"] = {{"p50", percentile(s.batch_ms, 50)},
                     {"p90", percentile(s.batch_ms, 90)},
                     {"p99", percentile(s.batch_ms, 99)},
                     {"mean", sum / static_cast<double>(s.batch_ms.size())},
                     {"batches", s.batch_ms.size()}};
  if (s.run_seconds > 0) {
    m["throughput"] = {{"samples_per_s", static_cast<double>(s.samples) / s.run_seconds}};
    if (s.tokens > 0) m["throughput"]["tokens_per_s"] = static_cast<double>(s.tokens) / s.run_seconds;
  }
  return m;
}

Goal parse_goal(const std::string& text) {
  Goal g;
  g.text = text;
  auto a = text.find(':'), b = text.rfind(':');
  if (a == std::string::npos || a == b) bad_input("--goal '{}': expected METRIC:TYPE:VALUE (e.g. accuracy:max-degradation:0.01)", text);
  g.metric = text.substr(0, a);
  g.type = text.substr(a + 1, b - a - 1);
  static const std::vector<std::string> types = {"threshold", "max-degradation", "min-improvement",
                                                 "percent-max-degradation", "percent-min-improvement"};
  if (std::find(types.begin(), types.end(), g.type) == types.end())
  {
    auto near = passes::nearest_name(g.type, types);
    bad_input("--goal '{}': unknown goal type '{}'{} (threshold, max-degradation, min-improvement, "
              "percent-max-degradation, percent-min-improvement)",
              text, g.type, near.empty() ? "" : fmt::format("; did you mean '{}'?", near));
  }
  if (goal_metric_family(g.metric).empty()) {
    std::vector<std::string> names = goal_metric_names();
    auto near = passes::nearest_name(g.metric, names);
    bad_input("--goal '{}': no metric '{}'{} (metrics: {}, top_K_accuracy)", text, g.metric,
              near.empty() ? "" : fmt::format("; did you mean '{}'?", near), fmt::join(names, ", "));
  }
  try {
    size_t used = 0;
    g.value = std::stod(text.substr(b + 1), &used);
    if (used != text.size() - b - 1) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    bad_input("--goal '{}': '{}' is not a number", text, text.substr(b + 1));
  }
  return g;
}

const std::vector<std::string>& goal_metric_names() {
  static const std::vector<std::string> names = {
      "accuracy", "perplexity",  "nll",         "max_abs_err", "mean_abs_err", "snr_db",       "cosine", "kl",
      "top1_agreement", "latency_p50", "latency_p90", "latency_p99", "throughput", "tokens_per_s", "size", "memory"};
  return names;
}

std::string goal_metric_family(const std::string& m) {
  if (m == "accuracy") return "accuracy";
  if (m.size() > 13 && m.rfind("top_", 0) == 0 && m.substr(m.size() - 9) == "_accuracy") {
    std::string k = m.substr(4, m.size() - 13);
    if (!k.empty() && k.find_first_not_of("0123456789") == std::string::npos) return "accuracy";
    return "";
  }
  if (m == "perplexity" || m == "nll") return "perplexity";
  if (m == "max_abs_err" || m == "mean_abs_err" || m == "snr_db" || m == "cosine" || m == "kl" || m == "top1_agreement")
    return "fidelity";
  if (m == "latency_p50" || m == "latency_p90" || m == "latency_p99" || m == "throughput") return "latency";
  if (m == "tokens_per_s") return "latency";
  if (m == "size") return "size";
  if (m == "memory") return "memory";
  return "";
}

std::vector<std::string> goal_problems(const std::vector<std::string>& goals, bool has_reference,
                                       const std::vector<std::string>& metrics) {
  std::vector<std::string> out;
  for (auto& text : goals) {
    try {
      Goal g = parse_goal(text);
      std::string family = goal_metric_family(g.metric);
      if (g.type != "threshold" && !has_reference)
        out.push_back(fmt::format("--goal '{}': a relative goal ({}) needs a baseline to compare with", text, g.type));
      else if (family == "fidelity" && !has_reference)
        out.push_back(fmt::format("--goal '{}': {} is a fidelity metric and needs a baseline", text, g.metric));
      else if (!metrics.empty() && std::find(metrics.begin(), metrics.end(), family) == metrics.end())
        out.push_back(fmt::format("--goal '{}': {} is not measured (metrics {}; add {})", text, g.metric,
                                  fmt::join(metrics, ","), family));
    } catch (const Error& e) {
      out.push_back(e.what());
    }
  }
  return out;
}

bool higher_is_better(const std::string& m) {
  return m == "accuracy" || m.rfind("top_", 0) == 0 || m == "snr_db" || m == "cosine" || m == "top1_agreement" ||
         m == "throughput" || m == "tokens_per_s";
}

bool metric_value(const nlohmann::json& metrics, const std::string& name, double& out) {
  auto num = [&](const nlohmann::json& j) {
    if (j.is_number()) {
      out = j.get<double>();
      return true;
    }
    if (j.is_string() && j.get<std::string>() == "inf") {
      out = std::numeric_limits<double>::infinity();
      return true;
    }
    return false;
  };
  if (metrics.contains(name)) return num(metrics[name]);
  if (metrics.contains("fidelity") && metrics["fidelity"].contains(name)) return num(metrics["fidelity"][name]);
  if (name.rfind("latency_", 0) == 0 && metrics.contains("latency_ms")) {
    std::string k = name.substr(8);
    if (metrics["latency_ms"].contains(k)) return num(metrics["latency_ms"][k]);
  }
  if (name == "throughput" && metrics.contains("throughput")) return num(metrics["throughput"]["samples_per_s"]);
  if (name == "tokens_per_s" && metrics.contains("throughput") && metrics["throughput"].contains("tokens_per_s"))
    return num(metrics["throughput"]["tokens_per_s"]);
  if (name == "size" && metrics.contains("size_bytes")) return num(metrics["size_bytes"]);
  if (name == "memory" && metrics.contains("peak_rss_bytes")) return num(metrics["peak_rss_bytes"]);
  return false;
}

std::vector<std::string> check_goals(const std::vector<Goal>& goals, const nlohmann::json& metrics,
                                     const nlohmann::json* baseline) {
  std::vector<std::string> unmet;
  for (auto& g : goals) {
    double v;
    if (!metric_value(metrics, g.metric, v))
      bad_input("--goal '{}': the report has no metric '{}'", g.text, g.metric);
    const bool up = higher_is_better(g.metric);
    bool ok;
    std::string detail;
    if (g.type == "threshold") {
      ok = up ? v >= g.value : v <= g.value;
      detail = fmt::format("{} is {:.6g}, must be {} {:.6g}", g.metric, v, up ? ">=" : "<=", g.value);
    } else {
      double b;
      if (!baseline || !metric_value(*baseline, g.metric, b))
        bad_input("--goal '{}': a relative goal needs --baseline with metric '{}'", g.text, g.metric);
      // improvement > 0 means better than the baseline, in the metric's own direction
      double improvement = up ? v - b : b - v;
      bool percent = g.type.rfind("percent", 0) == 0;
      double change = percent ? (b != 0 ? 100.0 * improvement / std::fabs(b) : 0.0) : improvement;
      if (g.type.find("max-degradation") != std::string::npos) ok = -change <= g.value;
      else ok = change >= g.value;
      detail = fmt::format("{} is {:.6g} against the baseline's {:.6g}: {} {:.6g}{}", g.metric, v, b,
                           change >= 0 ? "improvement" : "degradation", std::fabs(change), percent ? "%" : "");
    }
    if (!ok) unmet.push_back(fmt::format("goal {} not met: {}", g.text, detail));
  }
  return unmet;
}

nlohmann::json size_metrics(const ir::Model& m) {
  uint64_t size = 0;
  for (auto& f : m.source_files) {
    std::error_code ec;
    size += std::filesystem::file_size(f, ec);
  }
  ir::ModelStats st = ir::model_statistics(m);
  return {{"size_bytes", size}, {"parameters", st.parameters}, {"parameter_bytes", st.bytes_by_dtype}};
}

}  // namespace slmops::eval
