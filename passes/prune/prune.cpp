// prune: weight sparsity of MatMul, Gemm and Conv, on the ONNX model directly (issue #17).
//
//   magnitude   zero the fraction `sparsity` of a weight's smallest |w| (per tensor, or one
//               threshold over every weight with `global`)
//   n:m         in every group of M consecutive weights along the reduction axis (K of MatMul's
//               B [K, N], the flattened C/g*kh*kw of a Conv output channel) keep the N largest
//   wanda       score |w_kn| * ||x_k|| (x_k: the layer input's feature k over calib-data), per
//               output n the lowest scores pruned (Sun et al. 2023); N:M with `pattern`
//   sparsegpt   the one-shot SparseGPT procedure (Frantar & Alistarh 2023): H = X^T X from
//               calib-data, input features taken in blocks of 128; in a block the weights with
//               the smallest w^2 / [H^-1]_kk^2 are pruned (unstructured: that fraction of the
//               block; N:M: per group), each pruned weight's error spread over the features
//               not yet visited through the Cholesky factor of H^-1 (GPTQ's, shared)
//   structured  whole MLP neurons and Conv channels removed, so tensors shrink (structured.h)
//
//   Before: Y = MatMul(A, W)       After: Y = MatMul(A, W') with W' holding exact zeros
// Except for structured, the graph does not change: only weight values. A weight read by several nodes is pruned once
// (by the first; wanda/sparsegpt need one layer input, so a shared weight is skipped there).
// Quantizing the result keeps the zeros (int4/int8 of 0 is exactly 0 in asymmetric blocks
// that contain 0 in their range, which every block does: its range includes 0).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "ir/error.h"
#include "passes/common/accuracy_aware.h"
#include "passes/common/node_filter.h"
#include "passes/progress.h"
#include "passes/prune/structured.h"
#include "passes/quant/block_quant.h"
#include "passes/quant/hessian.h"
#include "passes/registry.h"
#include "runtime/thread_pool.h"

namespace slmops::passes {
namespace {

struct PruneOptions {
  std::string method;
  double sparsity = 0.5;
  std::string pattern;  // "N:M"; default 2:4 for method n:m
  bool global = false;
  std::string importance = "auto";
  std::vector<std::string> structures;
  int64_t multiple_of = 1;
  bool compensate = true;
  std::vector<std::string> op_types, exclude_nodes, exclude_op_types;
  std::string calib_data, tokenizer;
  int64_t context_length = 0, calib_samples = 0, calib_batch_size = 1;
  double damp = 0.01;
  int64_t block = 128;
  std::string mask = "output";
  std::string max_degradation, eval_data;
  int64_t max_lowering_steps = 0;
  bool allow_noop = false;
  static const OptionTable<PruneOptions>& table() {
    using O = PruneOptions;
    const int64_t big = int64_t{1} << 40;
    static const OptionTable<O> t({
        {"method",
         &O::method,
         "magnitude, n:m, wanda, sparsegpt (zeros in place) or structured (whole MLP neurons and Conv channels "
         "removed: the model shrinks) (required)",
         {"magnitude", "n:m", "wanda", "sparsegpt", "structured"}},
        {"sparsity",
         &O::sparsity,
         "fraction of each weight set to zero (structured: of each layer's units removed)",
         {},
         false,
         {0, 1, false, true}},
        {"pattern",
         &O::pattern,
         "N:M: keep N of every M weights along the reduction axis (n:m default 2:4; wanda and "
         "sparsegpt: N:M instead of unstructured)",
         {}},
        {"global",
         &O::global,
         "magnitude: one threshold over every pruned weight instead of one per tensor; structured: one ranking of "
         "every unit (scores relative to their layer's mean)",
         {}},
        {"importance",
         &O::importance,
         "structured: how units are ranked: weight (norms of their weights), activation (||x|| * ||w|| on "
         "calib-data, Wanda's score of a whole input feature) or auto (activation when calib-data is given)",
         {"auto", "weight", "activation"},
         false,
         {},
         "method=structured"},
        {"structures",
         &O::structures,
         "structured: which units may go: ffn (MLP neurons), heads (attention heads: q/k/v columns, o rows, "
         "Reshape shapes rewritten), channels (Conv output channels) (default: all three)",
         {"ffn", "heads", "channels"},
         false,
         {},
         "method=structured"},
        {"compensate",
         &O::compensate,
         "structured, with calib-data: re-fit the weights of the MatMuls that read the removed units to what "
         "the kept units can carry (least squares on the layer input, the optimal-brain-surgeon update)",
         {},
         false,
         {},
         "method=structured"},
        {"multiple-of",
         &O::multiple_of,
         "structured: units kept per layer rounded up to a multiple of this (kernel-friendly sizes)",
         {},
         false,
         {1, 1 << 20},
         "method=structured"},
        {"op-types", &O::op_types, "op types whose weights are pruned (default MatMul, Gemm, Conv)", {}},
        {"exclude-nodes", &O::exclude_nodes, "node names or globs (* ?) left dense", {}},
        {"exclude-op-types", &O::exclude_op_types, "op types left dense", {}},
        {"calib-data",
         &O::calib_data,
         "wanda/sparsegpt (structured: for activation importance): calibration data (.npz, .jsonl or "
         "test_data_set folder)",
         {},
         true},
        {"tokenizer",
         &O::tokenizer,
         "tokenizer.json or its folder for JSONL text rows in calib-data/eval-data",
         {},
         true,
         {},
         "calib-data or eval-data"},
        {"context-length",
         &O::context_length,
         "text rows of calib-data/eval-data cut into windows of this many tokens",
         {},
         false,
         {0, 1 << 24},
         "calib-data or eval-data"},
        {"calib-samples", &O::calib_samples, "calibration samples to use (0: all)", {}, false, {0, big}, "calib-data"},
        {"calib-batch-size", &O::calib_batch_size, "samples per calibration run", {}, false, {1, 65536}, "calib-data"},
        {"damp",
         &O::damp,
         "sparsegpt: damping added to diag(H), as a fraction of its mean",
         {},
         false,
         {0, 1, true, true},
         "method=sparsegpt"},
        {"block",
         &O::block,
         "sparsegpt: input features per block (a multiple of M with pattern)",
         {},
         false,
         {1, 1 << 20},
         "method=sparsegpt"},
        {"mask",
         &O::mask,
         "sparsegpt unstructured: the weights of a block are compared per output (each output keeps its share, "
         "as wanda does) or across the block's outputs (the reference code)",
         {"output", "block"},
         false,
         {},
         "method=sparsegpt"},
        {"max-degradation",
         &O::max_degradation,
         "accuracy-aware: METRIC:VALUE (VALUE% for percent), e.g. accuracy:0.01 or perplexity:5%; the layers that "
         "add the most error get half their sparsity, then none, one at a time until the goal holds",
         {}},
        {"eval-data", &O::eval_data, "accuracy-aware: data the goal is measured on", {}, true, {}, "max-degradation"},
        {"max-lowering-steps",
         &O::max_lowering_steps,
         "accuracy-aware: layer lowerings at most (each halves one layer's sparsity; 0: no limit)",
         {},
         false,
         {0, big},
         "max-degradation"},
        {"allow-noop", &O::allow_noop, "write the model even when no weight is pruned (default: an error)", {}},
    });
    return t;
  }
};

// "N:M" -> {N, M}; {0, 0} when empty.
std::pair<int64_t, int64_t> parse_pattern(const std::string& s, Naming naming) {
  if (s.empty()) return {0, 0};
  const auto colon = s.find(':');
  int64_t n = -1, m = -1;
  try {
    if (colon != std::string::npos && colon > 0 && colon + 1 < s.size()) {
      size_t a = 0, b = 0;
      n = std::stoll(s.substr(0, colon), &a);
      m = std::stoll(s.substr(colon + 1), &b);
      if (a != colon || b != s.size() - colon - 1) n = -1;
    }
  } catch (const std::exception&) {
    n = -1;
  }
  if (n < 0 || m < 1 || n >= m || m > 256)
    bad_input("{} '{}': expected N:M with 0 <= N < M <= 256 (keep N of every M), e.g. 2:4",
              option_label("pattern", naming), s);
  return {n, m};
}

std::vector<std::string> option_problems(const nlohmann::json& j, Naming naming) {
  const PruneOptions o = PruneOptions::table().from_json(j);
  std::vector<std::string> p;
  auto L = [&](std::string_view name) { return option_label(name, naming); };
  if (o.method.empty())
    p.push_back(fmt::format("prune needs {} (magnitude, n:m, wanda, sparsegpt, structured)", L("method")));
  try {
    parse_pattern(o.pattern, naming);
  } catch (const Error& e) {
    p.push_back(e.what());
  }
  if ((o.method == "wanda" || o.method == "sparsegpt") && o.calib_data.empty())
    p.push_back(
        fmt::format("{} {} needs {} (it weighs weights by the layer inputs)", L("method"), o.method, L("calib-data")));
  if (o.method == "magnitude" && !o.pattern.empty())
    p.push_back(fmt::format("{} magnitude is unstructured; use {} n:m for a pattern", L("method"), L("method")));
  if (o.global && o.method != "magnitude" && o.method != "structured")
    p.push_back(fmt::format("{} is for {} magnitude or structured", L("global"), L("method")));
  if (o.method == "structured" && !o.pattern.empty())
    p.push_back(fmt::format("{} structured removes whole units; {} is for n:m, wanda and sparsegpt", L("method"),
                            L("pattern")));
  if (o.method == "structured" && o.importance == "activation" && o.calib_data.empty())
    p.push_back(fmt::format("{} activation needs {}", L("importance"), L("calib-data")));
  degradation_problems(o.max_degradation, o.eval_data, naming, p);
  return p;
}

// A weight seen as K reduction values for each of N outputs: element (k, n) at
// data[k * ks + n * ns].
struct Target {
  ir::Node* node;
  ir::Value* value;
  int64_t K, N, ks, ns;
  bool matmul_input;  // input 0 is the layer input with last dimension K (wanda/sparsegpt)
  float* at(int64_t k, int64_t n) const { return data + k * ks + n * ns; }
  float* data = nullptr;
  double sparsity = 0;  // unstructured: the fraction this weight loses
};

struct TensorReport {
  std::string node, op_type, weight;
  int64_t parameters = 0, zeros_before = 0, zeros_after = 0;
};

int64_t count_zeros(const Target& t) {
  int64_t z = 0;
  for (int64_t i = 0; i < t.K * t.N; ++i) z += t.data[i] == 0.0f;
  return z;
}

// Zeroes the `count` elements of `idx` (indices into t.data) with the smallest score.
void prune_smallest(float* data, std::vector<std::pair<float, int64_t>>& scored, int64_t count) {
  if (count <= 0) return;
  count = std::min<int64_t>(count, static_cast<int64_t>(scored.size()));
  std::nth_element(scored.begin(), scored.begin() + (count - 1), scored.end());
  for (int64_t i = 0; i < count; ++i) data[scored[static_cast<size_t>(i)].second] = 0.0f;
}

// Zeroes the fraction `sparsity` of the smallest |w| over all of `targets` together: the
// threshold from a copy of the magnitudes (4 bytes per weight), then every |w| below it and
// ties at it in model order until the count is reached.
void zero_smallest_magnitudes(const std::vector<Target*>& targets, double sparsity) {
  std::vector<float> all;
  for (const Target* t : targets)
    for (int64_t i = 0; i < t->K * t->N; ++i) all.push_back(std::fabs(t->data[i]));
  const auto drop = static_cast<int64_t>(std::floor(sparsity * static_cast<double>(all.size())));
  if (drop <= 0) return;
  std::nth_element(all.begin(), all.begin() + (drop - 1), all.end());
  const float thr = all[static_cast<size_t>(drop - 1)];
  std::vector<float>().swap(all);
  int64_t below = 0;
  for (const Target* t : targets)
    for (int64_t i = 0; i < t->K * t->N; ++i) below += std::fabs(t->data[i]) < thr;
  int64_t ties = drop - below;
  for (const Target* t : targets)
    for (int64_t i = 0; i < t->K * t->N; ++i) {
      const float a = std::fabs(t->data[i]);
      if (a < thr) {
        t->data[i] = 0.0f;
      } else if (a == thr && ties > 0) {
        t->data[i] = 0.0f;
        --ties;
      }
    }
}

// Per output n: in groups of M along k keep the N of highest score (score(k, n)).
template <typename Score>
void prune_nm(const Target& t, int64_t keep, int64_t m, Score score) {
  std::vector<std::pair<float, int64_t>> g;
  for (int64_t n = 0; n < t.N; ++n)
    for (int64_t k0 = 0; k0 < t.K; k0 += m) {
      g.clear();
      for (int64_t k = k0; k < std::min(t.K, k0 + m); ++k) g.push_back({score(k, n), k * t.ks + n * t.ns});
      const int64_t drop = static_cast<int64_t>(g.size()) * (m - keep) / m;  // a short last group drops its share
      prune_smallest(t.data, g, drop);
    }
}

// Per output n: the floor(sparsity * K) lowest scores.
template <typename Score>
void prune_rows(const Target& t, double sparsity, Score score) {
  const auto drop = static_cast<int64_t>(std::floor(sparsity * static_cast<double>(t.K)));
  std::vector<std::pair<float, int64_t>> g(static_cast<size_t>(t.K));
  for (int64_t n = 0; n < t.N; ++n) {
    for (int64_t k = 0; k < t.K; ++k) g[static_cast<size_t>(k)] = {score(k, n), k * t.ks + n * t.ns};
    prune_smallest(t.data, g, drop);
  }
}

// SparseGPT on a weight in MatMul's layout [K, N] (a copy), H [K, K].
void sparsegpt(const Target& t, const std::vector<double>& H, double sparsity, int64_t keep, int64_t m, double damp,
               int64_t block, bool per_output, runtime::ThreadPool* pool) {
  const int64_t K = t.K, N = t.N;
  std::vector<float> W(static_cast<size_t>(K * N));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) W[static_cast<size_t>(k * N + n)] = *t.at(k, n);
  for (int64_t k = 0; k < K; ++k)  // dead inputs: their weights never matter
    if (H[static_cast<size_t>(k * K + k)] == 0) std::fill_n(W.begin() + k * N, N, 0.0f);
  double mean_diag = 0;
  for (int64_t k = 0; k < K; ++k)
    mean_diag += H[static_cast<size_t>(k * K + k)] == 0 ? 1.0 : H[static_cast<size_t>(k * K + k)];
  mean_diag /= static_cast<double>(std::max<int64_t>(K, 1));
  std::vector<int64_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  std::vector<float> U;
  for (int attempt = 0;; ++attempt) {
    if (quant::inverse_cholesky_upper(H, perm, damp * mean_diag, U, pool)) break;
    if (attempt == 4)
      failure("sparsegpt: node '{}': the Hessian of its [{} x {}] weight is not positive definite even with damp {}",
              t.node->name, K, N, damp);
    damp = damp > 0 ? damp * 10 : 0.01;
  }
  if (m > 0) block = std::max<int64_t>(m, block / m * m);
  std::vector<uint8_t> pruned(static_cast<size_t>(block * N));
  std::vector<float> E(static_cast<size_t>(block * N));
  std::vector<std::pair<float, int64_t>> scored;
  for (int64_t i1 = 0; i1 < K; i1 += block) {
    const int64_t i2 = std::min(K, i1 + block);
    std::fill(pruned.begin(), pruned.end(), uint8_t{0});
    if (m == 0) {  // unstructured: the lowest w^2 / U_kk^2 of the block as its rows are now
      auto choose = [&](int64_t n0, int64_t n1) {  // over outputs [n0, n1) together
        scored.clear();
        for (int64_t k = i1; k < i2; ++k) {
          const double d = U[static_cast<size_t>(k * K + k)];
          for (int64_t n = n0; n < n1; ++n) {
            const double w = W[static_cast<size_t>(k * N + n)];
            scored.push_back({static_cast<float>(w * w / (d * d)), (k - i1) * N + n});
          }
        }
        const auto drop = static_cast<int64_t>(std::floor(sparsity * static_cast<double>(scored.size())));
        if (drop <= 0) return;
        std::nth_element(scored.begin(), scored.begin() + (drop - 1), scored.end());
        for (int64_t i = 0; i < drop; ++i) pruned[static_cast<size_t>(scored[static_cast<size_t>(i)].second)] = 1;
      };
      if (per_output)
        for (int64_t n = 0; n < N; ++n) choose(n, n + 1);
      else
        choose(0, N);
    }
    for (int64_t i = i1; i < i2; ++i) {
      if (m > 0 && (i - i1) % m == 0) {  // N:M: each group chosen when its first row is reached
        const int64_t g2 = std::min(i2, i + m), drop = (g2 - i) * (m - keep) / m;
        for (int64_t n = 0; n < N; ++n) {
          scored.clear();
          for (int64_t k = i; k < g2; ++k) {
            const double d = U[static_cast<size_t>(k * K + k)], w = W[static_cast<size_t>(k * N + n)];
            scored.push_back({static_cast<float>(w * w / (d * d)), (k - i1) * N + n});
          }
          if (drop > 0) {
            std::nth_element(scored.begin(), scored.begin() + (drop - 1), scored.end());
            for (int64_t j = 0; j < drop; ++j) pruned[static_cast<size_t>(scored[static_cast<size_t>(j)].second)] = 1;
          }
        }
      }
      const float d = U[static_cast<size_t>(i * K + i)];
      float* w = W.data() + i * N;
      float* e = E.data() + (i - i1) * N;
      const uint8_t* p = pruned.data() + (i - i1) * N;
      for (int64_t n = 0; n < N; ++n) {
        const float q = p[n] ? 0.0f : w[n];
        e[n] = (w[n] - q) / d;
        w[n] = q;
      }
      for (int64_t k = i + 1; k < i2; ++k) {
        const float u = U[static_cast<size_t>(i * K + k)];
        float* wk = W.data() + k * N;
        for (int64_t n = 0; n < N; ++n) wk[n] -= u * e[n];
      }
    }
    // The rest of W absorbs the block's errors: W[i2:] -= U[i1:i2, i2:]^T E.
    auto update = [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        float* wk = W.data() + k * N;
        for (int64_t i = i1; i < i2; ++i) {
          const float u = U[static_cast<size_t>(i * K + k)];
          if (u == 0.0f) continue;
          const float* e = E.data() + (i - i1) * N;
          for (int64_t n = 0; n < N; ++n) wk[n] -= u * e[n];
        }
      }
    };
    if (pool)
      pool->parallel_for(K - i2, 16, [&](int64_t a, int64_t b) { update(i2 + a, i2 + b); });
    else
      update(i2, K);
  }
  // Pruned weights are exact zeros (the updates never touch a row already visited).
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) *t.at(k, n) = W[static_cast<size_t>(k * N + n)];
}

// One pruning of `m` with every selected weight outside `dense` (node names); the report.
nlohmann::json prune_once(ir::Model& m, const PruneOptions& o, const std::map<std::string, int>& lowered,
                          const FeedSource* calib, PassContext& ctx, Progress* progress) {
  ir::Graph& g = *m.graph;
  NodeFilter f({o.op_types, o.exclude_nodes, o.exclude_op_types}, {"MatMul", "Gemm", "Conv"});
  const auto missing = f.unmatched(g);
  if (!missing.empty())
    bad_input("--exclude-nodes '{}': no node of {} has that name", missing.front(),
              m.path.empty() ? "the model" : m.path);
  if (o.method == "structured") {
    StructuredConfig c;
    c.sparsity = o.sparsity;
    c.global = o.global;
    c.importance = o.importance == "auto" ? (o.calib_data.empty() ? "weight" : "activation") : o.importance;
    c.multiple_of = o.multiple_of;
    c.structures = std::set<std::string>(o.structures.begin(), o.structures.end());
    c.filter = &f;
    c.lowered = lowered;
    c.calib_samples = o.calib_samples;
    c.threads = std::max(1, ctx.threads);
    c.compensate = o.compensate;
    c.allow_noop = o.allow_noop;
    c.calib = calib;
    nlohmann::json r = prune_structured(m, c, progress);
    nlohmann::json report = {
        {"method", o.method}, {"importance", c.importance}, {"sparsity_requested", o.sparsity}, {"global", o.global}};
    int64_t units = 0, kept = 0;
    for (auto& gr : r["groups"]) {
      units += gr["units_before"].get<int64_t>();
      kept += gr["units_after"].get<int64_t>();
    }
    report["units_before"] = units;
    report["units_after"] = kept;
    report["units_removed"] = units ? double(units - kept) / double(units) : 0.0;
    for (auto& [k, v] : r.items()) report[k] = v;
    if (calib) report["calibration"] = {{"data", calib->describe()}};
    return report;
  }
  const auto [keep, group] = parse_pattern(o.method == "n:m" && o.pattern.empty() ? "2:4" : o.pattern, Naming::Recipe);
  const bool needs_data = o.method == "wanda" || o.method == "sparsegpt";
  ir::align_initializers(m);

  // The targets, checked before anything changes.
  std::vector<Target> targets;
  std::vector<nlohmann::json> skipped;
  std::set<const ir::Value*> seen;
  std::map<const ir::Value*, int> readers;
  for (auto& up : g.nodes())
    for (ir::Value* in : up->inputs)
      if (in) ++readers[in];
  for (auto& up : g.nodes()) {
    ir::Node* n = up.get();
    const auto lv = lowered.find(n->name);
    const int level = lv == lowered.end() ? 0 : lv->second;  // accuracy-aware: halved once, then dense
    if (!f.allows(*n) || level >= 2 || (level == 1 && (group > 0 || o.global))) continue;
    const bool conv = n->op_type == "Conv";
    const size_t wi = n->op_type == "MatMul" || n->op_type == "Gemm" || conv ? 1 : SIZE_MAX;
    ir::Value* wv = wi < n->inputs.size() ? n->inputs[wi] : nullptr;
    auto skip = [&](const std::string& why) {
      skipped.push_back({{"node", n->name}, {"op_type", n->op_type}, {"why", why}});
    };
    if (!wv || !wv->initializer || wv->initializer->dtype != ir::DType::Float) {
      skip("the weight is not a float32 initializer");
      continue;
    }
    const ir::Tensor& w = *wv->initializer;
    if (seen.count(wv)) continue;  // shared: pruned once
    Target t{n, wv, 0, 0, 0, 0, false};
    t.sparsity = o.sparsity / (1 << level);
    if (n->op_type == "MatMul" && w.dims.size() == 2) {
      t.K = w.dims[0];
      t.N = w.dims[1];
      t.ks = t.N;
      t.ns = 1;
      t.matmul_input = true;
    } else if (n->op_type == "Gemm" && w.dims.size() == 2 && n->attr_int("transA", 0) == 0) {
      const bool tb = n->attr_int("transB", 0) != 0;
      t.K = w.dims[tb ? 1 : 0];
      t.N = w.dims[tb ? 0 : 1];
      t.ks = tb ? 1 : t.N;
      t.ns = tb ? t.K : 1;
      t.matmul_input = true;
    } else if (conv && w.dims.size() >= 3) {
      t.N = w.dims[0];
      t.K = static_cast<int64_t>(w.numel()) / std::max<int64_t>(t.N, 1);
      t.ks = 1;
      t.ns = t.K;
    } else {
      skip(fmt::format("a weight of shape [{}] is not a MatMul/Gemm matrix or a Conv kernel", fmt::join(w.dims, ", ")));
      continue;
    }
    if (needs_data && (!t.matmul_input || readers[wv] > 1)) {
      skip(o.method + " weighs by the layer input: MatMul/Gemm weights read by one node only");
      continue;
    }
    seen.insert(wv);
    targets.push_back(t);
  }
  if (targets.empty() && !o.allow_noop && lowered.empty())
    bad_input(
        "{}: nothing to prune: no MatMul/Gemm/Conv node with a float32 weight initializer{}; --allow-noop writes "
        "it anyway",
        m.path.empty() ? "the model" : m.path,
        skipped.empty() ? std::string()
                        : fmt::format(" (node '{}': {})", skipped[0]["node"].get<std::string>(),
                                      skipped[0]["why"].get<std::string>()));

  // Writable copies of the weights (a mapped file is never written through).
  for (auto& t : targets) {
    ir::Tensor copy =
        ir::Tensor::make(t.value->initializer->name, ir::DType::Float, t.value->initializer->dims,
                         ir::Buffer::copy_of(t.value->initializer->data.data(), t.value->initializer->data.size()));
    t.value->initializer = std::make_shared<ir::Tensor>(std::move(copy));  // never the tensor others share
    t.data = reinterpret_cast<float*>(t.value->initializer->data.mutable_data());
  }
  std::vector<TensorReport> reps;
  for (auto& t : targets) reps.push_back({t.node->name, t.node->op_type, t.value->name, t.K * t.N, count_zeros(t), 0});

  runtime::ThreadPool pool(std::max(1, ctx.threads));
  nlohmann::json calib_report;
  ProgressStage stage(progress, fmt::format("prune {}", o.method), static_cast<int64_t>(targets.size()), "weights");
  if (needs_data && !targets.empty()) {
    // Sequential, as both papers do: the weights reading one layer input are pruned together,
    // on statistics of that input as the model computes it with every earlier layer already
    // pruned (one calibration pass per distinct layer input: q/k/v share one, gate/up another).
    std::vector<std::string> order;
    std::map<std::string, std::vector<Target*>> groups;
    for (auto& t : targets) {
      const std::string& a = t.node->inputs[0]->name;
      if (!groups.count(a)) order.push_back(a);
      groups[a].push_back(&t);
    }
    int64_t batches = 0, done = 0;
    for (const std::string& a : order) {
      std::vector<quant::HessianTarget> ht;
      for (Target* t : groups[a]) ht.push_back({t->node, t->K});
      const auto H = quant::collect_hessians(m, ht, *calib, o.calib_samples, pool, std::max(1, ctx.threads), batches,
                                             o.method == "wanda");
      for (Target* tp : groups[a]) {
        const Target& t = *tp;
        stage.update(done++, t.node->name);
        const auto& h = H.at(t.node);
        if (o.method == "wanda") {
          auto score = [&](int64_t k, int64_t n) {
            return static_cast<float>(std::fabs(*t.at(k, n)) * std::sqrt(h[static_cast<size_t>(k)]));
          };
          if (group > 0)
            prune_nm(t, keep, group, score);
          else
            prune_rows(t, t.sparsity, score);
        } else {
          sparsegpt(t, h, t.sparsity, keep, group, o.damp, o.block, o.mask == "output", &pool);
        }
      }
    }
    calib_report = {{"data", calib->describe()}, {"batches", batches}, {"passes", order.size()}};
    stage.update(done);
  } else if (o.method == "magnitude" && o.global) {
    std::vector<Target*> all;
    for (auto& t : targets) all.push_back(&t);
    zero_smallest_magnitudes(all, o.sparsity);
  } else {
    int64_t done = 0;
    for (auto& t : targets) {
      stage.update(done++, t.node->name);
      auto magnitude = [&](int64_t k, int64_t n) { return std::fabs(*t.at(k, n)); };
      if (o.method == "magnitude") {
        zero_smallest_magnitudes({&t}, t.sparsity);
      } else {
        prune_nm(t, keep, group, magnitude);
      }
    }
    stage.update(done);
  }

  int64_t params = 0, zeros_before = 0, zeros_after = 0;
  nlohmann::json tensors = nlohmann::json::array();
  for (size_t i = 0; i < targets.size(); ++i) {
    reps[i].zeros_after = count_zeros(targets[i]);
    params += reps[i].parameters;
    zeros_before += reps[i].zeros_before;
    zeros_after += reps[i].zeros_after;
    tensors.push_back(
        {{"node", reps[i].node},
         {"op_type", reps[i].op_type},
         {"weight", reps[i].weight},
         {"parameters", reps[i].parameters},
         {"zeros_before", reps[i].zeros_before},
         {"zeros_after", reps[i].zeros_after},
         {"sparsity", reps[i].parameters ? double(reps[i].zeros_after) / double(reps[i].parameters) : 0.0}});
  }
  nlohmann::json report = {{"method", o.method},
                           {"pattern", group > 0 ? fmt::format("{}:{}", keep, group) : std::string()},
                           {"sparsity_requested", group > 0 ? 1.0 - double(keep) / double(group) : o.sparsity},
                           {"pruned_parameters", params},
                           {"zeros_before", zeros_before},
                           {"zeros_after", zeros_after},
                           {"sparsity", params ? double(zeros_after) / double(params) : 0.0},
                           {"model_float_parameters", float_parameters(g)},
                           {"tensors", tensors},
                           {"skipped", skipped}};
  if (!calib_report.is_null()) report["calibration"] = calib_report;
  return report;
}

// Whether a run reads calib-data: wanda and sparsegpt always; structured to rank units by
// activations (the default with data) or to re-fit their readers.
bool uses_calib(const PruneOptions& o) {
  if (o.calib_data.empty()) return false;
  if (o.method == "wanda" || o.method == "sparsegpt") return true;
  return o.method == "structured" && (o.importance != "weight" || o.compensate);
}

void run_prune(ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  const PruneOptions o = PruneOptions::table().from_json(j);
  const TextData text{o.tokenizer, o.context_length};
  // Opened once: every round of the accuracy-aware loop calibrates on the same source.
  std::unique_ptr<FeedSource> calib;
  if (uses_calib(o)) {
    if (!ctx.data || !ctx.data->open) bad_input("prune: this caller cannot read calibration data");
    calib = ctx.data->open(o.calib_data, m, o.calib_batch_size, text);
  }
  if (o.max_degradation.empty()) {
    ctx.report = prune_once(m, o, {}, calib.get(), ctx, ctx.progress);
  } else {
    if (!ctx.data || !ctx.data->measure || !ctx.data->open)
      bad_input("prune: this caller cannot evaluate models (--max-degradation)");
    auto eval = ctx.data->open(o.eval_data, m, 1, text);
    AccuracyAwareConfig cfg =
        accuracy_aware_config(o.max_degradation, o.eval_data, text, calib ? calib.get() : eval.get(), o.calib_samples,
                              std::max(1, ctx.threads), ctx.verbosity);
    cfg.max_steps = o.max_lowering_steps;
    cfg.kept_as = "lowered (sparsity halved; named twice: dense)";
    cfg.kept_key = "lowered";
    cfg.levels = 2;
    cfg.stage = "accuracy-aware prune";
    nlohmann::json last;  // the report of the candidate the loop ends on
    auto rewrite = [&](ir::Model& cand, const std::vector<std::string>& kept) {
      std::map<std::string, int> lowered;
      for (const std::string& k : kept) ++lowered[k];
      last = prune_once(cand, o, lowered, calib.get(), ctx, nullptr);
      std::vector<std::string> pruned;  // the nodes whose outputs are compared
      if (last.contains("groups"))
        for (auto& gr : last["groups"])
          for (auto& r : gr["readers"]) pruned.push_back(r.get<std::string>());
      else
        for (auto& t : last["tensors"]) pruned.push_back(t["node"].get<std::string>());
      return pruned;
    };
    AccuracyAwareResult aa = accuracy_aware(m, rewrite, cfg, *ctx.data, ctx.progress);
    ctx.report = std::move(last);
    if (!aa.sensitivity.empty()) ctx.report["sensitivity"] = aa.sensitivity;
    ctx.report["accuracy_aware"] = {
        {"goal", cfg.goal}, {"steps", aa.steps}, {"lowered", aa.kept}, {"goal_met", aa.met}};
    ctx.report["goal_met"] = aa.met;
  }
  ctx.report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

PassInfo prune_pass_info() {
  PassInfo p;
  p.name = "prune";
  p.summary =
      "weight sparsity of MatMul/Gemm/Conv: magnitude, N:M, Wanda, SparseGPT (zeros in place), structured (MLP "
      "neurons and Conv channels removed)";
  p.options = PruneOptions::table().specs();
  p.run = run_prune;
  p.check = option_problems;
  return p;
}

}  // namespace slmops::passes
