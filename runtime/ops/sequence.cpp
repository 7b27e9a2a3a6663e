// Sequence ops (SequenceEmpty ... ConcatFromSequence, SequenceMap) and optional ops
// (Optional, OptionalHasElement, OptionalGetElement). A sequence is an RValue of kind
// Sequence; an optional is an RValue with the `optional` flag, empty when its kind is None.
#include <fmt/format.h>

#include "runtime/ops/control_util.h"

namespace slmops::runtime::ops {
namespace {

// The node's input i as a sequence; throws naming the input otherwise.
const std::vector<Tensor>& sequence_in(const OpContext& ctx, size_t i) {
  if (i >= ctx.inputs.size() || !ctx.inputs[i] || ctx.inputs[i]->kind != RValue::Kind::Sequence)
    bad_input("input {} is not a sequence", i);
  return ctx.inputs[i]->sequence;
}

// The position given by input i, checked against [-size, size - 1] (or [-size, size] when
// `one_past_end`) and made non-negative.
size_t position_in(const OpContext& ctx, size_t i, size_t size, bool one_past_end) {
  const int64_t n = static_cast<int64_t>(size);
  const int64_t p = read_int64(ctx.in(i), "input 'position'");
  if (p < -n || p > (one_past_end ? n : n - 1))
    bad_input("position {} is out of range for a sequence of {} tensors", p, n);
  return static_cast<size_t>(p < 0 ? p + n : p);
}

void set_sequence(OpContext& ctx, std::vector<Tensor> s) { (*ctx.outputs)[0] = RValue::of_sequence(std::move(s)); }

// Checks that `t` may join `seq` (a sequence holds tensors of one element type).
void check_same_type(const std::vector<Tensor>& seq, const Tensor& t) {
  if (!seq.empty() && seq[0].dtype != t.dtype)
    bad_input("a {} tensor cannot join a sequence of {} tensors", ir::dtype_name(t.dtype), ir::dtype_name(seq[0].dtype));
}

void register_sequence_basics() {
  register_kernel("", "SequenceEmpty", 11, simple_kernel([](const ir::Node&, OpContext& ctx) { set_sequence(ctx, {}); }));

  register_kernel("", "SequenceConstruct", 11, simple_kernel([](const ir::Node&, OpContext& ctx) {
    std::vector<Tensor> seq;
    for (size_t i = 0; i < ctx.input_count(); ++i) {
      check_same_type(seq, ctx.in(i));
      seq.push_back(ctx.in(i));
    }
    set_sequence(ctx, std::move(seq));
  }));

  register_kernel("", "SequenceInsert", 11, simple_kernel([](const ir::Node&, OpContext& ctx) {
    std::vector<Tensor> seq = sequence_in(ctx, 0);
    const Tensor& t = ctx.in(1);
    check_same_type(seq, t);
    const size_t at = ctx.has_input(2) ? position_in(ctx, 2, seq.size(), true) : seq.size();
    seq.insert(seq.begin() + at, t);
    set_sequence(ctx, std::move(seq));
  }));

  register_kernel("", "SequenceAt", 11, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const std::vector<Tensor>& seq = sequence_in(ctx, 0);
    ctx.set_out(0, seq[position_in(ctx, 1, seq.size(), false)]);
  }));

  register_kernel("", "SequenceErase", 11, simple_kernel([](const ir::Node&, OpContext& ctx) {
    std::vector<Tensor> seq = sequence_in(ctx, 0);
    if (seq.empty()) bad_input("cannot erase from an empty sequence");
    const size_t at = ctx.has_input(1) ? position_in(ctx, 1, seq.size(), false) : seq.size() - 1;
    seq.erase(seq.begin() + at);
    set_sequence(ctx, std::move(seq));
  }));

  register_kernel("", "SequenceLength", 11, simple_kernel([](const ir::Node&, OpContext& ctx) {
    ctx.set_out(0, scalar_int64(static_cast<int64_t>(sequence_in(ctx, 0).size())));
  }));
}

// SplitToSequence: without 'split', one slice per index of the axis (squeezed unless
// keepdims); with a scalar 'split', pieces of that length (the last may be shorter); with a
// 1-D 'split', pieces of those lengths.
std::vector<int64_t> split_lengths(const OpContext& ctx, int64_t dim) {
  if (!ctx.has_input(1)) return std::vector<int64_t>(dim, 1);
  const Tensor& s = ctx.in(1);
  if (s.dims.size() > 1) bad_input("input 'split' must be a scalar or 1-D, got {}", describe(s));
  if (!s.dims.empty()) return to_int64s(s);
  const int64_t chunk = read_int64(s, "input 'split'");
  if (chunk <= 0) bad_input("input 'split' is {}, expected a positive length", chunk);
  std::vector<int64_t> lengths(dim / chunk, chunk);
  if (dim % chunk) lengths.push_back(dim % chunk);
  return lengths;
}

void register_split_concat() {
  register_kernel("", "SplitToSequence", 11, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const int64_t axis = normalize_axis(n.attr_int("axis", 0), static_cast<int64_t>(x.dims.size()));
    if (!ctx.has_input(1) && n.attr_int("keepdims", 1) == 0) return set_sequence(ctx, unstack(x, axis, ctx.pool));
    set_sequence(ctx, split(x, axis, split_lengths(ctx, x.dims[axis]), ctx.pool));
  }));

  register_kernel("", "ConcatFromSequence", 11, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const std::vector<Tensor>& seq = sequence_in(ctx, 0);
    if (seq.empty()) bad_input("input 0 is an empty sequence");
    if (!n.attr("axis")) bad_input("attribute 'axis' is missing");
    const bool new_axis = n.attr_int("new_axis", 0) != 0;
    const int64_t rank = static_cast<int64_t>(seq[0].dims.size());
    const int64_t axis = normalize_axis(n.attr_int("axis", 0), new_axis ? rank + 1 : rank);
    ctx.set_out(0, new_axis ? stack(seq, axis, ctx.pool) : concat(seq, axis, ctx.pool));
  }));
}

// SequenceMap: runs 'body' once per element of the first input. The body receives element i
// of each sequence input and every tensor input whole; each body output is collected into
// an output sequence.
class SequenceMapKernel : public Kernel {
 public:
  SequenceMapKernel(const ir::Node& n, const PlanContext& pc) : body_(n, "body", pc) {
    if (body_.input_count() != n.inputs.size() || body_.output_count() != n.outputs.size())
      bad_input("attribute 'body' has {} inputs and {} outputs, but the node has {} and {}", body_.input_count(),
                body_.output_count(), n.inputs.size(), n.outputs.size());
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (!n.inputs[i]) bad_input("input {} is empty; every input must be given", i);
  }

  void run(OpContext& ctx) override {
    const size_t count = sequence_in(ctx, 0).size();
    for (size_t i = 1; i < ctx.input_count(); ++i)
      if (ctx.inputs[i]->kind == RValue::Kind::Sequence && ctx.inputs[i]->sequence.size() != count)
        bad_input("input {} has {} elements, but input 0 has {}", i, ctx.inputs[i]->sequence.size(), count);
    std::vector<std::vector<Tensor>> results(ctx.output_count());
    for (size_t e = 0; e < count; ++e) {
      std::vector<RValue> in;
      for (const RValue* v : ctx.inputs) in.push_back(v->kind == RValue::Kind::Sequence ? RValue::of(v->sequence[e]) : *v);
      std::vector<RValue> out = body_.run(std::move(in), ctx);
      for (size_t k = 0; k < out.size(); ++k)
        results[k].push_back(expect_tensor(out[k], fmt::format("body output {}", k)));
    }
    for (size_t k = 0; k < results.size(); ++k) (*ctx.outputs)[k] = RValue::of_sequence(std::move(results[k]));
  }

 private:
  Subgraph body_;
};

// Optional wraps its input (or nothing); OptionalHasElement and OptionalGetElement accept
// an optional or, from opset 18, a plain tensor or sequence (which always has an element).
void register_optional_ops() {
  register_kernel("", "Optional", 15, simple_kernel([](const ir::Node&, OpContext& ctx) {
    RValue v = input_value(ctx, 0);
    v.optional = true;
    (*ctx.outputs)[0] = std::move(v);
  }));

  register_kernel("", "OptionalHasElement", 15, simple_kernel([](const ir::Node&, OpContext& ctx) {
    ctx.set_out(0, scalar_bool(ctx.has_input(0)));
  }));

  register_kernel("", "OptionalGetElement", 15, simple_kernel([](const ir::Node&, OpContext& ctx) {
    RValue v = input_value(ctx, 0);
    if (v.kind == RValue::Kind::None) bad_input("input 0 is an empty optional");
    v.optional = false;
    (*ctx.outputs)[0] = std::move(v);
  }));
}

}  // namespace

void register_sequence_ops() {
  register_sequence_basics();
  register_split_concat();
  register_kernel("", "SequenceMap", 17, [](const ir::Node& n, const PlanContext& pc) {
    return std::make_unique<SequenceMapKernel>(n, pc);
  });
  register_optional_ops();
}

}  // namespace slmops::runtime::ops

namespace slmops::runtime {
void register_sequence_ops() { ops::register_sequence_ops(); }
}  // namespace slmops::runtime
