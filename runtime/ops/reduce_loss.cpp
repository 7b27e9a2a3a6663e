// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (= NLL of LogSoftmax along axis 1).
//
// Input [N, C, d1, ...] (log probabilities), target [N, d1, ...] of class indices, optional
// weight [C]. For every position i with class t = target[i]:
//   w_i = weight[t] (1 without weights), 0 when t == ignore_index
//   loss_i = -input[n, t, d] · w_i
// reduction "none" gives loss itself, "sum" Σ loss_i, "mean" Σ loss_i / Σ w_i.
#include "runtime/ops/reduce_common.h"

namespace slmops::runtime::ops::reduction {
namespace {

enum class Reduction { None, Sum, Mean };

Reduction parse_reduction(const ir::Node& n) {
  const std::string r = n.attr_string("reduction", "mean");
  if (r == "none") return Reduction::None;
  if (r == "sum") return Reduction::Sum;
  if (r == "mean") return Reduction::Mean;
  bad_input("attribute reduction is '{}', expected none, sum or mean", r);
}

// The loss of `input` (float types) against `target`, as described above.
Tensor nll_loss(const ir::Node& n, const Tensor& input, const Tensor& target, const Tensor* weight) {
  if (input.dims.size() < 2) bad_input("input has rank {}, expected at least 2", input.dims.size());
  const int64_t batch = input.dims[0], classes = input.dims[1], inner = product(input.dims, 2);
  std::vector<int64_t> target_dims = {batch};
  target_dims.insert(target_dims.end(), input.dims.begin() + 2, input.dims.end());
  if (target.dims != target_dims) bad_input("target {} does not match input {}", describe(target), describe(input));
  if (weight && static_cast<int64_t>(weight->numel()) != classes)
    bad_input("weight has {} elements for {} classes", weight->numel(), classes);
  const bool has_ignore = n.attr("ignore_index") != nullptr;
  const int64_t ignore = n.attr_int("ignore_index", 0);
  const Reduction reduction = parse_reduction(n);
  const std::vector<int64_t> classes_of = to_int64s(target);
  const std::vector<double> weights = weight ? to_doubles(*weight) : std::vector<double>(classes, 1.0);
  const std::vector<double> x = to_doubles(input);

  std::vector<double> loss(classes_of.size());
  double loss_sum = 0, weight_sum = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < inner; ++d) {
      const int64_t i = b * inner + d, t = classes_of[i];
      if (has_ignore && t == ignore) continue;  // loss 0, weight 0
      if (t < 0 || t >= classes) bad_input("target value {} is not a class in [0, {})", t, classes);
      loss[i] = -x[(b * classes + t) * inner + d] * weights[t];
      loss_sum += loss[i];
      weight_sum += weights[t];
    }
  switch (reduction) {
    case Reduction::None: return tensor_from_doubles(input.dtype, target.dims, loss);
    case Reduction::Sum: return tensor_from_doubles(input.dtype, {}, {loss_sum});
    case Reduction::Mean: break;
  }
  return tensor_from_doubles(input.dtype, {}, {loss_sum / weight_sum});
}

const Tensor* optional_input(const OpContext& ctx, size_t i) { return ctx.has_input(i) ? &ctx.in(i) : nullptr; }

void nll(const ir::Node& n, OpContext& ctx) {
  ctx.set_out(0, nll_loss(n, ctx.in(0), ctx.in(1), optional_input(ctx, 2)));
}

// SoftmaxCrossEntropyLoss: log_prob = LogSoftmax(scores, axis 1), the optional second output;
// the loss is the NLL of log_prob.
void softmax_cross_entropy(const ir::Node& n, OpContext& ctx) {
  const Tensor& scores = ctx.in(0);
  if (scores.dims.size() < 2) bad_input("scores have rank {}, expected at least 2", scores.dims.size());
  Tensor log_prob = new_tensor(scores.dtype, scores.dims);
  softmax(scores, log_prob, split_at(scores.dims, 1), true, ctx.pool);
  ctx.set_out(0, nll_loss(n, log_prob, ctx.in(1), optional_input(ctx, 2)));
  if (wants_output(ctx, 1)) ctx.set_out(1, std::move(log_prob));
}

}  // namespace

void register_loss_ops() {
  register_kernel("", "NegativeLogLikelihoodLoss", 12, simple_kernel(nll));
  register_kernel("", "SoftmaxCrossEntropyLoss", 12, simple_kernel(softmax_cross_entropy));
}

}  // namespace slmops::runtime::ops::reduction
