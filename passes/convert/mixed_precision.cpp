// The mixed-precision pass (`convert --to mixed`): float16 everywhere the data says it is safe,
// as ONNX Runtime's auto_mixed_precision and Olive's OrtMixedPrecision do.
//   1. The float model runs on calib-data; a value that reaches beyond float16's finite range
//      (|x| > 65504) on any sample stays float: its producer and all its readers keep float.
//   2. Everything else goes through the float16 converter (keep-io-types by default, as
//      auto_mixed_precision), with ORT's op block list and the user's node block list.
//   3. With max-degradation, the accuracy-aware loop (the one quantize uses) measures the goal
//      against the float model on eval-data (default: calib-data) and, while it is missed,
//      returns the node that adds the most error (ranked once, per node, on calib-data) to
//      float, then measures again.
// Unnamed nodes of the main graph are given names first (op type + index), because the block
// list and the report name nodes.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "formats/shape_infer.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "passes/common/accuracy_aware.h"
#include "passes/common/activations.h"
#include "passes/common/data.h"
#include "passes/convert/float16.h"
#include "passes/optimize/pattern.h"
#include "passes/progress.h"
#include "passes/registry.h"

namespace slmops::passes {

namespace {

constexpr double kHalfMax = 65504.0;

struct MixedOptions {
  std::string calib_data;
  std::string tokenizer;
  int64_t context_length = 0;
  int64_t calib_samples = 0;
  int64_t calib_batch_size = 1;
  std::string max_degradation;
  std::string eval_data;
  int64_t max_fallback_steps = 0;
  bool keep_io_types = true;
  std::vector<std::string> op_block_list = default_float16_op_block_list();
  std::vector<std::string> node_block_list;
  static const OptionTable<MixedOptions>& table() {
    using O = MixedOptions;
    const double big = 1 << 30;
    static const OptionTable<O> t({
        {"calib-data",
         &O::calib_data,
         "data the float model runs on to find the nodes whose outputs overflow float16 (required): .npz, .jsonl "
         "or test_data_set folder",
         {},
         true},
        {"tokenizer",
         &O::tokenizer,
         "tokenizer.json or its folder for JSONL text and chat rows (default: the model folder's)",
         {},
         true},
        {"context-length",
         &O::context_length,
         "text rows cut into windows of this many tokens",
         {},
         false,
         {0, 1 << 24}},
        {"calib-samples", &O::calib_samples, "calibration samples to use (0: all)", {}, false, {0, big}},
        {"calib-batch-size", &O::calib_batch_size, "samples per calibration run", {}, false, {1, 65536}},
        {"max-degradation",
         &O::max_degradation,
         "accuracy-aware: METRIC:VALUE (VALUE% for percent) against the float model, e.g. accuracy:0.005 or "
         "perplexity:1%",
         {}},
        {"eval-data",
         &O::eval_data,
         "accuracy-aware: data the goal is measured on (default: calib-data)",
         {},
         true,
         {},
         "max-degradation"},
        {"max-fallback-steps",
         &O::max_fallback_steps,
         "accuracy-aware: nodes returned to float at most (0: no limit)",
         {},
         false,
         {0, big},
         "max-degradation"},
        {"keep-io-types", &O::keep_io_types,
         "keep the graph's float inputs and outputs float, with Casts at the boundary (default true, as ORT's "
         "auto_mixed_precision)"},
        {"op-block-list", &O::op_block_list,
         "op types that stay float (default: ONNX Runtime's list; giving it replaces the list)"},
        {"node-block-list", &O::node_block_list, "node names that stay float"},
    });
    return t;
  }
};

std::vector<std::string> option_problems(const nlohmann::json& j, Naming naming) {
  MixedOptions o = MixedOptions::table().from_json(j);
  std::vector<std::string> p = check_float16_options(j, naming);
  if (o.calib_data.empty())
    p.push_back(
        fmt::format("mixed precision needs {} (the float model runs on it to find the nodes that overflow "
                    "float16)",
                    option_label("calib-data", naming)));
  if (!o.max_degradation.empty()) {
    try {
      degradation_goal(o.max_degradation, naming);
    } catch (const Error& e) {
      p.push_back(e.what());
    }
  }
  return p;
}

// Names the unnamed nodes of the main graph ("MatMul_mp3"); returns how many.
int64_t name_nodes(ir::Graph& g) {
  std::set<std::string> used;
  for (auto& n : g.nodes()) used.insert(n->name);
  int64_t named = 0, k = 0;
  for (auto& n : g.nodes()) {
    if (!n->name.empty()) continue;
    std::string name;
    do name = fmt::format("{}_mp{}", n->op_type, k++);
    while (used.count(name));
    used.insert(name);
    n->name = std::move(name);
    ++named;
  }
  return named;
}

bool reads_or_writes_float(const ir::Node& n) {
  for (const ir::Value* v : n.inputs)
    if (dtype_of(v) == ir::DType::Float) return true;
  for (const ir::Value* v : n.outputs)
    if (dtype_of(v) == ir::DType::Float) return true;
  return false;
}

struct Overflow {
  std::string node, op;
  double max_abs = 0;
};

// Runs the float model over the data and returns the nodes to keep float because a float
// value they write or read goes beyond float16's range.
std::vector<Overflow> find_overflows(const ir::Model& m, const FeedSource& data, int64_t limit, int threads,
                                     int64_t& samples_seen) {
  std::vector<std::string> names;
  for (const ir::ValueInfo& in : m.graph->inputs)
    if (dtype_of(in.value) == ir::DType::Float && !in.value->initializer) names.push_back(in.value->name);
  for (auto& n : m.graph->nodes())
    for (const ir::Value* v : n->outputs)
      if (v && dtype_of(v) == ir::DType::Float) names.push_back(v->name);
  std::vector<double> max_abs(names.size(), 0.0);
  ActivationCollector col(m, names, threads);
  samples_seen = 0;
  data.for_each_batch(limit, [&](std::vector<runtime::RValue> feeds) {
    ++samples_seen;
    col.observe(std::move(feeds), [&](size_t k, const runtime::RValue& v) {
      if (!v.is_tensor() || v.tensor.dtype != ir::DType::Float) return;
      const float* p = v.tensor.values<float>();
      double mx = max_abs[k];
      for (uint64_t i = 0, n = v.tensor.numel(); i < n; ++i)
        if (std::isfinite(p[i])) mx = std::max(mx, static_cast<double>(std::fabs(p[i])));
      max_abs[k] = mx;
    });
  });
  std::map<std::string, Overflow> out;
  for (size_t k = 0; k < names.size(); ++k) {
    if (max_abs[k] <= kHalfMax) continue;
    // The value must stay float wherever it goes: its producer computes it in float and every
    // reader takes it in float (a Cast to float16 between them would overflow just the same).
    const ir::Value* v = m.graph->find_value(names[k]);
    std::vector<const ir::Node*> keep(v->consumers.begin(), v->consumers.end());
    if (v->producer) keep.push_back(v->producer);
    for (const ir::Node* n : keep) {
      auto& o = out[n->name];
      o = {n->name, n->op_type, std::max(o.max_abs, max_abs[k])};
    }
  }
  std::vector<Overflow> r;
  for (auto& [name, o] : out) r.push_back(o);
  return r;
}

void run_mixed(ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
  const MixedOptions o = MixedOptions::table().from_json(j);
  if (!ctx.data || !ctx.data->open) bad_input("mixed precision: this caller cannot read calibration data");
  const int threads = std::max(1, ctx.threads);
  const ir::ModelStats before = ir::model_statistics(m);
  const int64_t named = name_nodes(*m.graph);
  formats::ensure_shapes(m);
  const TextData text{o.tokenizer, o.context_length};
  std::unique_ptr<FeedSource> calib = ctx.data->open(o.calib_data, m, o.calib_batch_size, text);

  int64_t batches = 0;
  std::vector<Overflow> overflows;
  {
    ProgressStage stage(ctx.progress, "mixed precision: float ranges", 0, "batches");
    overflows = find_overflows(m, *calib, o.calib_samples, threads, batches);
  }
  Float16Options f;
  f.dtype = "float16";
  f.keep_io_types = o.keep_io_types;
  f.op_block_list = o.op_block_list;
  f.node_block_list = o.node_block_list;
  for (const Overflow& v : overflows) f.node_block_list.push_back(v.node);
  if (ctx.verbosity > 0)
    for (const Overflow& v : overflows)
      fmt::print(stderr, "mixed precision: node '{}' ({}) stays float: a value it writes or reads reaches {:.4g} "
                 "on {}\n",
                 v.node, v.op, v.max_abs, o.calib_data);

  // The nodes a conversion turns to float16: they compute in float and nothing blocks them.
  const std::set<std::string> ops(f.op_block_list.begin(), f.op_block_list.end());
  const std::set<std::string> blocked(f.node_block_list.begin(), f.node_block_list.end());
  std::vector<std::string> candidates;
  for (auto& n : m.graph->nodes())
    if (!ops.count(n->op_type) && !blocked.count(n->name) && reads_or_writes_float(*n)) candidates.push_back(n->name);

  nlohmann::json rep;
  Float16Stats stats;
  if (o.max_degradation.empty()) {
    stats = convert_float16(m, f);
  } else {
    if (!ctx.data->measure) bad_input("mixed precision: this caller cannot evaluate models (--max-degradation)");
    AccuracyAwareConfig cfg = accuracy_aware_config(o.max_degradation, o.eval_data.empty() ? o.calib_data : o.eval_data,
                                                    text, calib.get(), o.calib_samples, threads, ctx.verbosity);
    cfg.max_steps = o.max_fallback_steps;
    cfg.stage = "accuracy-aware mixed precision";
    auto rewrite = [&](ir::Model& cand, const std::vector<std::string>& keep) {
      Float16Options fk = f;
      fk.node_block_list.insert(fk.node_block_list.end(), keep.begin(), keep.end());
      stats = convert_float16(cand, fk);
      std::vector<std::string> converted;
      for (const std::string& c : candidates)
        if (std::find(keep.begin(), keep.end(), c) == keep.end()) converted.push_back(c);
      return converted;
    };
    AccuracyAwareResult aa = accuracy_aware(m, rewrite, cfg, *ctx.data, ctx.progress);
    rep["accuracy_aware"] = {{"goal", cfg.goal}, {"steps", aa.steps}, {"kept_float", aa.kept}, {"goal_met", aa.met}};
    rep["goal_met"] = aa.met;
    if (!aa.sensitivity.empty()) rep["sensitivity"] = aa.sensitivity;
  }
  const nlohmann::json converted = float16_stats_json(stats);
  for (auto& [k, v] : converted.items()) rep[k] = v;
  nlohmann::json ov = nlohmann::json::array();
  for (const Overflow& v : overflows) ov.push_back({{"node", v.node}, {"op", v.op}, {"max_abs", v.max_abs}});
  rep["overflow_kept_float"] = ov;
  rep["calib_batches"] = batches;
  rep["nodes_named"] = named;
  const ir::ModelStats after = ir::model_statistics(m);
  rep["parameters_by_dtype_before"] = before.parameters_by_dtype;
  rep["parameters_by_dtype_after"] = after.parameters_by_dtype;
  rep["bytes_by_dtype_before"] = before.bytes_by_dtype;
  rep["bytes_by_dtype_after"] = after.bytes_by_dtype;
  ctx.report = std::move(rep);
}

}  // namespace

PassInfo mixed_precision_pass_info() {
  PassInfo p;
  p.name = "mixed-precision";
  p.summary =
      "float16 where calibration data shows it safe: nodes that overflow float16, or (with max-degradation) "
      "miss the goal, stay float (ONNX Runtime's auto_mixed_precision)";
  p.options = MixedOptions::table().specs();
  p.check = option_problems;
  p.run = run_mixed;
  return p;
}

}  // namespace slmops::passes
