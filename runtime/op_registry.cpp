#include "runtime/op_registry.h"

#include <map>
#include <mutex>

#include "ir/error.h"

namespace slmops::runtime {

namespace {

struct Entry {
  int since;
  KernelFactory make;
};

std::map<std::string, std::vector<Entry>>& table() {
  static std::map<std::string, std::vector<Entry>> t;
  return t;
}

std::string key(const std::string& domain, const std::string& op) {
  return (domain == "ai.onnx" ? std::string() : domain) + "::" + op;
}

class FnKernel : public Kernel {
 public:
  FnKernel(const ir::Node& n, KernelFn fn) : node_(n), fn_(std::move(fn)) {}
  void run(OpContext& ctx) override { fn_(node_, ctx); }

 private:
  const ir::Node& node_;
  KernelFn fn_;
};

std::map<std::string, QdqKernelFactory>& qdq_table() {
  static std::map<std::string, QdqKernelFactory> t;
  return t;
}

}  // namespace

void register_qdq_kernel(std::string op_type, QdqKernelFactory make) {
  qdq_table()[std::move(op_type)] = std::move(make);
}

const QdqKernelFactory* find_qdq_kernel(const std::string& domain, const std::string& op_type) {
  ensure_kernels_registered();
  if (!domain.empty() && domain != "ai.onnx") return nullptr;
  auto it = qdq_table().find(op_type);
  return it == qdq_table().end() ? nullptr : &it->second;
}

const Tensor& OpContext::in(size_t i) const {
  if (!has_input(i)) bad_input("input {} is missing", i);
  if (!inputs[i]->is_tensor()) bad_input("input {} is not a tensor", i);
  return inputs[i]->tensor;
}

Tensor& OpContext::set_out(size_t i, Tensor t) {
  if (i >= outputs->size()) bad_input("has no output {}", i);
  (*outputs)[i] = RValue::of(std::move(t));
  return (*outputs)[i].tensor;
}

void register_kernel(std::string domain, std::string op_type, int since_version, KernelFactory make) {
  table()[key(domain, op_type)].push_back({since_version, std::move(make)});
}

KernelFactory simple_kernel(KernelFn fn) {
  return [fn](const ir::Node& n, const PlanContext&) { return std::make_unique<FnKernel>(n, fn); };
}

const KernelFactory* find_kernel(const std::string& domain, const std::string& op_type, int opset) {
  ensure_kernels_registered();
  auto it = table().find(key(domain, op_type));
  if (it == table().end()) return nullptr;
  const Entry* best = nullptr;
  for (auto& e : it->second)
    if (e.since <= opset && (!best || e.since > best->since)) best = &e;
  // A domain imported without a version (or opset 0) still finds the newest kernel.
  if (!best && opset <= 0)
    for (auto& e : it->second)
      if (!best || e.since > best->since) best = &e;
  return best ? &best->make : nullptr;
}

// Every op family file defines one of these.
void register_elementwise_ops();
void register_tensor_ops();
void register_reduce_ops();
void register_nn_ops();
void register_matmul_ops();
void register_quant_ops();
void register_control_ops();
void register_sequence_ops();
void register_rnn_ops();
void register_misc_ops();
void register_contrib_ops();
void register_gradient_ops();

void ensure_kernels_registered() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_elementwise_ops();
    register_tensor_ops();
    register_reduce_ops();
    register_nn_ops();
    register_matmul_ops();
    register_quant_ops();
    register_control_ops();
    register_sequence_ops();
    register_rnn_ops();
    register_misc_ops();
    register_contrib_ops();
    register_gradient_ops();
  });
}

const Tensor& SessionConstants::get(const ir::Value* v) {
  const Tensor& t = *v->initializer;
  if (t.aligned()) return t;
  auto it = copies_.find(v);
  if (it == copies_.end()) {
    Tensor copy = t;
    copy.make_aligned();
    // The copy serves every read from now on: the mapped file's pages that held the original
    // (resident after the copy read them) leave the resident set, so a misaligned weight is
    // in memory once, not twice. (A later read of the original maps them in again.)
    t.data.release_resident_pages();
    it = copies_.emplace(v, std::move(copy)).first;
  }
  return it->second;
}

const Tensor* PlanContext::packable_weight(const ir::Node& n, size_t i, size_t rank) const {
  const ir::Value* v = n.inputs.size() > i ? n.inputs[i] : nullptr;
  if (!v || v->kind != ir::Value::Kind::Initializer || !v->initializer) return nullptr;
  const Tensor& w = constant(v);
  if (w.dims.size() != rank || !w.has_data()) return nullptr;
  if (w.dtype != DType::Float && w.dtype != DType::Float16 && w.dtype != DType::BFloat16) return nullptr;
  const bool replaced = w.dtype == DType::Float && w.data.source();
  const bool mapped_copy = w.dtype == DType::Float && &w != v->initializer.get() && v->initializer->data.source();
  if (!replaced && !take_pack_budget(static_cast<int64_t>(w.numel() * sizeof(float)), mapped_copy)) return nullptr;
  return &w;
}

void PlanContext::release_packed(const Tensor& w) {
  if (w.dtype == DType::Float && w.data.source()) w.data.release_resident_pages();
}

}  // namespace slmops::runtime
