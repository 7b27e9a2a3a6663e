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
#include "passes/quant/quantize.h"
#include "passes/registry.h"
#include "runtime/executor.h"

namespace slmops::passes {

const OptionTable<QuantizeOptions>& QuantizeOptions::table() {
  using Q = QuantizeOptions;
  static const OptionTable<Q> t({
      {"mode", &Q::mode, "what to quantize and how", {"int8-dynamic", "int8-static", "int16-static", "int4-weight", "int8-weight"}},
      {"op-types", &Q::op_types, "op types to quantize (default: the mode's set)", {}},
      {"exclude-nodes", &Q::exclude_nodes, "node names or globs (* ?) to keep float", {}},
      {"exclude-op-types", &Q::exclude_op_types, "op types to keep float", {}},
      {"keep-io-types", &Q::keep_io_types, "graph inputs and outputs keep their float types (every mode does; false is refused)", {}},
      {"per-channel", &Q::per_channel, "dynamic/static: one weight scale per output channel", {}},
      {"symmetric", &Q::symmetric, "weight-only: symmetric blocks (no zero points); default asymmetric (zero points), ORT's quantizer-class default", {}},
      {"block-size", &Q::block_size, "weight-only: values per scale along K (16..256, a power of two)", {}},
      {"accuracy-level", &Q::accuracy_level, "MatMulNBits accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)", {}},
      {"format", &Q::format, "weight-only: com.microsoft MatMulNBits, or ONNX blocked DequantizeLinear (opset 21)", {"matmulnbits", "qdq"}},
      {"algorithm", &Q::algorithm, "weight-only: round-to-nearest, GPTQ (needs calib-data) or HQQ", {"rtn", "gptq", "hqq"}},
      {"quantize-embeddings", &Q::quantize_embeddings, "weight-only: also Gather on a float table (as DequantizeLinear)", {}},
      {"gptq-damp", &Q::gptq_damp, "GPTQ: damping added to diag(H), as a fraction of its mean", {}},
      {"gptq-act-order", &Q::gptq_act_order, "GPTQ: quantize input features by decreasing diag(H)", {}},
      {"hqq-iterations", &Q::hqq_iterations, "HQQ: optimisation steps per block", {}},
      {"calib-data", &Q::calib_data, "calibration data: .npz, .jsonl or test_data_set folder", {}, true},
      {"calib-method", &Q::calib_method, "static: activation ranges from", {"minmax", "entropy", "percentile"}},
      {"calib-percentile", &Q::calib_percentile, "static: percentile of |x| kept by --calib-method percentile", {}},
      {"calib-samples", &Q::calib_samples, "calibration samples to use (0: all)", {}},
      {"calib-batch-size", &Q::calib_batch_size, "samples per calibration run", {}},
      {"symmetric-activations", &Q::symmetric_activations, "static: signed symmetric activations (zero point 0)", {}},
      {"max-degradation", &Q::max_degradation,
       "accuracy-aware: METRIC:VALUE (VALUE% for percent), e.g. accuracy:0.005 or perplexity:1%", {}},
      {"eval-data", &Q::eval_data, "accuracy-aware: data the goal is measured on", {}, true},
      {"max-fallback-steps", &Q::max_fallback_steps, "accuracy-aware: nodes returned to float at most (0: no limit)", {}},
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

// Everything a user can get wrong, checked before any work is done.
void check_options(const QuantizeOptions& o, const ir::Model& m, const PassContext& ctx) {
  if (o.mode.empty())
    bad_input("quantize needs --mode (int8-dynamic, int8-static, int16-static, int4-weight, int8-weight)");
  if (is_weight_only(o.mode)) {
    int64_t b = o.block_size;
    if (b < 16 || b > 256 || (b & (b - 1)) != 0)
      bad_input("--block-size {}: must be a power of two from 16 to 256", b);
    if (o.accuracy_level < 0 || o.accuracy_level > 4) bad_input("--accuracy-level {}: must be 0 to 4", o.accuracy_level);
    if (o.algorithm == "gptq" && o.calib_data.empty())
      bad_input("--algorithm gptq needs --calib-data (the layer inputs give its Hessian)");
    if (o.format == "qdq" && o.algorithm != "rtn" && o.algorithm != "gptq" && o.algorithm != "hqq")
      bad_input("--algorithm {}: unknown", o.algorithm);
    if (o.hqq_iterations < 1) bad_input("--hqq-iterations must be at least 1");
    if (o.gptq_damp <= 0 || o.gptq_damp >= 1) bad_input("--gptq-damp {}: must be in (0, 1)", o.gptq_damp);
  }
  if (is_static(o.mode) && o.calib_data.empty())
    bad_input("--mode {} needs --calib-data (activation ranges come from running the model on it)", o.mode);
  if (is_static(o.mode) && (o.calib_percentile <= 0 || o.calib_percentile > 100))
    bad_input("--calib-percentile {}: must be in (0, 100]", o.calib_percentile);
  if (!o.keep_io_types)
    bad_input("--keep-io-types false: no mode changes the graph's input or output types (quantized values stay "
              "inside the graph); this option exists so that recipes can say so explicitly");
  if (o.calib_samples < 0) bad_input("--calib-samples must be 0 (all) or more");
  if (o.calib_batch_size < 1) bad_input("--calib-batch-size must be at least 1");
  if (!o.max_degradation.empty() && o.eval_data.empty())
    bad_input("--max-degradation needs --eval-data (the data the goal is measured on)");
  if ((!o.calib_data.empty() || !o.eval_data.empty()) && (!ctx.data || !ctx.data->open))
    bad_input("quantize: this caller cannot read calibration data");
  refuse_quantized(m);
  NodeFilter f(o, default_op_types(o));
  auto missing = f.unmatched(*m.graph);
  if (!missing.empty())
    bad_input("--exclude-nodes '{}': no node of {} has that name", missing.front(),
              m.path.empty() ? "the model" : m.path);
}

void quantize_once(ir::Model& m, const QuantizeOptions& o, const std::vector<std::string>& fallback,
                   const FeedSource* calib, int threads, QuantReport& rep) {
  QuantizeOptions eff = o;
  eff.exclude_nodes.insert(eff.exclude_nodes.end(), fallback.begin(), fallback.end());
  NodeFilter f(eff, default_op_types(eff));
  if (is_weight_only(o.mode)) quantize_weight_only(m, eff, f, calib, threads, rep);
  else if (o.mode == "int8-dynamic") quantize_dynamic(m, eff, f, threads, rep);
  else quantize_static(m, eff, f, *calib, threads, rep);
}

// METRIC:VALUE or METRIC:VALUE% -> an Olive goal text the evaluator understands.
std::string goal_text(const std::string& spec) {
  auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= spec.size())
    bad_input("--max-degradation '{}': expected METRIC:VALUE, e.g. accuracy:0.005 or perplexity:1%", spec);
  std::string metric = spec.substr(0, colon), value = spec.substr(colon + 1);
  bool percent = value.back() == '%';
  if (percent) value.pop_back();
  try {
    size_t used = 0;
    double v = std::stod(value, &used);
    if (used != value.size() || v < 0) throw std::invalid_argument("x");
  } catch (const std::exception&) {
    bad_input("--max-degradation '{}': '{}' is not a non-negative number", spec, value);
  }
  return fmt::format("{}:{}:{}", metric, percent ? "percent-max-degradation" : "max-degradation", value);
}

// Sensitivity of each quantized node: the error it adds, measured on the calibration (or
// evaluation) batches as the normalized squared error of its output in the quantized model
// against the float model, minus that of its first input (error carried in from upstream).
std::vector<std::pair<std::string, double>> node_sensitivity(const ir::Model& fl, const ir::Model& q,
                                                             const std::vector<std::string>& nodes,
                                                             const FeedSource& data, int64_t limit, int threads) {
  struct Probe {
    std::string node, out, in;
  };
  std::vector<Probe> probes;
  std::set<std::string> inputs_of_graph;
  for (auto& i : fl.graph->inputs) inputs_of_graph.insert(i.value->name);
  std::set<std::string> wanted;
  for (auto& n : fl.graph->nodes()) {
    if (std::find(nodes.begin(), nodes.end(), n->name) == nodes.end()) continue;
    if (n->outputs.empty() || !n->outputs[0]) continue;
    Probe p{n->name, n->outputs[0]->name, ""};
    if (!n->inputs.empty() && n->inputs[0] && n->inputs[0]->kind == ir::Value::Kind::NodeOutput)
      p.in = n->inputs[0]->name;
    wanted.insert(p.out);
    if (!p.in.empty()) wanted.insert(p.in);
    probes.push_back(p);
  }
  std::vector<std::string> names(wanted.begin(), wanted.end());
  // Only names that exist in both graphs can be compared.
  names.erase(std::remove_if(names.begin(), names.end(), [&](const std::string& s) { return !q.graph->find_value(s); }),
              names.end());
  runtime::RunOptions ro;
  ro.extra_outputs = names;
  runtime::Session sf(fl, threads), sq(q, threads);
  std::map<std::string, std::pair<double, double>> err;  // name -> (sum (q-f)^2, sum f^2)
  size_t n_out = fl.graph->outputs.size();
  data.for_each_batch(limit, [&](std::vector<runtime::RValue> feeds) {
    auto a = sf.run(feeds, ro);
    auto b = sq.run(std::move(feeds), ro);
    for (size_t k = 0; k < names.size(); ++k) {
      const auto& x = a[n_out + k];
      const auto& y = b[q.graph->outputs.size() + k];
      if (!x.is_tensor() || !y.is_tensor() || x.tensor.dtype != ir::DType::Float || y.tensor.dtype != ir::DType::Float ||
          x.tensor.numel() != y.tensor.numel())
        continue;
      const float* p = x.tensor.values<float>();
      const float* r = y.tensor.values<float>();
      double num = 0, den = 0;
      for (uint64_t i = 0; i < x.tensor.numel(); ++i) {
        double d = double(r[i]) - double(p[i]);
        num += d * d;
        den += double(p[i]) * double(p[i]);
      }
      auto& e = err[names[k]];
      e.first += num;
      e.second += den;
    }
  });
  auto nmse = [&](const std::string& s) {
    auto it = err.find(s);
    if (it == err.end() || it->second.second == 0) return 0.0;
    return it->second.first / it->second.second;
  };
  std::vector<std::pair<std::string, double>> out;
  for (auto& p : probes) out.push_back({p.node, nmse(p.out) - (p.in.empty() ? 0.0 : nmse(p.in))});
  std::stable_sort(out.begin(), out.end(), [](auto& x, auto& y) { return x.second > y.second; });
  return out;
}

void run_quantize(ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
  auto t0 = std::chrono::steady_clock::now();
  QuantizeOptions o = QuantizeOptions::table().from_json(j);
  check_options(o, m, ctx);
  ir::align_initializers(m);  // weights are read as float*; mapped ones may sit at odd offsets
  std::unique_ptr<FeedSource> calib;
  if (!o.calib_data.empty()) calib = ctx.data->open(o.calib_data, m, o.calib_batch_size);
  int threads = std::max(1, ctx.threads);

  QuantReport rep;
  if (o.max_degradation.empty()) {
    quantize_once(m, o, {}, calib.get(), threads, rep);
  } else {
    if (!ctx.data->measure) bad_input("quantize: this caller cannot evaluate models (--max-degradation)");
    std::string goal = goal_text(o.max_degradation);
    auto eval = ctx.data->open(o.eval_data, m, 1);
    ir::Model fl = m.clone();
    std::vector<std::string> fallback;
    nlohmann::json steps = nlohmann::json::array();
    std::vector<std::pair<std::string, double>> ranking;
    size_t next = 0;
    bool met = false;
    while (true) {
      ir::Model cand = fl.clone();
      QuantReport r;
      quantize_once(cand, o, fallback, calib.get(), threads, r);
      nlohmann::json res = ctx.data->measure(cand, fl, o.eval_data, goal);
      met = res.value("met", false);
      steps.push_back({{"kept_float", fallback}, {"value", res["value"]}, {"baseline", res["baseline"]}, {"met", met}});
      if (ctx.verbosity >= 1)
        fmt::print(stderr, "slmops: accuracy-aware step {}: {} node(s) kept float, {} = {} (float {}): {}\n",
                   steps.size(), fallback.size(), goal.substr(0, goal.find(':')), res["value"].dump(),
                   res["baseline"].dump(), met ? "goal met" : "goal missed");
      bool last = met || (o.max_fallback_steps > 0 && static_cast<int64_t>(fallback.size()) >= o.max_fallback_steps);
      if (!last && ranking.empty()) {
        std::vector<std::string> quantized;
        for (auto& n : r.nodes)
          if (n.how.rfind("skipped", 0) != 0) quantized.push_back(n.node);
        const FeedSource& sdata = calib ? *calib : *eval;
        ranking = node_sensitivity(fl, cand, quantized, sdata, o.calib_samples, threads);
        nlohmann::json sens = nlohmann::json::array();
        for (auto& [name, e] : ranking) sens.push_back({{"node", name}, {"added_nmse", e}});
        rep.extra["sensitivity"] = sens;
      }
      if (last || next >= ranking.size()) {
        m = std::move(cand);
        rep.nodes = std::move(r.nodes);
        for (auto& [k, v] : r.extra.items()) rep.extra[k] = v;
        break;
      }
      fallback.push_back(ranking[next++].first);
    }
    rep.extra["accuracy_aware"] = {{"goal", goal}, {"steps", steps}, {"kept_float", fallback}, {"goal_met", met}};
    rep.extra["goal_met"] = met;
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
  return p;
}

}  // namespace slmops::passes
