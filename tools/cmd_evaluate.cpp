// slmops evaluate: one report with accuracy, perplexity, fidelity against a baseline, latency,
// size and memory, with goals that gate CI (exit 3), shards and merging. `--check` runs ONNX
// test data and compares with the reference outputs (the conformance runner).
#include <cstring>
#include <optional>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "runtime/executor.h"
#include "tools/check_data.h"
#include "tools/cli.h"
#include "tools/eval_data.h"
#include "tools/eval_metrics.h"
#include "tools/evaluate.h"
#include "passes/progress.h"
#include "passes/registry.h"

namespace slmops::cli {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;



// Peak RSS since the last reset (VmHWM); writing 5 to clear_refs resets it (Linux >= 4.0).
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}
uint64_t status_bytes(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(std::strlen(key))) * 1024;
  return 0;
}
uint64_t peak_rss_bytes() { return status_bytes("VmHWM:"); }
uint64_t current_rss_bytes() { return status_bytes("VmRSS:"); }

struct Selected {
  bool accuracy = false, lm = false, fidelity = false, latency = true, size = true, memory = true;
};

Selected select_metrics(const std::string& list, bool has_labels, bool looks_lm, bool has_reference) {
  Selected s;
  if (list.empty()) {
    s.accuracy = has_labels && !looks_lm;
    s.lm = looks_lm;
    s.fidelity = has_reference;
    return s;
  }
  s.latency = s.size = s.memory = false;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string m = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (m == "accuracy") s.accuracy = true;
    else if (m == "perplexity") s.lm = true;
    else if (m == "fidelity") s.fidelity = true;
    else if (m == "latency") s.latency = true;
    else if (m == "size") s.size = true;
    else if (m == "memory") s.memory = true;
    else bad_input("--metrics: unknown metric '{}' (accuracy, perplexity, fidelity, latency, size, memory)", m);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (s.accuracy && !has_labels) bad_input("--metrics accuracy needs labels in the data (--labels NAME)");
  if (s.fidelity && !has_reference) bad_input("--metrics fidelity needs --baseline MODEL (or test data with outputs)");
  return s;
}

// The targets of a causal LM for one batch: explicit labels, else input_ids shifted by one
// (position t predicts token t+1; the last position has none: -1).
ir::Tensor lm_targets(const Batch& b, int input_ids_index) {
  if (b.labels && b.labels->dims.size() == 2) return *b.labels;
  const ir::Tensor& ids = b.feeds[input_ids_index].tensor;
  const int64_t rows = ids.dims[0], t = ids.dims[1];
  std::vector<int64_t> tg(rows * t, -1);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k + 1 < t; ++k) {
      tg[r * t + k] = ids.dtype == ir::DType::Int64 ? ids.values<int64_t>()[r * t + k + 1]
                                                    : ids.values<int32_t>()[r * t + k + 1];
    }
  return ir::Tensor::from_values("", ir::DType::Int64, {rows, t}, tg);
}

struct RunResult {
  MetricSums sums;
  uint64_t peak_rss = 0;
  uint64_t peak_activations = 0;  // the session's largest live set of tensors
  std::vector<ir::Tensor> primary;  // kept only when another run compares against them
};

// Runs `session` over the batches. `reference`: the baseline's primary outputs per batch
// (fidelity), or empty.
RunResult run_model(const ir::Model& m, const runtime::Session& session, const std::vector<Batch>& batches,
                    const Selected& sel, int lm_ids, int top_k, int64_t warmup,
                    const std::vector<ir::Tensor>* reference, bool keep_primary, passes::Progress* progress,
                    const std::string& label) {
  RunResult r;
  reset_peak_rss();
  if (!batches.empty())
    for (int64_t w = 0; w < warmup; ++w) session.run(batches[0].feeds);
  passes::ProgressStage bar(
      progress, label, batches.empty() ? 0 : batches.back().first + batches.back().count - batches.front().first,
      "samples");
  int64_t done = 0;
  auto t_all = clock_type::now();
  for (size_t k = 0; k < batches.size(); ++k) {
    const Batch& b = batches[k];
    auto t0 = clock_type::now();
    auto outs = session.run(b.feeds);
    r.sums.batch_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    if (outs.empty() || !outs[0].is_tensor()) bad_input("{}: the first output is not a tensor", m.path);
    const ir::Tensor& y = outs[0].tensor;
    r.sums.samples += b.count;
    if (sel.accuracy && b.labels) add_accuracy(r.sums, y, *b.labels, top_k);
    if (sel.lm) add_lm(r.sums, y, lm_targets(b, lm_ids));
    if (sel.fidelity) {
      if (reference) add_fidelity(r.sums, y, (*reference)[k]);
      else if (!b.reference.empty()) add_fidelity(r.sums, y, b.reference[0]);
    }
    if (keep_primary) r.primary.push_back(y);
    done += b.count;
    bar.update(done);
  }
  r.sums.run_seconds = std::chrono::duration<double>(clock_type::now() - t_all).count();
  r.peak_rss = peak_rss_bytes();
  r.peak_activations = session.peak_activation_bytes();
  return r;
}

// Inputs of quantized ops that hold scales and zero points: storage of the quantization, not
// parameters of the network.
const std::map<std::string, std::vector<size_t>>& quantization_inputs() {
  static const std::map<std::string, std::vector<size_t>> m = {
      {"MatMulNBits", {2, 3, 4}},          {"DequantizeLinear", {1, 2}},     {"QuantizeLinear", {1, 2}},
      {"DynamicQuantizeMatMul", {2, 3}},   {"MatMulInteger", {2, 3}},        {"ConvInteger", {2, 3}},
      {"MatMulIntegerToFloat", {2, 3, 4, 5}}, {"QLinearMatMul", {1, 2, 4, 5, 6, 7}},
      {"QLinearConv", {1, 2, 4, 5, 6, 7}},
  };
  return m;
}

// Size on disk, parameters and bytes by dtype. Parameters are logical values: a MatMulNBits
// weight counts N x K (not its packed bytes), and scales and zero points are not counted.
nlohmann::json static_metrics(const ir::Model& m) {
  uint64_t size = 0;
  for (auto& f : m.source_files) {
    std::error_code ec;
    size += fs::file_size(f, ec);
  }
  std::map<std::string, uint64_t> by_dtype;
  uint64_t params = 0;
  std::function<void(const ir::Graph&)> visit = [&](const ir::Graph& g) {
    std::map<const ir::Value*, uint64_t> logical;  // initializer -> its logical count (0: not a parameter)
    for (auto& n : g.nodes()) {
      auto it = quantization_inputs().find(n->op_type);
      if (it == quantization_inputs().end()) continue;
      for (size_t k : it->second)
        if (k < n->inputs.size() && n->inputs[k] && n->inputs[k]->initializer) logical[n->inputs[k]] = 0;
      if (n->op_type == "MatMulNBits" && n->inputs.size() > 1 && n->inputs[1] && n->inputs[1]->initializer)
        logical[n->inputs[1]] = static_cast<uint64_t>(n->attr_int("N", 0) * n->attr_int("K", 0));
    }
    for (const ir::Value* v : g.initializers) {
      by_dtype[std::string(ir::dtype_name(v->initializer->dtype))] += v->initializer->nbytes();
      auto it = logical.find(v);
      params += it != logical.end() ? it->second : v->initializer->numel();
    }
    for (auto& n : g.nodes())
      for (auto& a : n->attributes) {
        if (a.g) visit(*a.g);
        for (auto& sg : a.graphs) visit(*sg);
      }
  };
  visit(*m.graph);
  return {{"size_bytes", size}, {"parameters", params}, {"parameter_bytes", by_dtype}};
}

uint64_t weight_bytes(const ir::Model& m) {
  uint64_t total = 0;
  std::function<void(const ir::Graph&)> visit = [&](const ir::Graph& g) {
    for (const ir::Value* v : g.initializers) total += v->initializer->nbytes();
    for (auto& n : g.nodes())
      for (auto& a : n->attributes) {
        if (a.g) visit(*a.g);
        for (auto& sg : a.graphs) visit(*sg);
      }
  };
  visit(*m.graph);
  return total;
}

nlohmann::json assemble(const MetricSums& s, const Selected& sel, int top_k, const nlohmann::json& statics,
                        uint64_t rss) {
  nlohmann::json m = finish_metrics(s, sel.accuracy, sel.lm, sel.fidelity, top_k);
  if (sel.latency) m.update(timing_metrics(s));
  if (sel.size) m.update(statics);
  if (sel.memory && rss) m["peak_rss_bytes"] = rss;
  return m;
}

// What a run's peak RSS is made of. The bound the executor keeps:
// peak RSS - RSS before the model was loaded <= 1.5 x (weights + largest live activations).
nlohmann::json assemble(const MetricSums& s, const Selected& sel, int top_k, const nlohmann::json& statics,
                        const RunResult& r, const ir::Model& model, uint64_t base_rss) {
  nlohmann::json m = assemble(s, sel, top_k, statics, r.peak_rss);
  if (!sel.memory || !r.peak_rss) return m;
  const uint64_t w = weight_bytes(model), act = r.peak_activations;
  nlohmann::json mem = {{"weight_bytes", w}, {"peak_activation_bytes", act}};
  if (base_rss) {
    mem["base_rss_bytes"] = base_rss;
    const double added = r.peak_rss > base_rss ? double(r.peak_rss - base_rss) : 0.0;
    mem["rss_over_weights_and_activations"] = w + act ? added / double(w + act) : 0.0;
  }
  m["memory"] = mem;
  return m;
}

std::string fmt_value(const nlohmann::json& v) {
  if (v.is_number_float()) return fmt::format("{:.6g}", v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// Flattens {"fidelity": {"kl": 1}} to rows ("fidelity.kl", 1) for tables.
void flatten(const nlohmann::json& j, const std::string& prefix, std::vector<std::pair<std::string, nlohmann::json>>& out) {
  for (auto& [k, v] : j.items()) {
    std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object()) flatten(v, key, out);
    else out.emplace_back(key, v);
  }
}

void print_table_impl(const nlohmann::json& report) {
  std::vector<std::pair<std::string, nlohmann::json>> rows, base;
  flatten(report["metrics"], "", rows);
  bool has_base = report.contains("baseline");
  if (has_base) flatten(report["baseline"]["metrics"], "", base);
  fmt::print("model    {}\ndata     {} ({} samples{})\n", report["model"].get<std::string>(),
             report["data"].get<std::string>(), report["samples"].get<int64_t>(),
             report.contains("shard") ? ", shard " + report["shard"].get<std::string>() : "");
  if (has_base) fmt::print("baseline {}\n", report["baseline"]["model"].get<std::string>());
  fmt::print("\n{:<32} {:>16}{}\n", "metric", "model", has_base ? fmt::format(" {:>16}", "baseline") : "");
  for (auto& [k, v] : rows) {
    std::string b;
    if (has_base)
      for (auto& [bk, bv] : base)
        if (bk == k) b = fmt_value(bv);
    fmt::print("{:<32} {:>16}{}\n", k, fmt_value(v), has_base ? fmt::format(" {:>16}", b) : "");
  }
  if (report.contains("goals")) {
    fmt::print("\n");
    for (auto& g : report["goals"])
      fmt::print("goal {:<40} {}\n", g["goal"].get<std::string>(), g["met"].get<bool>() ? "met" : "NOT MET");
  }
}

void write_markdown(const nlohmann::json& report, const std::string& path) {
  std::vector<std::pair<std::string, nlohmann::json>> rows, base;
  flatten(report["metrics"], "", rows);
  bool has_base = report.contains("baseline");
  if (has_base) flatten(report["baseline"]["metrics"], "", base);
  std::string md = fmt::format("# Evaluation of `{}`\n\nData: `{}`, {} samples.", report["model"].get<std::string>(),
                               report["data"].get<std::string>(), report["samples"].get<int64_t>());
  if (has_base) md += fmt::format(" Baseline: `{}`.", report["baseline"]["model"].get<std::string>());
  md += "\n\n| metric | model |";
  md += has_base ? " baseline | change |\n|---|---:|---:|---:|\n" : "\n|---|---:|\n";
  for (auto& [k, v] : rows) {
    md += fmt::format("| {} | {} |", k, fmt_value(v));
    if (has_base) {
      std::string b = "", change = "";
      for (auto& [bk, bv] : base)
        if (bk == k) {
          b = fmt_value(bv);
          if (v.is_number() && bv.is_number() && bv.get<double>() != 0)
            change = fmt::format("{:+.2f}%", 100.0 * (v.get<double>() - bv.get<double>()) / std::fabs(bv.get<double>()));
        }
      md += fmt::format(" {} | {} |", b, change);
    }
    md += "\n";
  }
  if (report.contains("goals")) {
    md += "\n## Goals\n\n| goal | met |\n|---|---|\n";
    for (auto& g : report["goals"]) md += fmt::format("| `{}` | {} |\n", g["goal"].get<std::string>(), g["met"].get<bool>() ? "yes" : "**no**");
  }
  formats::AtomicFile f(path);
  f.write(md);
  f.commit();
}

// Applies goals to a finished report; exit 3 through Error when any is unmet.
void apply_goals(nlohmann::json& report, const std::vector<std::string>& goal_texts) {
  if (goal_texts.empty()) return;
  std::vector<Goal> goals;
  for (auto& g : goal_texts) goals.push_back(parse_goal(g));
  const nlohmann::json* base = report.contains("baseline") ? &report["baseline"]["metrics"] : nullptr;
  report["goals"] = nlohmann::json::array();
  for (auto& g : goals) {
    auto unmet = check_goals({g}, report["metrics"], base);
    report["goals"].push_back({{"goal", g.text}, {"met", unmet.empty()}, {"detail", unmet.empty() ? "" : unmet[0]}});
  }
}

nlohmann::json finish(nlohmann::json report, const EvalArgs& a) {
  apply_goals(report, a.goals);
  if (!a.report.empty()) write_markdown(report, a.report);
  return report;
}

nlohmann::json merge_reports(const EvalArgs& a) {
  if (a.merge.empty()) bad_input("--merge needs report files");
  nlohmann::json first;
  MetricSums sums, base_sums;
  std::vector<std::pair<int64_t, int64_t>> shards;
  uint64_t rss = 0, base_rss = 0;
  for (auto& path : a.merge) {
    nlohmann::json j = nlohmann::json::parse(formats::read_text_file(path), nullptr, false);
    if (j.is_discarded() || !j.contains("sums") || !j.contains("selection"))
      bad_input("{}: not an slmops evaluate --json report", path);
    if (first.is_null()) first = j;
    else if (j["model"] != first["model"] || j["data"] != first["data"] || j["selection"] != first["selection"] ||
             j.contains("baseline") != first.contains("baseline"))
      bad_input("{}: a report of another model, data or metric selection than {}", path, a.merge[0]);
    sums.add(MetricSums::from_json(j["sums"]));
    rss = std::max<uint64_t>(rss, j["metrics"].value("peak_rss_bytes", uint64_t{0}));
    if (j.contains("baseline")) {
      base_sums.add(MetricSums::from_json(j["baseline"]["sums"]));
      base_rss = std::max<uint64_t>(base_rss, j["baseline"]["metrics"].value("peak_rss_bytes", uint64_t{0}));
    }
    shards.emplace_back(j["range"][0].get<int64_t>(), j["range"][1].get<int64_t>());
  }
  std::sort(shards.begin(), shards.end());
  for (size_t i = 1; i < shards.size(); ++i)
    if (shards[i].first != shards[i - 1].second)
      bad_input("--merge: shards do not tile the data (samples {}..{} then {}..{})", shards[i - 1].first,
                shards[i - 1].second, shards[i].first, shards[i].second);
  const auto& sel_j = first["selection"];
  Selected sel{sel_j["accuracy"], sel_j["lm"], sel_j["fidelity"], sel_j["latency"], sel_j["size"], sel_j["memory"]};
  int top_k = first["top_k"];
  nlohmann::json statics;
  for (auto k : {"size_bytes", "parameters", "parameter_bytes"})
    if (first["metrics"].contains(k)) statics[k] = first["metrics"][k];
  nlohmann::json report = first;
  report.erase("shard");
  report["samples"] = sums.samples;
  report["range"] = {shards.front().first, shards.back().second};
  report["merged_from"] = a.merge;
  report["metrics"] = assemble(sums, sel, top_k, statics, rss);
  report["sums"] = sums.to_json();
  if (first.contains("baseline")) {
    nlohmann::json bstatics;
    for (auto k : {"size_bytes", "parameters", "parameter_bytes"})
      if (first["baseline"]["metrics"].contains(k)) bstatics[k] = first["baseline"]["metrics"][k];
    Selected bsel = sel;
    bsel.fidelity = false;
    report["baseline"]["metrics"] = assemble(base_sums, bsel, top_k, bstatics, base_rss);
    report["baseline"]["sums"] = base_sums.to_json();
  }
  report.erase("goals");
  return finish(report, a);
}

std::string input_list(const ir::Model& m) {
  std::string s;
  for (auto& in : m.graph->inputs)
    if (in.value && !in.value->initializer) s += (s.empty() ? "" : ", ") + in.value->name;
  return s;
}

// A baseline is run on the model's batches: its inputs must be the model's (names, types).
void check_baseline_inputs(const ir::Model& m, const ir::Model& bm, const EvalArgs& a) {
  for (auto& in : m.graph->inputs) {
    const ir::Value* v = in.value;
    if (!v || v->initializer) continue;
    const ir::Value* bv = bm.graph->find_value(v->name);
    bool is_input = false;
    for (auto& bin : bm.graph->inputs) is_input = is_input || bin.value == bv;
    if (!bv || !is_input)
      bad_input("--baseline {}: the baseline has no input '{}' (its inputs: {}; the model's: {})", a.baseline, v->name,
                input_list(bm), input_list(m));
    if (v->type.is_tensor && bv->type.is_tensor && v->type.elem() != bv->type.elem())
      bad_input("--baseline {}: the baseline's input '{}' is {}, the model's is {}; the baseline must take the same "
                "inputs", a.baseline, v->name, ir::dtype_name(bv->type.elem()), ir::dtype_name(v->type.elem()));
  }
}

// Goals whose metric the selected measurements do not produce: refused before any run.
void check_goal_families(const std::vector<std::string>& goals, const Selected& sel, bool random) {
  for (auto& text : goals) {
    Goal g = parse_goal(text);
    std::string family = goal_metric_family(g.metric);
    bool on = family == "accuracy" ? sel.accuracy
              : family == "perplexity" ? sel.lm
              : family == "fidelity"   ? sel.fidelity
              : family == "latency"    ? sel.latency && (g.metric != "tokens_per_s" || sel.lm)
              : family == "size"       ? sel.size
                                       : sel.memory;
    if (!on)
      bad_input("--goal '{}': this run does not measure {} ({})", text, g.metric,
                random ? "--random measures latency, size and memory only"
                       : family == "accuracy"   ? "accuracy needs labels in the data and a classifier's 2-D output"
                       : family == "perplexity" || g.metric == "tokens_per_s"
                           ? "perplexity needs a causal LM (2-D token ids in, 3-D logits out)"
                           : "not in --metrics");
  }
}

nlohmann::json evaluate_loaded(const ir::Model& m, const ir::Model* bm, const EvalArgs& a) {
  if (a.data.empty() && !a.random) bad_input("evaluate needs --data DATA (or --random)");
  if (bm) check_baseline_inputs(m, *bm, a);
  for (auto& s : a.shapes) {
    auto [name, dims] = parse_shape_option(s);
    bool found = false;
    for (auto& in : m.graph->inputs) found = found || (in.value && in.value->name == name);
    if (!found) bad_input("--shape {}: the model has no input '{}' (its inputs: {})", s, name, input_list(m));
  }
  DataOptions opts;
  opts.batch_size = a.batch_size > 0 ? a.batch_size : 1;
  opts.labels = a.labels;
  opts.random = a.random;
  opts.random_samples = a.samples;
  for (auto& s : a.shapes) opts.shapes.push_back(parse_shape_option(s));
  auto source = open_data(a.data, m, opts);

  // Which input carries token ids (for perplexity), and does the model look like a causal LM?
  int lm_ids = -1;
  for (size_t i = 0; i < m.graph->inputs.size(); ++i) {
    const ir::Value* v = m.graph->inputs[i].value;
    if (v && v->type.is_tensor && (v->type.elem() == ir::DType::Int64 || v->type.elem() == ir::DType::Int32) &&
        v->type.dims.size() == 2 && lm_ids < 0)
      lm_ids = static_cast<int>(i);
  }
  const ir::Value* out0 = m.graph->outputs.empty() ? nullptr : m.graph->outputs[0].value;
  bool looks_lm = lm_ids >= 0 && out0 && out0->type.has_shape && out0->type.dims.size() == 3;
  bool has_reference = bm || fs::is_directory(a.data);
  Selected sel = select_metrics(a.metrics, source->has_labels(), looks_lm && !a.random, has_reference);
  if (a.random) sel.accuracy = sel.lm = sel.fidelity = false;  // random tokens: no accuracy or perplexity
  if (sel.lm && lm_ids < 0) bad_input("--metrics perplexity needs a 2-D integer input (token ids)");
  if (a.top_k < 1) bad_input("--top-k must be at least 1");
  check_goal_families(a.goals, sel, a.random);

  // The shard: a contiguous run of whole batches, so that shard runs see the same batches.
  int64_t n = source->samples(), bs = opts.batch_size;
  int64_t nb = (n + bs - 1) / bs, begin = 0, end = n;
  std::string shard_text;
  if (!a.shard.empty()) {
    auto slash = a.shard.find('/');
    int64_t i = -1, k = 0;
    try {
      i = std::stoll(a.shard.substr(0, slash));
      k = std::stoll(a.shard.substr(slash + 1));
    } catch (const std::exception&) {
    }
    if (slash == std::string::npos || k < 1 || i < 0 || i >= k)
      bad_input("--shard '{}': expected I/N with 0 <= I < N (0-based, like a Kubernetes job index)", a.shard);
    begin = std::min(n, (i * nb / k) * bs);
    end = std::min(n, ((i + 1) * nb / k) * bs);
    shard_text = a.shard;
  }
  auto batches = source->batches(begin, end);
  passes::Progress* progress = a.no_progress ? nullptr : &cli::progress();

  nlohmann::json report = {{"model", a.model}, {"data", source->describe()}, {"samples", end - begin},
                           {"range", {begin, end}}, {"top_k", a.top_k}};
  if (!shard_text.empty()) report["shard"] = shard_text;
  report["selection"] = {{"accuracy", sel.accuracy}, {"lm", sel.lm},     {"fidelity", sel.fidelity},
                         {"latency", sel.latency},   {"size", sel.size}, {"memory", sel.memory}};

  std::vector<ir::Tensor> base_outputs;
  if (bm) {
    runtime::Session bs_session(*bm, effective_threads());
    Selected bsel = sel;
    bsel.fidelity = false;
    auto br = run_model(*bm, bs_session, batches, bsel, lm_ids, a.top_k, a.warmup, nullptr, sel.fidelity, progress,
                        "baseline");
    base_outputs = std::move(br.primary);
    report["baseline"] = {{"model", a.baseline},
                          {"metrics", assemble(br.sums, bsel, a.top_k, static_metrics(*bm), br, *bm, a.base_rss)},
                          {"sums", br.sums.to_json()}};
  }
  runtime::Session session(m, effective_threads());
  auto r = run_model(m, session, batches, sel, lm_ids, a.top_k, a.warmup, bm ? &base_outputs : nullptr,
                     false, progress, "evaluate");
  report["metrics"] = assemble(r.sums, sel, a.top_k, static_metrics(m), r, m, a.base_rss);
  report["sums"] = r.sums.to_json();
  return finish(report, a);
}

nlohmann::json evaluate(const EvalArgs& args) {
  if (args.data.empty() && !args.random) bad_input("evaluate needs --data DATA (or --random)");
  EvalArgs a = args;
  a.base_rss = current_rss_bytes();  // before the model's weights are mapped
  ir::Model m = formats::load_model(a.model);
  ir::align_initializers(m);  // the executor reads weights as typed values
  std::optional<ir::Model> bm;
  if (!a.baseline.empty()) {
    bm = formats::load_model(a.baseline);
    ir::align_initializers(*bm);
  }
  return evaluate_loaded(m, bm ? &*bm : nullptr, a);
}

void check(const EvalArgs& a) {
  auto sets = data_set_folders(a.data);
  ir::Model m = formats::load_model(a.model);
  ir::align_initializers(m);
  runtime::Session session(m, effective_threads());
  nlohmann::json results = nlohmann::json::array();
  int matched = 0;
  std::string first_failure;
  for (auto& dir : sets) {
    auto r = check_data_set(m, session, dir, a.tol);
    results.push_back({{"data", dir.string()}, {"passed", r.passed}, {"outputs", r.outputs_checked}, {"worst", r.worst}});
    if (r.passed) ++matched;
    else if (first_failure.empty()) first_failure = fmt::format("{}: {}", dir.string(), r.worst);
  }
  const bool all = matched == static_cast<int>(sets.size());
  if (a.json) print_json({{"model", a.model}, {"passed", all}, {"data_sets", results}});
  else fmt::print("{}: {} of {} data sets match\n", a.model, matched, sets.size());
  if (!all) throw Error(ExitCode::GoalNotMet, fmt::format("{}: outputs differ: {}", a.model, first_failure));
}

}  // namespace

nlohmann::json evaluation_report(const EvalArgs& a) { return evaluate(a); }
nlohmann::json evaluation_report(const ir::Model& m, const ir::Model* baseline, const EvalArgs& a) {
  return evaluate_loaded(m, baseline, a);
}

void print_evaluation(const nlohmann::json& report) { print_table_impl(report); }

void enforce_goals(const nlohmann::json& report) {
  std::string unmet;
  if (report.contains("goals"))
    for (auto& g : report["goals"])
      if (!g["met"].get<bool>()) unmet += (unmet.empty() ? "" : "\n") + g["detail"].get<std::string>();
  if (!unmet.empty()) throw Error(ExitCode::GoalNotMet, unmet);
}

// Folder of a file to be written: it must exist and be writable, checked before any work.
void check_writable_file(const std::string& flag, const std::string& path) {
  fs::path p = path, dir = p.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (fs::is_directory(p, ec)) bad_input("{} {}: is a folder, expected a file name", flag, path);
  if (!fs::is_directory(dir, ec)) bad_input("{} {}: folder '{}' does not exist", flag, path, dir.string());
  if (::access(dir.c_str(), W_OK) != 0) bad_input("{} {}: folder '{}' is not writable", flag, path, dir.string());
}

// Everything about the arguments that can be checked before a model is run.
void check_arguments(const EvalArgs& a) {
  if (a.random && !a.data.empty())
    bad_input("--data {} and --random: choose one (--random makes inputs instead of reading data)", a.data);
  if (!a.random && !a.shapes.empty()) bad_input("--shape {}: only with --random", a.shapes.front());
  std::vector<std::string> metrics;
  for (size_t pos = 0; !a.metrics.empty() && pos <= a.metrics.size();) {
    size_t comma = a.metrics.find(',', pos);
    metrics.push_back(a.metrics.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (a.random)
    for (auto& m : metrics)
      if (m == "accuracy" || m == "perplexity" || m == "fidelity")
        bad_input("--metrics {}: not with --random (random inputs have no labels or text; it measures latency, "
                  "size and memory)", m);
  bool has_reference = !a.baseline.empty() || (!a.data.empty() && fs::is_directory(a.data));
  auto problems = goal_problems(a.goals, has_reference, metrics);
  if (!problems.empty()) throw Error(ExitCode::BadInput, problems.front());
  if (a.random)
    for (auto& text : a.goals) {
      auto family = goal_metric_family(parse_goal(text).metric);
      if (family != "latency" && family != "size" && family != "memory")
        bad_input("--goal '{}': --random measures latency, size and memory only", text);
    }
  if (!a.report.empty()) check_writable_file("--report", a.report);
  if (!a.data.empty() && !fs::exists(a.data)) bad_input("--data {}: no such file or folder", a.data);
  if (!a.baseline.empty() && !fs::exists(a.baseline)) bad_input("--baseline {}: no such file", a.baseline);
  if (!a.shard.empty()) {
    auto slash = a.shard.find('/');
    int64_t i = -1, k = 0;
    try {
      size_t u1 = 0, u2 = 0;
      i = std::stoll(a.shard.substr(0, slash), &u1);
      k = std::stoll(a.shard.substr(slash + 1), &u2);
      if (u1 != slash || u2 != a.shard.size() - slash - 1) k = 0;
    } catch (const std::exception&) {
    }
    if (slash == std::string::npos || k < 1 || k > 1000000 || i < 0 || i >= k)
      bad_input("--shard '{}': expected I/N with 0 <= I < N <= 1000000 (0-based, like a Kubernetes job index)",
                a.shard);
  }
}

void register_evaluate(CLI::App& app) {
  static EvalArgs a;
  using passes::OptionSpec;
  using passes::OptionType;
  // Numeric options of the subcommand, declared with their ranges (batch-size, top-k and
  // metrics are the evaluate step's own declarations).
  static const std::vector<OptionSpec> own = {
      {"samples", OptionType::Int, 16, "how many random samples for --random", {}, false, {1, 1000000}},
      {"warmup", OptionType::Int, 1, "untimed runs before timing", {}, false, {0, 1000}},
      {"rtol", OptionType::Float, 1e-3, "relative tolerance for --check", {}, false, {0, 1}},
      {"atol", OptionType::Float, 1e-7, "absolute tolerance for --check", {}, false, {0, 1e6}},
  };
  auto* cmd = app.add_subcommand("evaluate", "accuracy, perplexity, fidelity, latency, size and memory of a model");
  cmd->add_option("model", a.model, "an .onnx model (omit with --merge)");
  cmd->add_option("--data", a.data, ".npz, .jsonl, or a test_data_set folder (or a folder of them)");
  cmd->add_option("--baseline", a.baseline, "reference model: fidelity and side-by-side metrics");
  const auto& step = *passes::find_pass("evaluate");
  for (auto& spec : step.options) {
    if (spec.name == "batch-size") add_spec_option(cmd, spec, [](const nlohmann::json& v) { a.batch_size = v; });
    if (spec.name == "top-k") add_spec_option(cmd, spec, [](const nlohmann::json& v) { a.top_k = v; });
    if (spec.name == "metrics")
      add_spec_option(cmd, spec, [](const nlohmann::json& v) {
        a.metrics.clear();
        for (auto& m : v) a.metrics += (a.metrics.empty() ? "" : ",") + m.get<std::string>();
      });
  }
  cmd->add_option("--labels", a.labels, "the .npz array holding labels (default: label or labels)");
  cmd->add_flag("--random", a.random, "random inputs from the declared shapes (latency, size and memory only)");
  cmd->add_option("--shape", a.shapes, "shape of an input for --random: NAME=1x128")->type_name("NAME=DIMS");
  add_spec_option(cmd, own[0], [](const nlohmann::json& v) { a.samples = v; });
  add_spec_option(cmd, own[1], [](const nlohmann::json& v) { a.warmup = v; });
  cmd->add_option("--goal", a.goals, "METRIC:TYPE:VALUE, TYPE one of threshold, max-degradation, min-improvement, percent-max-degradation, percent-min-improvement; exit 3 when unmet")->type_name("GOAL");
  cmd->add_option("--shard", a.shard, "evaluate the I-th of N slices (0-based I/N, N up to 1000000)")->type_name("I/N");
  cmd->add_option("--merge", a.merge, "combine shard reports (--json files) into one")->type_name("REPORT...");
  cmd->add_option("--report", a.report, "also write a Markdown report")->type_name("FILE.md");
  cmd->add_flag("--json", a.json, "print the report as JSON on stdout");
  cmd->add_flag("--progress", a.progress, "show a progress bar even when stderr is not a terminal");
  cmd->add_flag("--no-progress", a.no_progress, "never show progress");
  cmd->add_flag("--check", a.check, "compare with the data's output_K.pb; exit 3 when any differs");
  add_spec_option(cmd, own[2], [](const nlohmann::json& v) { a.tol.rtol = v; });
  add_spec_option(cmd, own[3], [](const nlohmann::json& v) { a.tol.atol = v; });
  cmd->add_flag("--scaled", a.tol.scaled, "--check: rtol relative to the largest |reference| of each output");
  cmd->callback([] {
    if (a.progress) progress().force(ProgressReporter::Style::Bar);
    if (a.check) {
      if (a.model.empty() || a.data.empty()) bad_input("--check needs a model and --data DIR (a test_data_set folder)");
      return check(a);
    }
    if (a.merge.empty() && a.model.empty()) bad_input("evaluate needs a model (or --merge REPORTS)");
    if (a.merge.empty()) check_arguments(a);
    else if (!a.report.empty()) check_writable_file("--report", a.report);
    nlohmann::json report = a.merge.empty() ? evaluate(a) : merge_reports(a);
    if (a.json) print_json(report);
    else print_evaluation(report);
    enforce_goals(report);
  });
}

}  // namespace slmops::cli
