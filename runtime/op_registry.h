// Kernels by (domain, op type, opset version). A kernel object is made once per node at plan
// time (it may pre-compute from attributes and constant inputs) and run many times.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "runtime/thread_pool.h"
#include "runtime/value.h"

namespace slmops::runtime {

class Frame;
class GraphRunner;

struct OpContext {
  std::vector<const RValue*> inputs;  // nullptr: omitted optional input
  std::vector<RValue>* outputs;       // one per node output, to be filled
  ThreadPool* pool = nullptr;
  const Frame* frame = nullptr;       // for kernels that run subgraphs

  size_t input_count() const { return inputs.size(); }
  bool has_input(size_t i) const { return i < inputs.size() && inputs[i] && inputs[i]->kind != RValue::Kind::None; }
  // The i-th input as a tensor; throws Error naming the node when it is missing.
  const Tensor& in(size_t i) const;
  Tensor& set_out(size_t i, Tensor t);
  size_t output_count() const { return outputs->size(); }
  const ir::Node* node = nullptr;
  // Set by the executor for a kernel whose fuses_clamp() is true when its output 0 is read
  // only by one Relu, or one Clip whose bounds are constants: the kernel clamps output 0 to
  // [fused_lo, fused_hi] itself (Relu: [0, +inf]; an infinite bound is not applied; a NaN
  // becomes fused_lo, as Relu's x > 0 ? x : 0 and ONNX Runtime's fused Conv activations do)
  // and the executor skips that node, passing the value through.
  bool fused_clamp = false;
  float fused_lo = 0.0f, fused_hi = 0.0f;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual void run(OpContext& ctx) = 0;
  // Whether run() honours OpContext::fused_clamp.
  virtual bool fuses_clamp() const { return false; }
};

// The values of a session's initializers as kernels and the executor read them. The tensor
// itself when its data is aligned to its element size; else an aligned copy, made once and
// kept for the session (raw_data and external data sit at any offset of a mapped file, and
// reading them as float* is undefined behaviour). The Session owns alignment: no caller of the
// executor aligns a model first, and a kernel that packs a weight at plan time sees the same
// buffer the executor feeds it at run time.
class SessionConstants {
 public:
  const Tensor& get(const ir::Value* v);  // v holds an initializer

 private:
  std::unordered_map<const ir::Value*, Tensor> copies_;
};

struct PlanContext {
  int opset;                  // the model's opset for the node's domain
  const ir::Model* model;
  int threads;
  // Bytes that kernels may still spend on plan-time copies of weights (pre-packed GEMM
  // operands), shared by every node of a session; null: no limit. See Session.
  int64_t* pack_budget = nullptr;
  SessionConstants* constants = nullptr;  // null: read initializers as they are
  // More room for packing the aligned copies of mapped float32 weights (raw_data at a
  // misaligned offset of the model file; their file pages leave memory, so the copy is the
  // weight's one copy there, and a packed copy makes two); taken before pack_budget. Null:
  // none. See Session.
  int64_t* mapped_copy_budget = nullptr;

  // The value of initializer `v` (see SessionConstants).
  const Tensor& constant(const ir::Value* v) const { return constants ? constants->get(v) : *v->initializer; }

  // Whether a plan-time copy of `bytes` fits the budget; if so, the bytes are taken from it
  // (for the copy of a mapped weight's aligned copy, from mapped_copy_budget first).
  bool take_pack_budget(int64_t bytes, bool of_mapped_copy = false) const {
    if (!pack_budget) return true;
    if (of_mapped_copy && mapped_copy_budget && bytes <= *mapped_copy_budget) {
      *mapped_copy_budget -= bytes;
      return true;
    }
    if (bytes > *pack_budget) return false;
    *pack_budget -= bytes;
    return true;
  }

  // The weight at input `i` of `n` when a kernel may pack a copy of it at plan time: a true
  // initializer (a graph input with a default could be fed something else) of rank `rank`,
  // float32/float16/bfloat16, with data, and room for the copy. A float32 weight mapped from the
  // model file is replaced in memory by its packed copy (call release_packed() after packing:
  // its pages go, the kernel reads only the copy), so it takes no budget; any other would be
  // held twice and takes its float32 size from the budget. nullptr otherwise.
  const Tensor* packable_weight(const ir::Node& n, size_t i, size_t rank) const;
  // Releases the resident pages of a weight packable_weight() returned, once it is packed.
  static void release_packed(const Tensor& w);
};

using KernelFactory = std::function<std::unique_ptr<Kernel>(const ir::Node&, const PlanContext&)>;

// A node with quantized neighbours, as ONNX Runtime's QDQ selectors see it: which of its inputs
// DequantizeLinear nodes make, and the QuantizeLinear that alone reads its output 0.
struct QdqGroup {
  const ir::Node* node = nullptr;
  std::vector<const ir::Node*> dq;  // per input of `node`: its DequantizeLinear, or nullptr
  const ir::Node* q = nullptr;      // nullptr: output 0 has other readers (or none is a Q)
  // Per input of `node`: its value when the plan holds it as a constant (an initializer or
  // the output of a node folded at plan time), else nullptr.
  std::vector<const Tensor*> constant;
};

// Makes an integer kernel for a group, or nullptr when the group does not qualify (the
// executor then runs it as written). The kernel is run with the node's inputs, each one that
// a DequantizeLinear makes replaced by that DequantizeLinear's input 0 (the integer tensor),
// and writes the QuantizeLinear's output when group.q is set, else the node's output 0.
using QdqKernelFactory = std::function<std::unique_ptr<Kernel>(const QdqGroup&, const PlanContext&)>;
void register_qdq_kernel(std::string op_type, QdqKernelFactory make);  // default domain ops
const QdqKernelFactory* find_qdq_kernel(const std::string& domain, const std::string& op_type);

// Registers a kernel for opsets >= since_version (the newest matching entry wins).
void register_kernel(std::string domain, std::string op_type, int since_version, KernelFactory make);

// Wraps a plain function as a kernel (for ops with nothing to pre-compute).
using KernelFn = std::function<void(const ir::Node&, OpContext&)>;
KernelFactory simple_kernel(KernelFn fn);

// The factory for this node, or nullptr when no kernel supports it.
const KernelFactory* find_kernel(const std::string& domain, const std::string& op_type, int opset);

// Every op family registers itself through one of these (called once, in order, by
// ensure_kernels_registered); the list lives in op_registry.cpp.
void ensure_kernels_registered();

}  // namespace slmops::runtime
