#include "runtime/ops/control_util.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/ops/tensor_copy.h"

namespace slmops::runtime::ops {

Subgraph::Subgraph(const ir::Node& node, const char* attr, const PlanContext& pc) : attr_(attr) {
  const ir::Attribute* a = node.attr(attr);
  if (!a || !a->g) bad_input("attribute '{}' (a graph) is missing", attr);
  graph_ = a->g.get();
  runner_ = std::make_unique<GraphRunner>(*graph_, pc);
}

std::vector<RValue> Subgraph::run(std::vector<RValue> inputs, const OpContext& ctx) const {
  if (inputs.size() != input_count())
    bad_input("attribute '{}': the graph takes {} inputs, got {}", attr_, input_count(), inputs.size());
  try {
    return runner_->run(std::move(inputs), *ctx.pool, ctx.frame);
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("in '{}': {}", attr_, e.what()));
  }
}

Tensor scalar_int64(int64_t v) { return Tensor::from_values("", DType::Int64, {}, std::vector<int64_t>{v}); }

Tensor scalar_bool(bool v) { return Tensor::from_values("", DType::Bool, {}, std::vector<uint8_t>{v}); }

bool read_bool(const Tensor& t, const char* what) {
  if (t.dtype != DType::Bool || t.numel() != 1)
    bad_input("{} must be a single bool, got {}", what, describe(t));
  return t.values<bool>()[0];
}

int64_t read_int64(const Tensor& t, const char* what) {
  if (t.numel() != 1 || !ir::traits(t.dtype).is_integer)
    bad_input("{} must be a single integer, got {}", what, describe(t));
  return to_int64s(t)[0];
}

RValue input_value(const OpContext& ctx, size_t i) {
  return i < ctx.inputs.size() && ctx.inputs[i] ? *ctx.inputs[i] : RValue{};
}

const Tensor& expect_tensor(const RValue& v, const std::string& what) {
  if (!v.is_tensor())
    bad_input("{} must be a tensor, got {}", what, v.kind == RValue::Kind::Sequence ? "a sequence" : "nothing");
  return v.tensor;
}

Tensor concat(const std::vector<Tensor>& parts, int64_t axis, ThreadPool* pool) {
  const Tensor& first = parts.at(0);
  std::vector<int64_t> dims = first.dims;
  dims[axis] = 0;
  for (const Tensor& p : parts) {
    bool same_dims = p.dims.size() == dims.size();
    for (size_t k = 0; same_dims && k < dims.size(); ++k) same_dims = static_cast<int64_t>(k) == axis || p.dims[k] == dims[k];
    if (p.dtype != first.dtype || !same_dims)
      bad_input("cannot join {} and {} along axis {}", describe(first), describe(p), axis);
    dims[axis] += p.dims[axis];
  }
  Tensor out = new_tensor(first.dtype, dims);
  const std::vector<int64_t> out_strides = strides_of(dims);
  int64_t offset = 0;  // where the next part starts along `axis`
  for (const Tensor& p : parts) {
    StridedCopy c{p.dims, strides_of(p.dims), out_strides, 0, offset * out_strides[axis]};
    strided_copy(p, out, c, pool);
    offset += p.dims[axis];
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& parts, int64_t axis, ThreadPool* pool) {
  std::vector<Tensor> expanded;
  expanded.reserve(parts.size());
  for (const Tensor& p : parts) {
    if (p.dims != parts.at(0).dims)
      bad_input("cannot stack {} and {}: shapes differ", describe(parts[0]), describe(p));
    std::vector<int64_t> dims = p.dims;
    dims.insert(dims.begin() + axis, 1);
    expanded.push_back(reshaped(p, std::move(dims)));
  }
  return concat(expanded, axis, pool);
}

Tensor empty_stack(const ir::TensorType& slice, int64_t axis) {
  if (slice.elem() == DType::Undefined)
    bad_input("no slices to stack, and the graph does not declare their element type");
  std::vector<int64_t> dims;
  for (const ir::Dim& d : slice.dims) dims.push_back(d.known() ? d.value : 0);
  dims.insert(dims.begin() + axis, 0);
  return new_tensor(slice.elem(), dims);
}

std::vector<Tensor> split(const Tensor& t, int64_t axis, const std::vector<int64_t>& lengths, ThreadPool* pool) {
  int64_t total = 0;
  for (int64_t n : lengths) {
    if (n < 0) bad_input("split lengths [{}] has a negative entry", fmt::join(lengths, ", "));
    total += n;
  }
  if (total != t.dims[axis])
    bad_input("split lengths [{}] add up to {}, but axis {} of {} has {}", fmt::join(lengths, ", "), total, axis,
              describe(t), t.dims[axis]);
  const std::vector<int64_t> src_strides = strides_of(t.dims);
  std::vector<Tensor> pieces;
  int64_t offset = 0;  // where the next piece starts along `axis`
  for (int64_t n : lengths) {
    std::vector<int64_t> dims = t.dims;
    dims[axis] = n;
    Tensor piece = new_tensor(t.dtype, dims);
    strided_copy(t, piece, StridedCopy::into_contiguous(dims, src_strides, offset * src_strides[axis]), pool);
    pieces.push_back(std::move(piece));
    offset += n;
  }
  return pieces;
}

std::vector<Tensor> unstack(const Tensor& t, int64_t axis, ThreadPool* pool) {
  std::vector<Tensor> slices = split(t, axis, std::vector<int64_t>(t.dims[axis], 1), pool);
  std::vector<int64_t> dims = t.dims;
  dims.erase(dims.begin() + axis);
  for (Tensor& s : slices) s = reshaped(s, dims);
  return slices;
}

}  // namespace slmops::runtime::ops
