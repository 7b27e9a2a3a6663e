#include "eval/run.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>

#include "eval/data.h"
#include "eval/memory.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "passes/common/shard.h"
#include "passes/optimize/optimize.h"
#include "runtime/executor.h"

namespace slmops::eval {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

// Which figures a run measures.
struct Selected {
  bool accuracy = false, lm = false, fidelity = false, latency = true, size = true, memory = true;
};

// `metrics` empty: what the data and the model allow, plus latency, size and memory.
Selected select_metrics(const std::vector<std::string>& metrics, bool has_labels, bool looks_lm, bool has_reference) {
  Selected s;
  if (metrics.empty()) {
    s.accuracy = has_labels && !looks_lm;
    s.lm = looks_lm;
    s.fidelity = has_reference;
    return s;
  }
  s.latency = s.size = s.memory = false;
  for (auto& m : metrics) {
    if (m == "accuracy") s.accuracy = true;
    else if (m == "perplexity") s.lm = true;
    else if (m == "fidelity") s.fidelity = true;
    else if (m == "latency") s.latency = true;
    else if (m == "size") s.size = true;
    else if (m == "memory") s.memory = true;
    else bad_input("--metrics: unknown metric '{}' (accuracy, perplexity, fidelity, latency, size, memory)", m);
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
                    const std::string& label, const runtime::RunOptions& run_opts) {
  RunResult r;
  reset_peak_rss();
  if (!batches.empty())
    for (int64_t w = 0; w < warmup; ++w) session.run(batches[0].feeds, run_opts);
  passes::ProgressStage bar(
      progress, label, batches.empty() ? 0 : batches.back().first + batches.back().count - batches.front().first,
      "samples");
  int64_t done = 0;
  auto t_all = clock_type::now();
  for (size_t k = 0; k < batches.size(); ++k) {
    const Batch& b = batches[k];
    auto t0 = clock_type::now();
    auto outs = session.run(b.feeds, run_opts);
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
  const uint64_t w = ir::model_statistics(model).weight_bytes, act = r.peak_activations;
  nlohmann::json mem = {{"weight_bytes", w}, {"peak_activation_bytes", act}};
  if (base_rss) {
    mem["base_rss_bytes"] = base_rss;
    const double added = r.peak_rss > base_rss ? double(r.peak_rss - base_rss) : 0.0;
    mem["rss_over_weights_and_activations"] = w + act ? added / double(w + act) : 0.0;
  }
  m["memory"] = mem;
  return m;
}

// Applies goals to a finished report: "goals": [{goal, met, detail}].
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
  apply_goals(report, a.options.goals);
  if (!a.options.report.empty()) write_markdown(report, a.options.report);
  return report;
}

std::string input_list(const ir::Model& m) {
  std::string s;
  for (auto& in : m.graph->inputs)
    if (in.value && !in.value->initializer) s += (s.empty() ? "" : ", ") + in.value->name;
  return s;
}

// A baseline is run on the model's batches: its inputs must be the model's (names, types).
bool is_float_type(ir::DType t) {
  return t == ir::DType::Float || t == ir::DType::Float16 || t == ir::DType::BFloat16 || t == ir::DType::Double;
}

// A baseline whose float inputs have another width than the model's (an fp16 model against
// its fp32 original): a copy that takes the model's types and casts them to its own, so both
// read the same batches. std::nullopt when the types already agree.
std::optional<ir::Model> baseline_taking_model_inputs(const ir::Model& m, const ir::Model& bm) {
  std::optional<ir::Model> copy;
  for (auto& in : m.graph->inputs) {
    const ir::Value* v = in.value;
    if (!v || v->initializer || !v->type.is_tensor) continue;
    const ir::Value* bv0 = bm.graph->find_value(v->name);
    if (!bv0 || !bv0->type.is_tensor || bv0->type.elem() == v->type.elem()) continue;
    if (!copy) copy = bm.clone();
    ir::Graph& g = *copy->graph;
    ir::Value* bv = g.find_value(v->name);
    const ir::DType own = bv->type.elem();
    std::vector<ir::Node*> readers = bv->consumers;
    std::vector<ir::Attribute> to;
    to.push_back(ir::Attribute::make_int("to", static_cast<int64_t>(own)));
    ir::Node* cast = g.add_node("Cast", {bv}, {g.unique_name(v->name + "_as_baseline")}, std::move(to));
    for (ir::Node* c : readers)
      for (size_t i = 0; i < c->inputs.size(); ++i)
        if (c->inputs[i] == bv) c->set_input(i, cast->outputs[0]);
    bv->type.elem_code = v->type.elem_code;
    ir::sort_nodes(g);
    copy->shapes_inferred = false;
  }
  return copy;
}

void check_baseline_inputs(const ir::Model& m, const ir::Model& bm, const std::string& baseline) {
  for (auto& in : m.graph->inputs) {
    const ir::Value* v = in.value;
    if (!v || v->initializer) continue;
    const ir::Value* bv = bm.graph->find_value(v->name);
    bool is_input = false;
    for (auto& bin : bm.graph->inputs) is_input = is_input || bin.value == bv;
    if (!bv || !is_input)
      bad_input("--baseline {}: the baseline has no input '{}' (its inputs: {}; the model's: {})", baseline, v->name,
                input_list(bm), input_list(m));
    if (v->type.is_tensor && bv->type.is_tensor && v->type.elem() != bv->type.elem() &&
        !(is_float_type(v->type.elem()) && is_float_type(bv->type.elem())))
      bad_input("--baseline {}: the baseline's input '{}' is {}, the model's is {}; the baseline must take the same "
                "inputs", baseline, v->name, ir::dtype_name(bv->type.elem()), ir::dtype_name(v->type.elem()));
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

}  // namespace

nlohmann::json evaluation_report(const ir::Model& m, const ir::Model* bm, const EvalArgs& a) {
  const auto& o = a.options;
  if (o.data.empty() && !a.random) bad_input("evaluate needs --data DATA (or --random)");
  if (bm) check_baseline_inputs(m, *bm, o.baseline);
  std::optional<ir::Model> bm_cast = bm ? baseline_taking_model_inputs(m, *bm) : std::nullopt;
  if (bm_cast) bm = &*bm_cast;
  for (auto& s : a.shapes) {
    auto [name, dims] = parse_shape_option(s);
    bool found = false;
    for (auto& in : m.graph->inputs) found = found || (in.value && in.value->name == name);
    if (!found) bad_input("--shape {}: the model has no input '{}' (its inputs: {})", s, name, input_list(m));
  }
  DataOptions opts;
  opts.batch_size = o.batch_size > 0 ? o.batch_size : 1;
  opts.labels = o.labels;
  opts.tokenizer = o.tokenizer;
  opts.context_length = o.context_length;
  opts.stride = o.stride;
  if (o.stride > 0 && o.context_length == 0) bad_input("--stride needs --context-length (the window it slides)");
  if (o.stride > o.context_length)
    bad_input("--stride {} is longer than --context-length {}: tokens between windows would not be scored", o.stride,
              o.context_length);
  opts.random = a.random;
  opts.random_samples = a.samples;
  for (auto& s : a.shapes) opts.shapes.push_back(parse_shape_option(s));
  auto source = open_data(o.data, m, opts);

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
  std::error_code dir_ec;
  bool has_reference = bm || fs::is_directory(o.data, dir_ec);
  Selected sel = select_metrics(o.metrics, source->has_labels(), looks_lm && !a.random, has_reference);
  if (a.random) sel.accuracy = sel.lm = sel.fidelity = false;  // random tokens: no accuracy or perplexity
  if (sel.lm && lm_ids < 0) bad_input("--metrics perplexity needs a 2-D integer input (token ids)");
  if (o.top_k < 1) bad_input("--top-k must be at least 1");
  const int top_k = static_cast<int>(o.top_k);
  check_goal_families(o.goals, sel, a.random);

  // The shard: a contiguous run of whole batches, so that shard runs see the same batches.
  const auto [begin, end] = passes::shard_range(a.shard, source->samples(), opts.batch_size);
  auto batches = source->batches(begin, end);

  nlohmann::json report = {{"model", a.model}, {"data", source->describe()}, {"samples", end - begin},
                           {"range", {begin, end}}, {"top_k", o.top_k}};
  if (!a.shard.empty()) report["shard"] = a.shard;
  report["selection"] = {{"accuracy", sel.accuracy}, {"lm", sel.lm},     {"fidelity", sel.fidelity},
                         {"latency", sel.latency},   {"size", sel.size}, {"memory", sel.memory}};

  // What the session runs: an optimized copy (weights shared with `m` where unchanged), or the
  // model as written. Sizes are always those of the model as given.
  runtime::RunOptions run_opts;
  run_opts.exact_qdq = !o.optimize;
  report["optimized"] = o.optimize;
  std::optional<ir::Model> m_opt, bm_opt;
  if (o.optimize) {
    auto t0 = clock_type::now();
    m_opt = m.clone();
    auto st = passes::optimize(*m_opt, {});
    report["optimize"] = {{"nodes_before", m.graph->node_count()},
                          {"nodes_after", m_opt->graph->node_count()},
                          {"seconds", std::chrono::duration<double>(clock_type::now() - t0).count()},
                          {"stats", passes::stats_json(st)}};
    if (bm) {
      bm_opt = bm->clone();
      passes::optimize(*bm_opt, {});
    }
  }
  const ir::Model& run_m = m_opt ? *m_opt : m;
  const ir::Model* run_bm = bm_opt ? &*bm_opt : bm;

  std::vector<ir::Tensor> base_outputs;
  if (bm) {
    runtime::Session bs_session(*run_bm, a.threads);
    Selected bsel = sel;
    bsel.fidelity = false;
    auto br = run_model(*bm, bs_session, batches, bsel, lm_ids, top_k, a.warmup, nullptr, sel.fidelity, a.progress,
                        "baseline", run_opts);
    base_outputs = std::move(br.primary);
    report["baseline"] = {{"model", o.baseline},
                          {"metrics", assemble(br.sums, bsel, top_k, size_metrics(*bm), br, *bm, a.base_rss)},
                          {"sums", br.sums.to_json()}};
  }
  runtime::Session session(run_m, a.threads);
  auto r = run_model(m, session, batches, sel, lm_ids, top_k, a.warmup, bm ? &base_outputs : nullptr, false, a.progress,
                     "evaluate", run_opts);
  report["metrics"] = assemble(r.sums, sel, top_k, size_metrics(m), r, m, a.base_rss);
  report["sums"] = r.sums.to_json();
  return finish(report, a);
}

nlohmann::json evaluation_report(const EvalArgs& args) {
  if (args.options.data.empty() && !args.random) bad_input("evaluate needs --data DATA (or --random)");
  EvalArgs a = args;
  a.base_rss = current_rss_bytes();  // before the model's weights are mapped
  ir::Model m = formats::load_model(a.model);
  std::optional<ir::Model> bm;
  if (!a.options.baseline.empty()) bm = formats::load_model(a.options.baseline);
  return evaluation_report(m, bm ? &*bm : nullptr, a);
}

nlohmann::json merge_reports(const std::vector<std::string>& files, const EvalArgs& a) {
  if (files.empty()) bad_input("--merge needs report files");
  nlohmann::json first;
  MetricSums sums, base_sums;
  std::vector<std::pair<int64_t, int64_t>> shards;
  uint64_t rss = 0, base_rss = 0;
  for (auto& path : files) {
    nlohmann::json j = nlohmann::json::parse(formats::read_text_file(path), nullptr, false);
    if (j.is_discarded() || !j.contains("sums") || !j.contains("selection"))
      bad_input("{}: not an slmops evaluate --json report", path);
    if (first.is_null()) first = j;
    else if (j["model"] != first["model"] || j["data"] != first["data"] || j["selection"] != first["selection"] ||
             j.contains("baseline") != first.contains("baseline"))
      bad_input("{}: a report of another model, data or metric selection than {}", path, files[0]);
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
  report["merged_from"] = files;
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

void enforce_goals(const nlohmann::json& report) {
  std::string unmet;
  if (report.contains("goals"))
    for (auto& g : report["goals"])
      if (!g["met"].get<bool>()) unmet += (unmet.empty() ? "" : "\n") + g["detail"].get<std::string>();
  if (!unmet.empty()) throw Error(ExitCode::GoalNotMet, unmet);
}

void check_writable_file(const std::string& flag, const std::string& path) {
  fs::path p = path, dir = p.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (fs::is_directory(p, ec)) bad_input("{} {}: is a folder, expected a file name", flag, path);
  if (!fs::is_directory(dir, ec)) bad_input("{} {}: folder '{}' does not exist", flag, path, dir.string());
  if (::access(dir.c_str(), W_OK) != 0) bad_input("{} {}: folder '{}' is not writable", flag, path, dir.string());
}

void check_arguments(const EvalArgs& a) {
  const auto& o = a.options;
  if (a.random && !o.data.empty())
    bad_input("--data {} and --random: choose one (--random makes inputs instead of reading data)", o.data);
  if (!a.random && !a.shapes.empty()) bad_input("--shape {}: only with --random", a.shapes.front());
  if (a.random)
    for (auto& m : o.metrics)
      if (m == "accuracy" || m == "perplexity" || m == "fidelity")
        bad_input("--metrics {}: not with --random (random inputs have no labels or text; it measures latency, "
                  "size and memory)", m);
  std::error_code ec;
  bool has_reference = !o.baseline.empty() || (!o.data.empty() && fs::is_directory(o.data, ec));
  auto problems = goal_problems(o.goals, has_reference, o.metrics);
  if (!problems.empty()) throw Error(ExitCode::BadInput, problems.front());
  if (a.random)
    for (auto& text : o.goals) {
      auto family = goal_metric_family(parse_goal(text).metric);
      if (family != "latency" && family != "size" && family != "memory")
        bad_input("--goal '{}': --random measures latency, size and memory only", text);
    }
  if (!o.report.empty()) check_writable_file("--report", o.report);
  if (!o.data.empty() && !fs::exists(o.data, ec)) bad_input("--data {}: no such file or folder", o.data);
  if (!o.baseline.empty() && !fs::exists(o.baseline, ec)) bad_input("--baseline {}: no such file", o.baseline);
  if (!a.shard.empty()) {
    auto [i, k] = passes::parse_shard(a.shard, true);
    if (k < 1 || k > 1000000 || i < 0 || i >= k)
      bad_input("--shard '{}': expected I/N with 0 <= I < N <= 1000000 (0-based, like a Kubernetes job index)",
                a.shard);
  }
}

}  // namespace slmops::eval
