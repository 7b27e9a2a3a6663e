// Control flow: If, Loop and Scan. Their bodies are planned once, when the kernel is made,
// and run with the running node's frame as parent scope. Values of any kind (tensors,
// sequences, optionals) pass through branches and loop-carried variables unchanged, which
// covers the opset 13 (sequences) and 16 (optionals) extensions of If and Loop.
#include <algorithm>
#include <optional>

#include "runtime/ops/control_util.h"

namespace slmops::runtime::ops {
namespace {

// ---- If ------------------------------------------------------------------------------------

class IfKernel : public Kernel {
 public:
  IfKernel(const ir::Node& n, const PlanContext& pc)
      : then_(n, "then_branch", pc), else_(n, "else_branch", pc) {
    for (const Subgraph* branch : {&then_, &else_})
      if (branch->output_count() != n.outputs.size())
        bad_input("a branch has {} outputs, but the node has {}", branch->output_count(), n.outputs.size());
  }

  void run(OpContext& ctx) override {
    const Subgraph& branch = read_bool(ctx.in(0), "input 'cond'") ? then_ : else_;
    *ctx.outputs = branch.run({}, ctx);
  }

 private:
  Subgraph then_, else_;
};

// ---- Loop ----------------------------------------------------------------------------------

// A scan output of Loop or Scan: stacks the slices of body output `output` along `axis`
// (negative counts from the end), or makes an empty output of the type the body declares
// when there were no iterations.
Tensor stack_body_output(const std::vector<Tensor>& slices, int64_t axis, const Subgraph& body, size_t output,
                         ThreadPool* pool) {
  const ir::TensorType& declared = body.graph().outputs[output].value->type;
  const size_t rank = slices.empty() ? declared.dims.size() : slices[0].dims.size();
  axis = normalize_axis(axis, static_cast<int64_t>(rank) + 1, "scan_output_axes entry");
  return slices.empty() ? empty_stack(declared, axis) : stack(slices, axis, pool);
}

// Inputs: M (max trip count, optional), cond (optional), N loop-carried values.
// Body: (iteration_num, cond, N carried) -> (cond, N carried, K scan slices).
// Outputs: the N final carried values, then each scan output's slices stacked on axis 0.
class LoopKernel : public Kernel {
 public:
  LoopKernel(const ir::Node& n, const PlanContext& pc) : body_(n, "body", pc) {
    if (n.inputs.size() < 2) bad_input("needs inputs 'M' and 'cond' (either may be empty)");
    carried_ = n.inputs.size() - 2;
    if (body_.input_count() != carried_ + 2)
      bad_input("attribute 'body' takes {} inputs, expected {} (iteration number, condition, {} loop-carried)",
                body_.input_count(), carried_ + 2, carried_);
    if (body_.output_count() < carried_ + 1 || n.outputs.size() > body_.output_count() - 1)
      bad_input("attribute 'body' has {} outputs, which does not fit {} loop-carried values and {} node outputs",
                body_.output_count(), carried_, n.outputs.size());
  }

  void run(OpContext& ctx) override {
    std::optional<int64_t> trip_count;
    if (ctx.has_input(0)) trip_count = read_int64(ctx.in(0), "input 'M'");
    bool cond = ctx.has_input(1) ? read_bool(ctx.in(1), "input 'cond'") : true;
    std::vector<RValue> carried;
    for (size_t i = 0; i < carried_; ++i) carried.push_back(input_value(ctx, i + 2));

    const size_t scans = body_.output_count() - 1 - carried_;
    std::vector<std::vector<Tensor>> slices(scans);
    for (int64_t it = 0; cond && (!trip_count || it < *trip_count); ++it) {
      std::vector<RValue> in;
      in.reserve(carried_ + 2);
      in.push_back(RValue::of(scalar_int64(it)));
      in.push_back(RValue::of(scalar_bool(cond)));
      for (RValue& v : carried) in.push_back(std::move(v));
      std::vector<RValue> out = body_.run(std::move(in), ctx);
      cond = read_bool(expect_tensor(out[0], "body output 0 (condition)"), "body output 0 (condition)");
      std::move(out.begin() + 1, out.begin() + 1 + carried_, carried.begin());
      for (size_t k = 0; k < scans; ++k)
        slices[k].push_back(expect_tensor(out[1 + carried_ + k], fmt::format("scan output {}", k)));
    }

    std::vector<RValue>& outs = *ctx.outputs;
    for (size_t i = 0; i < carried_ && i < outs.size(); ++i) outs[i] = std::move(carried[i]);
    for (size_t k = 0; k < scans && carried_ + k < outs.size(); ++k)
      outs[carried_ + k] = RValue::of(stack_body_output(slices[k], 0, body_, 1 + carried_ + k, ctx.pool));
  }

 private:
  Subgraph body_;
  size_t carried_;
};

// ---- Scan ----------------------------------------------------------------------------------

// Runs a Scan body over `steps` iterations. Body inputs are the current states and slice t
// of each scan input (`inputs[j]` lists input j's slices in iteration order); body outputs
// are the new states and one slice per scan output, collected in iteration order.
struct ScanRun {
  std::vector<RValue> states;
  std::vector<std::vector<Tensor>> outputs;
};

ScanRun run_scan_body(const Subgraph& body, std::vector<RValue> states, const std::vector<std::vector<Tensor>>& inputs,
                      int64_t steps, const OpContext& ctx) {
  ScanRun r;
  r.states = std::move(states);
  const size_t n = r.states.size();
  r.outputs.resize(body.output_count() - n);
  for (int64_t t = 0; t < steps; ++t) {
    std::vector<RValue> in;
    in.reserve(n + inputs.size());
    for (RValue& s : r.states) in.push_back(std::move(s));
    for (const auto& slices : inputs) in.push_back(RValue::of(slices[t]));
    std::vector<RValue> out = body.run(std::move(in), ctx);
    std::move(out.begin(), out.begin() + n, r.states.begin());
    for (size_t k = 0; k < r.outputs.size(); ++k)
      r.outputs[k].push_back(expect_tensor(out[n + k], fmt::format("scan output {}", k)));
  }
  return r;
}

// Reads a per-scan-input or per-scan-output list attribute; `fallback` fills an absent one.
std::vector<int64_t> per_item_attr(const ir::Node& n, const char* name, size_t count, int64_t fallback) {
  std::vector<int64_t> v = n.attr_ints(name);
  if (!n.attr(name)) v.assign(count, fallback);
  if (v.size() != count) bad_input("attribute '{}' has {} entries, expected {}", name, v.size(), count);
  return v;
}

// Scan 9+: inputs are N initial states then M scan inputs, each scanned along its own axis
// and direction; scan outputs are stacked along their own axis, in their own direction.
class ScanKernel : public Kernel {
 public:
  ScanKernel(const ir::Node& n, const PlanContext& pc) : body_(n, "body", pc) {
    const int64_t m = n.attr_int("num_scan_inputs", -1);
    if (m < 1 || static_cast<size_t>(m) > n.inputs.size())
      bad_input("attribute 'num_scan_inputs' is {}, expected 1 to the number of inputs ({})", m, n.inputs.size());
    scan_inputs_ = static_cast<size_t>(m);
    states_ = n.inputs.size() - scan_inputs_;
    if (body_.input_count() != n.inputs.size() || body_.output_count() != n.outputs.size())
      bad_input("attribute 'body' has {} inputs and {} outputs, but the node has {} and {}", body_.input_count(),
                body_.output_count(), n.inputs.size(), n.outputs.size());
    const size_t scan_outputs = n.outputs.size() - states_;
    input_axes_ = per_item_attr(n, "scan_input_axes", scan_inputs_, 0);
    input_reverse_ = per_item_attr(n, "scan_input_directions", scan_inputs_, 0);
    output_axes_ = per_item_attr(n, "scan_output_axes", scan_outputs, 0);
    output_reverse_ = per_item_attr(n, "scan_output_directions", scan_outputs, 0);
  }

  void run(OpContext& ctx) override {
    std::vector<RValue> states;
    for (size_t i = 0; i < states_; ++i) states.push_back(input_value(ctx, i));
    std::vector<std::vector<Tensor>> inputs;
    int64_t steps = -1;
    for (size_t j = 0; j < scan_inputs_; ++j) {
      const Tensor& x = ctx.in(states_ + j);
      const int64_t axis = normalize_axis(input_axes_[j], static_cast<int64_t>(x.dims.size()), "scan_input_axes entry");
      if (steps >= 0 && x.dims[axis] != steps)
        bad_input("scan input {} has {} slices along axis {}, but scan input 0 has {}", j, x.dims[axis], axis, steps);
      steps = x.dims[axis];
      inputs.push_back(unstack(x, axis, ctx.pool));
      if (input_reverse_[j]) std::reverse(inputs.back().begin(), inputs.back().end());
    }
    ScanRun r = run_scan_body(body_, std::move(states), inputs, steps, ctx);

    std::vector<RValue>& outs = *ctx.outputs;
    std::move(r.states.begin(), r.states.end(), outs.begin());
    for (size_t k = 0; k < r.outputs.size(); ++k) {
      std::vector<Tensor>& slices = r.outputs[k];
      if (output_reverse_[k]) std::reverse(slices.begin(), slices.end());
      outs[states_ + k] = RValue::of(stack_body_output(slices, output_axes_[k], body_, states_ + k, ctx.pool));
    }
  }

 private:
  Subgraph body_;
  size_t states_, scan_inputs_;
  std::vector<int64_t> input_axes_, input_reverse_, output_axes_, output_reverse_;
};

// Scan 8: the first input is sequence_lens (optional), then N states and M scan inputs. Every
// input has a leading batch axis and scan inputs scan axis 1; each batch entry runs the body
// on its own for its sequence length, and scan outputs are zero-padded to the longest one.
class Scan8Kernel : public Kernel {
 public:
  Scan8Kernel(const ir::Node& n, const PlanContext& pc) : body_(n, "body", pc) {
    const int64_t m = n.attr_int("num_scan_inputs", -1);
    if (m < 1 || static_cast<size_t>(m) + 1 > n.inputs.size())
      bad_input("attribute 'num_scan_inputs' is {}, expected 1 to the number of inputs after sequence_lens ({})", m,
                n.inputs.size() - 1);
    scan_inputs_ = static_cast<size_t>(m);
    states_ = n.inputs.size() - 1 - scan_inputs_;
    if (body_.input_count() != n.inputs.size() - 1 || body_.output_count() != n.outputs.size())
      bad_input("attribute 'body' has {} inputs and {} outputs, but the node has {} (after sequence_lens) and {}",
                body_.input_count(), body_.output_count(), n.inputs.size() - 1, n.outputs.size());
    input_reverse_ = per_item_attr(n, "directions", scan_inputs_, 0);
  }

  void run(OpContext& ctx) override {
    const size_t first_scan = 1 + states_;
    const int64_t batch = ctx.in(first_scan).dims.at(0);
    const int64_t max_len = ctx.in(first_scan).dims.at(1);
    std::vector<int64_t> lengths(batch, max_len);
    if (ctx.has_input(0)) lengths = to_int64s(ctx.in(0));
    if (static_cast<int64_t>(lengths.size()) != batch)
      bad_input("input 'sequence_lens' has {} entries for a batch of {}", lengths.size(), batch);

    // Per input, its batch entries (states) or its batch entries' slices (scan inputs).
    std::vector<std::vector<Tensor>> state_entries;
    for (size_t i = 0; i < states_; ++i) state_entries.push_back(batch_entries(ctx.in(1 + i), batch, "state", ctx));
    std::vector<std::vector<std::vector<Tensor>>> input_slices;
    for (size_t j = 0; j < scan_inputs_; ++j) {
      std::vector<std::vector<Tensor>> per_batch;
      for (const Tensor& entry : batch_entries(ctx.in(first_scan + j), batch, "scan input", ctx)) {
        if (entry.dims.empty() || entry.dims[0] != max_len)
          bad_input("scan input {} is {} per batch entry, expected {} slices on axis 1", j, describe(entry), max_len);
        per_batch.push_back(unstack(entry, 0, ctx.pool));
      }
      input_slices.push_back(std::move(per_batch));
    }

    const size_t scan_outputs = body_.output_count() - states_;
    std::vector<std::vector<Tensor>> final_states(states_), outputs(scan_outputs);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len = lengths[b];
      if (len < 0 || len > max_len) bad_input("sequence_lens[{}] is {}, expected 0 to {}", b, len, max_len);
      std::vector<RValue> states;
      for (auto& entries : state_entries) states.push_back(RValue::of(entries[b]));
      std::vector<std::vector<Tensor>> inputs;
      for (size_t j = 0; j < scan_inputs_; ++j) {
        auto& slices = input_slices[j][b];
        slices.resize(len);
        if (input_reverse_[j]) std::reverse(slices.begin(), slices.end());
        inputs.push_back(std::move(slices));
      }
      ScanRun r = run_scan_body(body_, std::move(states), inputs, len, ctx);
      for (size_t i = 0; i < states_; ++i)
        final_states[i].push_back(expect_tensor(r.states[i], fmt::format("state output {}", i)));
      for (size_t k = 0; k < scan_outputs; ++k) {
        Tensor sequence = stack_body_output(r.outputs[k], 0, body_, states_ + k, ctx.pool);
        outputs[k].push_back(padded(sequence, max_len, ctx.pool));
      }
    }
    std::vector<RValue>& outs = *ctx.outputs;
    for (size_t i = 0; i < states_; ++i) outs[i] = RValue::of(stack(final_states[i], 0, ctx.pool));
    for (size_t k = 0; k < scan_outputs; ++k) outs[states_ + k] = RValue::of(stack(outputs[k], 0, ctx.pool));
  }

 private:
  // The batch entries of a state or scan input (its slices along axis 0).
  static std::vector<Tensor> batch_entries(const Tensor& t, int64_t batch, const char* what, const OpContext& ctx) {
    if (t.dims.empty() || t.dims[0] != batch)
      bad_input("{} {} does not have the batch size {} on axis 0", what, describe(t), batch);
    return unstack(t, 0, ctx.pool);
  }

  // `t` with zero slices appended on axis 0 up to `len` slices.
  static Tensor padded(const Tensor& t, int64_t len, ThreadPool* pool) {
    if (t.dims[0] == len) return t;
    std::vector<int64_t> pad_dims = t.dims;
    pad_dims[0] = len - t.dims[0];
    return concat({t, new_zero_tensor(t.dtype, pad_dims)}, 0, pool);
  }

  Subgraph body_;
  size_t states_, scan_inputs_;
  std::vector<int64_t> input_reverse_;
};

template <typename K>
KernelFactory make() {
  return [](const ir::Node& n, const PlanContext& pc) { return std::make_unique<K>(n, pc); };
}

}  // namespace

void register_control_ops() {
  register_kernel("", "If", 1, make<IfKernel>());
  register_kernel("", "Loop", 1, make<LoopKernel>());
  register_kernel("", "Scan", 8, make<Scan8Kernel>());
  register_kernel("", "Scan", 9, make<ScanKernel>());
}

}  // namespace slmops::runtime::ops

namespace slmops::runtime {
void register_control_ops() { ops::register_control_ops(); }
}  // namespace slmops::runtime
