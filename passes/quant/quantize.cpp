// The quantize pass: option checks shared by every mode, the dispatch to a mode, and the
// accuracy-aware loop (quantize, evaluate against the float model, return the most
// sensitive node to float, repeat).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "ir/error.h"
#include "passes/common/accuracy_aware.h"
#include "passes/quant/quantize.h"
#include "passes/progress.h"
#include "passes/registry.h"
#include "runtime/executor.h"

namespace slmops::passes {

const OptionTable<QuantizeOptions>& QuantizeOptions::table() {
  using Q = QuantizeOptions;
  const std::string weight = "mode=int4-weight|int8-weight";
  const std::string stat = "mode=int8-static|int16-static";
  const double big = 1 << 30;
  static const OptionTable<Q> t({
      {"mode",
       &Q::mode,
       "what to quantize and how (required)",
       {"int8-dynamic", "int8-static", "int16-static", "int4-weight", "int8-weight"}},
      {"op-types", &Q::op_types, "op types to quantize (default: the mode's set)", {}},
      {"exclude-nodes", &Q::exclude_nodes, "node names or globs (* ?) to keep float", {}},
      {"exclude-op-types", &Q::exclude_op_types, "op types to keep float", {}},
      {"keep-io-types",
       &Q::keep_io_types,
       "graph inputs and outputs keep their float types (every mode does; false is refused)",
       {}},
      {"per-channel",
       &Q::per_channel,
       "one weight scale per output channel",
       {},
       false,
       {},
       "mode=int8-dynamic|int8-static|int16-static"},
      {"symmetric",
       &Q::symmetric,
       "symmetric blocks (no zero points); default asymmetric (zero points), ORT's quantizer-class default",
       {},
       false,
       {},
       weight},
      {"block-size", &Q::block_size, "values per scale along K (a power of two)", {}, false, {16, 256}, weight},
      {"accuracy-level",
       &Q::accuracy_level,
       "MatMulNBits accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8); for speed on CPU use 4 (int8 "
       "activations, ONNX Runtime's fastest MatMulNBits path), 0/1 for the most exact results",
       {},
       false,
       {0, 4},
       weight + " and format=matmulnbits"},
      {"format",
       &Q::format,
       "com.microsoft MatMulNBits, or ONNX blocked DequantizeLinear (opset 21)",
       {"matmulnbits", "qdq"},
       false,
       {},
       weight},
      {"algorithm",
       &Q::algorithm,
       "round-to-nearest, GPTQ (needs calib-data) or HQQ",
       {"rtn", "gptq", "hqq"},
       false,
       {},
       weight},
      {"quantize-embeddings",
       &Q::quantize_embeddings,
       "also Gather on a float table (as DequantizeLinear)",
       {},
       false,
       {},
       weight},
      {"gptq-damp",
       &Q::gptq_damp,
       "GPTQ: damping added to diag(H), as a fraction of its mean",
       {},
       false,
       {0, 1, true, true},
       weight + " and algorithm=gptq"},
      {"gptq-act-order",
       &Q::gptq_act_order,
       "GPTQ: quantize input features by decreasing diag(H)",
       {},
       false,
       {},
       weight + " and algorithm=gptq"},
      {"hqq-iterations",
       &Q::hqq_iterations,
       "HQQ: optimisation steps per block",
       {},
       false,
       {1, 1000},
       weight + " and algorithm=hqq"},
      {"calib-data",
       &Q::calib_data,
       "calibration data: .npz, .jsonl or test_data_set folder",
       {},
       true,
       {},
       stat + " or algorithm=gptq or max-degradation"},
      {"tokenizer",
       &Q::tokenizer,
       "tokenizer.json or its folder for JSONL text and chat rows in calib-data/eval-data (default: the model "
       "folder's)",
       {},
       true,
       {},
       "calib-data or eval-data"},
      {"context-length",
       &Q::context_length,
       "text rows of calib-data/eval-data cut into windows of this many tokens",
       {},
       false,
       {0, 1 << 24},
       "calib-data or eval-data"},
      {"calib-method",
       &Q::calib_method,
       "activation ranges from",
       {"minmax", "entropy", "percentile"},
       false,
       {},
       stat},
      {"calib-percentile",
       &Q::calib_percentile,
       "percentile of |x| kept by calib-method percentile",
       {},
       false,
       {0, 100, true, false},
       stat + " and calib-method=percentile"},
      {"calib-samples", &Q::calib_samples, "calibration samples to use (0: all)", {}, false, {0, big}, "calib-data"},
      {"calib-batch-size", &Q::calib_batch_size, "samples per calibration run", {}, false, {1, 65536}, "calib-data"},
      {"symmetric-activations",
       &Q::symmetric_activations,
       "signed symmetric activations (zero point 0)",
       {},
       false,
       {},
       stat},
      {"max-degradation",
       &Q::max_degradation,
       "accuracy-aware: METRIC:VALUE (VALUE% for percent), e.g. accuracy:0.005 or perplexity:1%",
       {}},
      {"eval-data", &Q::eval_data, "accuracy-aware: data the goal is measured on", {}, true, {}, "max-degradation"},
      {"max-fallback-steps",
       &Q::max_fallback_steps,
       "accuracy-aware: nodes returned to float at most (0: no limit)",
       {},
       false,
       {0, big},
       "max-degradation"},
      {"allow-noop", &Q::allow_noop, "write the model even when no node is quantized (default: that is an error)", {}},
  });
  return t;
}

namespace quant {
namespace {

bool is_weight_only(const std::string& mode) { return mode == "int4-weight" || mode == "int8-weight"; }
bool is_static(const std::string& mode) { return mode == "int8-static" || mode == "int16-static"; }

std::vector<std::string> default_op_types(const QuantizeOptions& o) {
  if (o.mode == "int8-dynamic") return {"MatMul", "Gemm"};
  if (is_static(o.mode)) return {"Conv", "MatMul", "Gemm"};
  std::vector<std::string> v = {"MatMul", "Gemm"};
  if (o.quantize_embeddings) v.push_back("Gather");
  return v;
}

// Checks between options that need no model, on the options with defaults filled in: run by
// recipe validation and --dry-run as well as before the pass works.
std::vector<std::string> option_problems(const nlohmann::json& j, Naming naming) {
  QuantizeOptions o = QuantizeOptions::table().from_json(j);
  std::vector<std::string> p;
  auto L = [&](std::string_view name) { return option_label(name, naming); };
  if (o.mode.empty())
    p.push_back(fmt::format("quantize needs {} (int8-dynamic, int8-static, int16-static, int4-weight, int8-weight)",
                            L("mode")));
  if (is_weight_only(o.mode)) {
    int64_t b = o.block_size;
    if ((b & (b - 1)) != 0) p.push_back(fmt::format("{} {}: must be a power of two from 16 to 256", L("block-size"), b));
    if (o.algorithm == "gptq" && o.calib_data.empty())
      p.push_back(fmt::format("{} gptq needs {} (the layer inputs give its Hessian)", L("algorithm"), L("calib-data")));
  }
  if (is_static(o.mode) && o.calib_data.empty())
    p.push_back(fmt::format("{} {} needs {} (activation ranges come from running the model on it)", L("mode"), o.mode,
                            L("calib-data")));
  if (!o.keep_io_types)
    p.push_back(fmt::format("{} false: no mode changes the graph's input or output types (quantized values stay "
                            "inside the graph); this option exists so that recipes can say so explicitly",
                            L("keep-io-types")));
  degradation_problems(o.max_degradation, o.eval_data, naming, p);
  return p;
}

// What needs the model, checked before any work is done.
void check_options(const QuantizeOptions& o, const ir::Model& m, const PassContext& ctx) {
  if ((!o.calib_data.empty() || !o.eval_data.empty()) && (!ctx.data || !ctx.data->open))
    bad_input("quantize: this caller cannot read calibration data");
  refuse_quantized(m);
  NodeFilter f(o.selection(), default_op_types(o));
  auto missing = f.unmatched(*m.graph);
  if (!missing.empty())
    bad_input("--exclude-nodes '{}': no node of {} has that name", missing.front(),
              m.path.empty() ? "the model" : m.path);
  if (!o.allow_noop) {
    // Nothing the filter lets through: say so now instead of writing an unchanged copy.
    size_t candidates = 0;
    std::set<std::string> present;
    for (auto& n : m.graph->nodes()) {
      present.insert(n->op_type);
      if (f.allows(*n)) ++candidates;
    }
    if (candidates == 0) {
      auto types = o.op_types.empty() ? default_op_types(o) : o.op_types;
      bad_input("{}: nothing to quantize: no node of op type {} (the model has {}); --allow-noop writes it anyway",
                m.path.empty() ? "the model" : m.path, fmt::join(types, ", "), fmt::join(present, ", "));
    }
  }
}

void quantize_once(ir::Model& m, const QuantizeOptions& o, const std::vector<std::string>& fallback,
                   const FeedSource* calib, int threads, QuantReport& rep, Progress* progress = nullptr) {
  QuantizeOptions eff = o;
  eff.exclude_nodes.insert(eff.exclude_nodes.end(), fallback.begin(), fallback.end());
  NodeFilter f(eff.selection(), default_op_types(eff));
  if (is_weight_only(o.mode)) quantize_weight_only(m, eff, f, calib, threads, rep, progress);
  else if (o.mode == "int8-dynamic") quantize_dynamic(m, eff, f, threads, rep);
  else quantize_static(m, eff, f, *calib, threads, rep);
}

void run_quantize(ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
  auto t0 = std::chrono::steady_clock::now();
  QuantizeOptions o = QuantizeOptions::table().from_json(j);
  check_options(o, m, ctx);
  ir::align_initializers(m);  // weights are read as float*; mapped ones may sit at odd offsets
  std::unique_ptr<FeedSource> calib;
  const TextData text{o.tokenizer, o.context_length};
  if (!o.calib_data.empty()) calib = ctx.data->open(o.calib_data, m, o.calib_batch_size, text);
  int threads = std::max(1, ctx.threads);

  QuantReport rep;
  // "Nothing to do" is an error unless asked for: weights that are not float32, op types
  // the mode does not handle. Checked before the model is written.
  auto refuse_noop = [&](const QuantReport& r) {
    if (o.allow_noop) return;
    std::string why;
    for (auto& n : r.nodes) {
      if (n.how.rfind("skipped", 0) != 0) return;
      if (why.empty()) why = fmt::format(" (node '{}': {})", n.node, n.how);
    }
    bad_input("{}: nothing to quantize: no node was quantized by --mode {}{}; --allow-noop writes the model anyway",
              m.path.empty() ? "the model" : m.path, o.mode, why);
  };
  if (o.max_degradation.empty()) {
    ProgressStage stage(ctx.progress, fmt::format("quantize {}", o.mode), 0, "nodes");
    quantize_once(m, o, {}, calib.get(), threads, rep, ctx.progress);
    int64_t done = 0;
    for (auto& n : rep.nodes) done += n.how.rfind("skipped", 0) != 0;
    stage.update(done);
    refuse_noop(rep);
  } else {
    if (!ctx.data->measure) bad_input("quantize: this caller cannot evaluate models (--max-degradation)");
    auto eval = ctx.data->open(o.eval_data, m, 1, text);
    AccuracyAwareConfig cfg =
        accuracy_aware_config(o.max_degradation, o.eval_data, text, calib ? calib.get() : eval.get(), o.calib_samples,
                              threads, ctx.verbosity);
    cfg.max_steps = o.max_fallback_steps;
    cfg.stage = "accuracy-aware quantize";
    QuantReport last;  // the report of the candidate the loop ends on
    auto rewrite = [&](ir::Model& cand, const std::vector<std::string>& keep) {
      last = QuantReport{};
      quantize_once(cand, o, keep, calib.get(), threads, last);
      if (keep.empty()) refuse_noop(last);
      std::vector<std::string> quantized;
      for (auto& n : last.nodes)
        if (n.how.rfind("skipped", 0) != 0) quantized.push_back(n.node);
      return quantized;
    };
    AccuracyAwareResult aa = accuracy_aware(m, rewrite, cfg, *ctx.data, ctx.progress);
    if (!aa.sensitivity.empty()) rep.extra["sensitivity"] = aa.sensitivity;
    rep.nodes = std::move(last.nodes);
    for (auto& [k, v] : last.extra.items()) rep.extra[k] = v;
    rep.extra["accuracy_aware"] = {{"goal", cfg.goal}, {"steps", aa.steps}, {"kept_float", aa.kept}, {"goal_met", aa.met}};
    rep.extra["goal_met"] = aa.met;
  }
  rep.extra["mode"] = o.mode;
  rep.extra["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ctx.report = rep.to_json();
}

}  // namespace
}  // namespace quant

PassInfo quantize_pass_info() {
  PassInfo p;
  p.name = "quantize";
  p.summary = "int8 dynamic, int8/int16 static QDQ (calibrated), int4/int8 weight-only (RTN, GPTQ, HQQ)";
  p.options = QuantizeOptions::table().specs();
  p.run = quant::run_quantize;
  p.check = quant::option_problems;
  return p;
}

}  // namespace slmops::passes
