#include "runtime/executor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <unordered_set>

#include "ir/edit.h"
#include "ir/error.h"

namespace slmops::runtime {

struct GraphRunner::Step {
  const ir::Node* node;
  std::shared_ptr<Kernel> kernel;  // shared by the step's copy in the integer QDQ plan
  std::vector<int> in_refs;     // see GraphRunner::resolve
  std::vector<int> out_slots;   // -1: omitted
  std::vector<int> free_after;  // slots whose last reader is this step
  // Folded at plan time: the outputs (also as constants), for RunOptions::on_node.
  bool folded = false;
  std::vector<RValue> folded_outputs;
  // Fusion (kFusionRules: Relu, Clip with constant bounds; OpContext::fused_clamp): the
  // producer has fuses_clamp and the bounds; on the Relu or Clip step that is its output's only
  // reader, the producer's index. Done in runs without on_node and without the producer's
  // output among the extra outputs; otherwise both steps run as planned.
  bool fuses_clamp = false;
  float clamp_lo = 0.0f, clamp_hi = 0.0f;
  int clamp_producer = -1;
};

std::string node_label(const ir::Node& n) {
  return n.name.empty() ? fmt::format("({} node)", n.op_type) : fmt::format("'{}'", n.name);
}

// Ops whose result is not a function of their inputs alone.
static bool nondeterministic(const ir::Node& n) {
  static const std::unordered_set<std::string> ops = {"RandomNormal", "RandomUniform", "RandomNormalLike",
                                                      "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"};
  return ops.count(n.op_type) > 0;
}

bool GraphRunner::try_fold(Step& step, ThreadPool& pool) {
  const ir::Node& n = *step.node;
  if (n.has_subgraphs() || !n.implicit_inputs.empty() || nondeterministic(n) || n.outputs.empty()) return false;
  for (int r : step.in_refs)
    if (r >= 0) return false;
  OpContext ctx;
  ctx.pool = &pool;
  ctx.node = &n;
  for (int r : step.in_refs) ctx.inputs.push_back(resolve(r, {}));
  std::vector<RValue> outs(n.outputs.size());
  ctx.outputs = &outs;
  try {
    step.kernel->run(ctx);
  } catch (const std::exception&) {
    return false;  // left to fail at run time, with the run's message
  }
  for (const RValue& v : outs)
    if (!v.is_tensor() || v.optional || v.tensor.nbytes() > kMaxFoldedBytes) return false;
  for (size_t k = 0; k < outs.size(); ++k) {
    const ir::Value* v = n.outputs[k];
    if (!v) continue;
    ref_[v] = kConst - static_cast<int>(constants_.size());
    constants_.push_back(outs[k]);
  }
  step.folded = true;
  step.folded_outputs = std::move(outs);
  ++folded_count_;
  return true;
}

GraphRunner::GraphRunner(const ir::Graph& g, const PlanContext& pc) : graph_(g), session_constants_(pc.constants) {
  auto slot_for = [&](const ir::Value* v) {
    auto [it, inserted] = ref_.try_emplace(v, slot_count_);
    if (inserted) ++slot_count_;
    return it->second;
  };
  for (auto& vi : g.inputs)
    if (vi.value) input_slots_.push_back(slot_for(vi.value));
  for (const ir::Value* v : g.initializers) {
    const Tensor& t = *v->initializer;
    if (!v->consumers.empty() &&
        (t.dtype == ir::DType::Undefined || (t.dtype != ir::DType::String && t.data.size() != t.nbytes())))
      bad_input("initializer '{}' ({}) has data the executor cannot read (an unknown type, or a stored form it "
                "does not decode)",
                v->name, ir::dtype_name(t.dtype));
    if (ref_.count(v)) {  // a graph input with a default: fed or not, per run
      pc.constant(v);     // its aligned copy, if it needs one, is made now: runs only read the table
      defaults_.emplace_back(ref_.at(v), v);
    } else if (v->kind == ir::Value::Kind::Initializer) {
      ref_[v] = kConst - static_cast<int>(constants_.size());
      constants_.push_back(RValue::of(pc.constant(v)));
    } else {
      pc.constant(v);
      defaults_.emplace_back(slot_for(v), v);
    }
  }

  ThreadPool fold_pool(1);
  auto order = g.topological_order();
  for (const ir::Node* n : order) {
    auto step = std::make_unique<Step>();
    step->node = n;
    for (const ir::Value* v : n->inputs) {
      if (!v) {
        step->in_refs.push_back(kOmitted);
        continue;
      }
      if (v->kind == ir::Value::Kind::Undefined)
        bad_input("node {} ({}) reads '{}', which nothing in the graph defines", node_label(*n), n->op_type, v->name);
      if (v->kind == ir::Value::Kind::Captured && !ref_.count(v)) captured_.emplace_back(slot_for(v), v);
      step->in_refs.push_back(slot_for(v));
    }
    PlanContext npc = pc;
    npc.opset = static_cast<int>(pc.model->opset(n->domain));
    const KernelFactory* make = find_kernel(n->domain, n->op_type, npc.opset);
    if (!make)
      bad_input("node {}: op {}{}{} (opset {}) is not supported by the slmops executor", node_label(*n),
                n->domain.empty() ? "" : n->domain, n->domain.empty() ? "" : ".", n->op_type, npc.opset);
    try {
      step->kernel = (*make)(*n, npc);
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("node {} ({}): {}", node_label(*n), n->op_type, e.what()));
    } catch (const std::length_error&) {
      bad_input("node {} ({}): an attribute asks for a size larger than memory can hold", node_label(*n), n->op_type);
    }
    if (!try_fold(*step, fold_pool))
      for (const ir::Value* v : n->outputs) step->out_slots.push_back(v ? slot_for(v) : -1);
    steps_.push_back(std::move(step));
  }
  for (auto& vi : g.outputs) {
    if (!vi.value) continue;
    if (vi.value->kind == ir::Value::Kind::Captured && !ref_.count(vi.value))
      captured_.emplace_back(slot_for(vi.value), vi.value);
    if (!ref_.count(vi.value)) bad_input("graph '{}': output '{}' is never produced", g.name, vi.value->name);
    output_refs_.push_back(ref_.at(vi.value));
  }

  std::unordered_set<int> keep(output_refs_.begin(), output_refs_.end());
  for (auto& d : defaults_) keep.insert(d.first);
  plan_qdq(keep, pc);
  plan_lifetimes(steps_, keep);
  plan_fusions(steps_, keep);
  if (!qdq_steps_.empty()) {
    plan_lifetimes(qdq_steps_, keep);
    plan_fusions(qdq_steps_, keep);
  }
}

// Lifetimes: a value dies after its last reader unless it is a graph output or read by a
// subgraph (implicit input: kept until the owning node has run). Constants never die.
void GraphRunner::plan_lifetimes(std::vector<std::unique_ptr<Step>>& steps, const std::unordered_set<int>& keep) {
  std::vector<int> last(slot_count_, -1);
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i]->folded) continue;
    for (int s : steps[i]->in_refs)
      if (s >= 0) last[s] = static_cast<int>(i);
    for (const ir::Value* v : steps[i]->node->implicit_inputs) {
      auto it = ref_.find(v);
      if (it != ref_.end() && it->second >= 0) last[it->second] = static_cast<int>(i);
    }
    // An output nobody reads dies right after it is made.
    for (int s : steps[i]->out_slots)
      if (s >= 0 && last[s] < static_cast<int>(i)) last[s] = static_cast<int>(i);
  }
  for (int s = 0; s < slot_count_; ++s)
    if (last[s] >= 0 && !keep.count(s)) steps[last[s]]->free_after.push_back(s);
}

// The integer QDQ plan, as ONNX Runtime's QDQ transformers rewrite a session's graph (the
// model is not changed):
//
//   Before:  a_q ─► DQ ─► MatMul ◄─ DQ ◄─ W_q        After:  a_q ─► QDQ MatMul ◄─ W_q
//                           └─► Q ─► y_q                              └─► y_q
//
// Every step whose op has a QDQ kernel (find_qdq_kernel) and reads at least one
// DequantizeLinear output is offered its group (QdqGroup: those DequantizeLinear nodes and the
// QuantizeLinear that is the only reader of its output 0); when the factory accepts, the
// step's copy reads the integer tensors and writes the QuantizeLinear's output. Then the
// DequantizeLinear / QuantizeLinear steps whose outputs nothing reads any more are dropped.
// Folded steps are left out (their outputs are constants). Runs that look at intermediate
// values (RunOptions::on_node, extra_outputs) or ask for exact_qdq run the plan as written.
void GraphRunner::plan_qdq(const std::unordered_set<int>& keep, const PlanContext& pc) {
  std::unordered_set<const ir::Value*> implicit;
  for (auto& step : steps_)
    for (const ir::Value* v : step->node->implicit_inputs) implicit.insert(v);
  auto is_op = [](const ir::Node* n, std::string_view op) {
    return n && n->op_type == op && (n->domain.empty() || n->domain == "ai.onnx") && !n->has_subgraphs();
  };
  std::vector<std::unique_ptr<Step>> plan;
  std::unordered_map<const ir::Node*, Step*> by_node;
  for (auto& step : steps_) {
    if (step->folded) continue;
    auto copy = std::make_unique<Step>();
    copy->node = step->node;
    copy->kernel = step->kernel;
    copy->in_refs = step->in_refs;
    copy->out_slots = step->out_slots;
    by_node[step->node] = copy.get();
    plan.push_back(std::move(copy));
  }
  std::unordered_set<const Step*> dropped;
  int fused = 0;
  for (auto& step : plan) {
    const ir::Node* n = step->node;
    if (dropped.count(step.get()) || n->has_subgraphs()) continue;
    const QdqKernelFactory* make = find_qdq_kernel(n->domain, n->op_type);
    if (!make) continue;
    QdqGroup group;
    group.node = n;
    bool any = false;
    for (const ir::Value* v : n->inputs) {
      const ir::Node* p = v && v->kind == ir::Value::Kind::NodeOutput ? v->producer : nullptr;
      const bool dq = is_op(p, "DequantizeLinear") && p->inputs.size() >= 2 && p->inputs[0];
      group.dq.push_back(dq ? p : nullptr);
      any |= dq;
    }
    if (!any) continue;
    for (const ir::Value* v : n->inputs) {
      auto it = v ? ref_.find(v) : ref_.end();
      const RValue* c = it != ref_.end() && it->second <= kConst ? &constants_[kConst - it->second] : nullptr;
      group.constant.push_back(c && c->is_tensor() ? &c->tensor : nullptr);
    }
    if (n->outputs.size() == 1 && n->outputs[0] && step->out_slots.size() == 1 && step->out_slots[0] >= 0) {
      const ir::Value* y = n->outputs[0];
      const ir::Node* q = y->consumers.size() == 1 ? y->consumers[0] : nullptr;
      auto it = q ? by_node.find(q) : by_node.end();
      if (is_op(q, "QuantizeLinear") && q->inputs[0] == y && !keep.count(step->out_slots[0]) && !implicit.count(y) &&
          it != by_node.end() && it->second->out_slots.size() == 1 && it->second->out_slots[0] >= 0)
        group.q = q;
    }
    PlanContext npc = pc;
    npc.opset = static_cast<int>(pc.model->opset(n->domain));
    std::unique_ptr<Kernel> kernel;
    try {
      kernel = (*make)(group, npc);
    } catch (const Error&) {
      kernel.reset();  // the group does not qualify after all: the step runs as written
    }
    if (!kernel) continue;
    step->kernel = std::move(kernel);
    for (size_t i = 0; i < group.dq.size(); ++i)
      if (group.dq[i]) step->in_refs[i] = ref_.at(group.dq[i]->inputs[0]);
    if (group.q) {
      Step* q = by_node.at(group.q);
      step->out_slots = q->out_slots;
      dropped.insert(q);
    }
    ++fused;
  }
  if (!fused) return;
  // Drop DequantizeLinear / QuantizeLinear steps that nothing reads any more (backwards, so a
  // chain of them goes in one pass).
  std::vector<int> readers(slot_count_, 0);
  auto count_reads = [&](const Step& st, int d) {
    for (int r : st.in_refs)
      if (r >= 0) readers[r] += d;
    for (const ir::Value* v : st.node->implicit_inputs) {
      auto it = ref_.find(v);
      if (it != ref_.end() && it->second >= 0) readers[it->second] += d;
    }
  };
  for (auto& step : plan)
    if (!dropped.count(step.get())) count_reads(*step, 1);
  for (auto it = plan.rbegin(); it != plan.rend(); ++it) {
    Step& st = **it;
    if (dropped.count(&st) || !(is_op(st.node, "DequantizeLinear") || is_op(st.node, "QuantizeLinear"))) continue;
    bool used = false;
    for (int s : st.out_slots) used |= s >= 0 && (readers[s] > 0 || keep.count(s));
    if (used) continue;
    dropped.insert(&st);
    count_reads(st, -1);
  }
  for (auto& step : plan)
    if (!dropped.count(step.get())) qdq_steps_.push_back(std::move(step));
  qdq_fused_ = fused;
}

// Plan-time fusions, one row each: an op that a producing kernel can apply to its own output
// 0 when that op is the output's only reader, as a clamp to [lo, hi] (OpContext::fused_clamp).
// The reader must be in the default domain with one output, and read the producer's output as
// its input 0; the row's bounds() says whether this node qualifies and gives its bounds, with
// `constant` returning a constant input's tensor (nullptr otherwise). Adding a fusion is a row
// here and the kernel honouring it; the ir::Graph is never changed, and runs that look at the
// producer's output (RunOptions::on_node, extra_outputs) run both steps as planned.
namespace {
using ConstantOf = std::function<const Tensor*(const ir::Value*)>;
constexpr float kInf = std::numeric_limits<float>::infinity();

bool relu_bounds(const ir::Node& n, const ConstantOf&, float& lo, float& hi) {
  lo = 0.0f;
  hi = kInf;
  return n.inputs.size() == 1;
}

// Clip's bounds are attributes before opset 11 (min, max) and optional inputs since; they are
// fused when each is absent or a float32 scalar constant that is not NaN (Clip ignores a NaN
// bound, a fused clamp would not). mobilenet_v2 exports ReLU6 as Clip(x, 0, 6) after each Conv.
bool clip_bounds(const ir::Node& n, const ConstantOf& constant, float& lo, float& hi) {
  lo = n.attr_float("min", -kInf);
  hi = n.attr_float("max", kInf);
  if (n.inputs.empty() || n.inputs.size() > 3) return false;
  for (size_t i = 1; i < n.inputs.size(); ++i) {
    if (!n.inputs[i]) continue;
    const Tensor* t = constant(n.inputs[i]);
    if (!t || t->dtype != ir::DType::Float || t->numel() != 1) return false;
    (i == 1 ? lo : hi) = t->values<float>()[0];
  }
  return !std::isnan(lo) && !std::isnan(hi);
}

struct FusionRule {
  std::string_view reader_op;
  bool (*bounds)(const ir::Node& reader, const ConstantOf& constant, float& lo, float& hi);
};
constexpr FusionRule kFusionRules[] = {
    {"Relu", relu_bounds},
    {"Clip", clip_bounds},
};
}  // namespace

// Pairs each step whose kernel can absorb a rule's op with the step of that op that is the
// only reader of its output 0, where that output is not kept (graph output, default) and no
// subgraph reads it.
void GraphRunner::plan_fusions(std::vector<std::unique_ptr<Step>>& steps, const std::unordered_set<int>& keep) {
  std::unordered_map<const ir::Node*, int> index;
  std::unordered_set<const ir::Value*> implicit;
  const ConstantOf constant = [&](const ir::Value* v) -> const Tensor* {
    auto it = ref_.find(v);
    if (it == ref_.end() || it->second > kConst) return nullptr;
    const RValue& c = constants_[kConst - it->second];
    return c.is_tensor() ? &c.tensor : nullptr;
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    index[steps[i]->node] = static_cast<int>(i);
    for (const ir::Value* v : steps[i]->node->implicit_inputs) implicit.insert(v);
  }
  for (auto& step : steps) {
    if (step->folded || step->out_slots.empty() || step->out_slots[0] < 0) continue;
    const ir::Value* v = step->node->outputs[0];
    if (!v || v->consumers.size() != 1 || implicit.count(v) || keep.count(step->out_slots[0])) continue;
    const ir::Node* reader = v->consumers[0];
    auto it = index.find(reader);
    if (!reader->domain.empty() || it == index.end() || reader->inputs.empty() || reader->inputs[0] != v ||
        reader->outputs.size() != 1 || !reader->outputs[0] || !step->kernel->fuses_clamp())
      continue;
    for (const FusionRule& rule : kFusionRules) {
      float lo = 0.0f, hi = 0.0f;
      if (reader->op_type != rule.reader_op || !rule.bounds(*reader, constant, lo, hi)) continue;
      Step& fused = *steps[it->second];
      if (fused.folded || fused.out_slots.size() != 1 || fused.out_slots[0] < 0) break;
      // In the QDQ plan the step may write another value than its node's output 0 (the Q's).
      if (fused.in_refs.empty() || fused.in_refs[0] != step->out_slots[0]) break;
      step->fuses_clamp = true;
      step->clamp_lo = lo;
      step->clamp_hi = hi;
      fused.clamp_producer = static_cast<int>(&step - steps.data());
      if (&steps == &steps_) ++clamp_fused_;
      break;
    }
  }
}

GraphRunner::~GraphRunner() = default;

const RValue* Frame::lookup(const ir::Value* v) const {
  auto it = runner_.ref_.find(v);
  if (it != runner_.ref_.end()) {
    const RValue* r = runner_.resolve(it->second, slots_);
    if (r && (r->kind != RValue::Kind::None || r->optional)) return r;
  }
  return parent_ ? parent_->lookup(v) : nullptr;
}

std::vector<RValue> GraphRunner::run(std::vector<RValue> inputs, ThreadPool& pool, const Frame* parent,
                                     const RunOptions* opts) const {
  std::vector<RValue> slots(slot_count_);
  for (auto& [s, v] : defaults_)
    slots[s] = RValue::of(session_constants_ ? session_constants_->get(v) : *v->initializer);
  for (size_t i = 0; i < inputs.size() && i < input_slots_.size(); ++i)
    if (inputs[i].kind != RValue::Kind::None || inputs[i].optional) slots[input_slots_[i]] = std::move(inputs[i]);
  Frame frame(*this, parent, slots);
  for (auto& [s, v] : captured_) {
    const RValue* outer = parent ? parent->lookup(v->outer) : nullptr;
    if (!outer) bad_input("subgraph '{}' reads '{}' from an outer scope that does not have it", graph_.name, v->name);
    slots[s] = *outer;
  }
  std::unordered_set<int> extra_keep;
  std::vector<int> extra_refs;
  if (opts)
    for (auto& name : opts->extra_outputs) {
      const ir::Value* v = graph_.find_value(name);
      auto it = v ? ref_.find(v) : ref_.end();
      if (it == ref_.end()) bad_input("no value named '{}' in graph '{}'", name, graph_.name);
      extra_refs.push_back(it->second);
      extra_keep.insert(it->second);
    }
  const bool on_node = opts && opts->on_node;
  // The integer QDQ plan, unless the run looks at intermediate values or asks for the graph's
  // own arithmetic.
  const bool qdq = !qdq_steps_.empty() && !on_node && extra_refs.empty() && !(opts && opts->exact_qdq);
  const std::vector<std::unique_ptr<Step>>& steps = qdq ? qdq_steps_ : steps_;

  std::vector<RValue> outs;
  OpContext ctx;
  ctx.pool = &pool;
  ctx.frame = &frame;
  // Whether this run lets a fusing step apply the Relu or Clip that reads its output.
  auto clamp_fused = [&](const Step& producer) { return !on_node && !extra_keep.count(producer.out_slots[0]); };
  for (auto& step : steps) {
    if (step->folded) {
      if (on_node) opts->on_node(*step->node, step->folded_outputs);
      if (opts && opts->stop && opts->stop()) return {};
      continue;
    }
    outs.resize(step->out_slots.size());
    if (step->clamp_producer >= 0 && clamp_fused(*steps[step->clamp_producer])) {
      outs[0] = *resolve(step->in_refs[0], slots);  // the producer applied this clamp already
    } else {
      ctx.fused_clamp = step->fuses_clamp && clamp_fused(*step);
      ctx.fused_lo = step->clamp_lo;
      ctx.fused_hi = step->clamp_hi;
      ctx.node = step->node;
      ctx.inputs.clear();
      for (int r : step->in_refs) ctx.inputs.push_back(resolve(r, slots));
      ctx.outputs = &outs;
      try {
        step->kernel->run(ctx);
      } catch (const Error& e) {
        if (!e.node().empty()) throw;  // a node inside a subgraph of this one, named already
        const std::string label = node_label(*step->node);
        throw Error(e.code(), fmt::format("node {} ({}): {}", label, step->node->op_type, e.what()), label);
      } catch (const std::length_error&) {
        // A size taken from an attribute or input that no container can hold.
        bad_input("node {} ({}): an attribute or input asks for a result larger than memory can hold",
                  node_label(*step->node), step->node->op_type);
      }
      if (on_node) opts->on_node(*step->node, outs);
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      if (step->out_slots[k] >= 0) slots[step->out_slots[k]] = std::move(outs[k]);
      outs[k] = RValue{};
    }
    for (int s : step->free_after)
      if (extra_keep.empty() || !extra_keep.count(s)) slots[s] = RValue{};
    if (opts && opts->stop && opts->stop()) return {};
  }
  std::vector<RValue> result;
  result.reserve(output_refs_.size() + extra_refs.size());
  for (int r : output_refs_) result.push_back(*resolve(r, slots));
  for (int r : extra_refs) result.push_back(*resolve(r, slots));
  return result;
}

Session::Session(const ir::Model& model, int threads) : model_(model) {
  ensure_kernels_registered();
  pool_ = std::make_unique<ThreadPool>(std::max(1, threads));
  tensors_ = std::make_unique<TensorPool>();
  const auto weight_bytes = static_cast<int64_t>(ir::model_statistics(model).weight_bytes);
  pack_budget_ = std::max(kMinPackBudget, weight_bytes / kPackBudgetDivisor);
  constants_table_ = std::make_unique<SessionConstants>();
  PlanContext pc{0, &model, std::max(1, threads), &pack_budget_, constants_table_.get(), &mapped_copy_budget_};
  main_ = std::make_unique<GraphRunner>(*model.graph, pc);
  for (auto& vi : model.graph->inputs)
    if (vi.value) inputs_.push_back(vi.value);
}

Session::~Session() = default;

std::vector<std::string> Session::output_names() const {
  std::vector<std::string> names;
  for (auto& vi : model_.graph->outputs) names.push_back(vi.value ? vi.value->name : "");
  return names;
}

std::vector<RValue> Session::run(std::vector<RValue> feeds, const RunOptions& opts) const {
  TensorPool::Scope scope(*tensors_);
  return main_->run(std::move(feeds), *pool_, nullptr, &opts);
}

static void collect_unsupported(const ir::Model& m, const ir::Graph& g, std::vector<std::string>& out) {
  for (auto& n : g.nodes()) {
    int opset = static_cast<int>(m.opset(n->domain));
    if (!find_kernel(n->domain, n->op_type, opset))
      out.push_back(fmt::format("{}{}{} (opset {})", n->domain, n->domain.empty() ? "" : ".", n->op_type, opset));
    for (auto& a : n->attributes) {
      if (a.g) collect_unsupported(m, *a.g, out);
      for (auto& sg : a.graphs) collect_unsupported(m, *sg, out);
    }
  }
}

std::vector<std::string> unsupported_ops(const ir::Model& model) {
  ensure_kernels_registered();
  std::vector<std::string> out;
  collect_unsupported(model, *model.graph, out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace slmops::runtime
