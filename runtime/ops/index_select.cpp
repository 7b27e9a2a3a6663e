// Ops whose output size depends on the values: TopK, Unique, NonZero, NonMaxSuppression.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "runtime/ops/index_common.h"

namespace slmops::runtime::ops::index {
namespace {

// ---- TopK ----------------------------------------------------------------------------------

// a > b, with NaN above every number and equal to NaN, so that sorting by it is well defined.
template <typename C>
bool above(const C& a, const C& b) {
  if constexpr (std::is_floating_point_v<C>)
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && !std::isnan(b);
  return a > b;
}

// The k largest (or smallest) values along `axis` and their int64 indices. Equal values go
// to the lower index first, as in ONNX Runtime. Unsorted output lists the chosen elements in
// index order.
void top_k(const ir::Node& node, OpContext& ctx, int64_t k) {
  const Tensor& x = ctx.in(0);
  const int64_t axis = normalize_axis(node.attr_int("axis", -1), static_cast<int64_t>(x.dims.size()));
  const bool largest = node.attr_int("largest", 1) != 0;
  const bool sorted = node.attr_int("sorted", 1) != 0;
  const AxisSplit s = split_at(x.dims, axis);
  if (k < 0 || k > s.n) bad_input("TopK k {} is outside [0, {}] (the axis length)", k, s.n);

  std::vector<int64_t> shape = x.dims;
  shape[axis] = k;
  Tensor& values = ctx.set_out(0, new_tensor(x.dtype, shape));
  Tensor& indices = ctx.set_out(1, new_tensor(DType::Int64, shape));
  int64_t* out_idx = indices.mutable_values<int64_t>();
  dispatch<kNumeric>(x.dtype, "TopK", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.values<T>();
    T* out_val = values.mutable_values<T>();
    // One line is x[o, :, i]; lines are numbered o·inner + i.
    auto lines = [&](int64_t begin, int64_t end) {
      std::vector<compute_t<T>> keys(s.n);
      std::vector<int64_t> order(s.n);
      // True when element a of the line ranks before element b.
      auto before = [&](int64_t a, int64_t b) {
        const bool a_first = largest ? above(keys[a], keys[b]) : above(keys[b], keys[a]);
        const bool b_first = largest ? above(keys[b], keys[a]) : above(keys[a], keys[b]);
        return a_first || (!b_first && a < b);
      };
      for (int64_t line = begin; line < end; ++line) {
        const int64_t o = line / s.inner, i = line % s.inner;
        const T* in = px + o * s.n * s.inner + i;
        for (int64_t j = 0; j < s.n; ++j) keys[j] = load(in[j * s.inner]);
        std::iota(order.begin(), order.end(), int64_t{0});
        if (sorted) {
          std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
        } else {
          std::nth_element(order.begin(), order.begin() + k, order.end(), before);
          std::sort(order.begin(), order.begin() + k);
        }
        for (int64_t r = 0; r < k; ++r) {
          const int64_t at = (o * k + r) * s.inner + i;
          out_val[at] = in[order[r] * s.inner];
          out_idx[at] = order[r];
        }
      }
    };
    ctx.pool->parallel_for(s.outer * s.inner, std::max<int64_t>(1, (1 << 12) / std::max<int64_t>(s.n, 1)), lines);
  });
}

// ---- Unique --------------------------------------------------------------------------------

// The distinct values (or, with an axis, distinct slices along it) of x, in ascending
// (lexicographic for slices) order or in order of first occurrence, with
//   indices[u]          the first position of unique u in x,
//   inverse_indices[j]  the unique that position j of x holds,
//   counts[u]           how often unique u occurs.
void unique(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const bool sorted = node.attr_int("sorted", 1) != 0;
  const bool has_axis = node.attr("axis") != nullptr;
  AxisSplit s{1, static_cast<int64_t>(x.numel()), 1};  // flattened when there is no axis
  int64_t axis = 0;
  if (has_axis) {
    axis = normalize_axis(node.attr_int("axis", 0), static_cast<int64_t>(x.dims.size()));
    s = split_at(x.dims, axis);
  }

  // Positions along the axis in ascending order of their slices; equal slices stay in
  // position order, so the first of each run is the first occurrence.
  std::vector<int64_t> order(s.n);
  std::iota(order.begin(), order.end(), int64_t{0});
  std::vector<bool> starts_run(s.n, false);  // order[p] differs from order[p - 1]
  auto sort_slices = [&](auto tag) {
    using T = decltype(tag);
    const T* px = elements<T>(x);
    // Three-way lexicographic comparison of slices a and b (elements (o, i) in row-major order).
    auto compare = [&](int64_t a, int64_t b) {
      for (int64_t o = 0; o < s.outer; ++o) {
        const T* pa = px + (o * s.n + a) * s.inner;
        const T* pb = px + (o * s.n + b) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) {
          if (above(load(pb[i]), load(pa[i]))) return -1;
          if (above(load(pa[i]), load(pb[i]))) return 1;
        }
      }
      return 0;
    };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return compare(a, b) < 0; });
    for (int64_t p = 0; p < s.n; ++p) starts_run[p] = p == 0 || compare(order[p - 1], order[p]) != 0;
  };
  if (x.dtype == DType::String) sort_slices(std::string{});
  else dispatch(x.dtype, "Unique", sort_slices);

  // Uniques in ascending order: first occurrence and count of each; unique of each position.
  std::vector<int64_t> first, counts, inverse(s.n);
  for (int64_t p = 0; p < s.n; ++p) {
    if (starts_run[p]) {
      first.push_back(order[p]);
      counts.push_back(0);
    }
    inverse[order[p]] = static_cast<int64_t>(first.size()) - 1;
    ++counts.back();
  }
  const int64_t u = static_cast<int64_t>(first.size());
  if (!sorted) {
    // Renumber the uniques by first occurrence.
    std::vector<int64_t> by_first(u), renumber(u);
    std::iota(by_first.begin(), by_first.end(), int64_t{0});
    std::sort(by_first.begin(), by_first.end(), [&](int64_t a, int64_t b) { return first[a] < first[b]; });
    std::vector<int64_t> f(u), c(u);
    for (int64_t r = 0; r < u; ++r) {
      renumber[by_first[r]] = r;
      f[r] = first[by_first[r]];
      c[r] = counts[by_first[r]];
    }
    first = std::move(f);
    counts = std::move(c);
    for (int64_t& v : inverse) v = renumber[v];
  }

  std::vector<int64_t> y_shape = {u};
  if (has_axis) {
    y_shape = x.dims;
    y_shape[axis] = u;
  }
  copy_chunks(x, axis_offsets(s, first), s.inner, ctx.set_out(0, new_tensor(x.dtype, y_shape)), ctx.pool);
  const std::array<const std::vector<int64_t>*, 3> extra = {&first, &inverse, &counts};
  for (size_t k = 0; k < extra.size() && k + 1 < ctx.output_count(); ++k)
    ctx.set_out(k + 1, Tensor::from_values("", DType::Int64, {static_cast<int64_t>(extra[k]->size())}, *extra[k]));
}

// ---- NonZero -------------------------------------------------------------------------------

// The coordinates of the non-zero elements as int64 [rank, count], in row-major order.
void non_zero(const ir::Node&, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  std::vector<int64_t> hits;  // linear positions
  dispatch<kAll>(x.dtype, "NonZero", [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.values<T>();
    for (uint64_t i = 0; i < x.numel(); ++i)
      if (load(p[i]) != compute_t<T>(0)) hits.push_back(static_cast<int64_t>(i));
  });
  const int64_t rank = static_cast<int64_t>(x.dims.size()), count = static_cast<int64_t>(hits.size());
  const std::vector<int64_t> strides = strides_of(x.dims);
  Tensor& y = ctx.set_out(0, new_tensor(DType::Int64, {rank, count}));
  int64_t* py = y.mutable_values<int64_t>();
  for (int64_t d = 0; d < rank; ++d)
    for (int64_t h = 0; h < count; ++h) py[d * count + h] = hits[h] / strides[d] % x.dims[d];
}

// ---- NonMaxSuppression ---------------------------------------------------------------------

// A box by its corners, y1 <= y2 and x1 <= x2.
struct Box {
  float y1, x1, y2, x2;
  float area() const { return (y2 - y1) * (x2 - x1); }
};

// From [y1, x1, y2, x2] (either corner pair first) or, with center_point_box, [xc, yc, w, h].
Box box_at(const float* p, bool center) {
  if (center) return {p[1] - p[3] / 2, p[0] - p[2] / 2, p[1] + p[3] / 2, p[0] + p[2] / 2};
  return {std::min(p[0], p[2]), std::min(p[1], p[3]), std::max(p[0], p[2]), std::max(p[1], p[3])};
}

// IoU(a, b) = |a ∩ b| / (|a| + |b| - |a ∩ b|) > threshold; empty boxes never overlap.
bool overlaps(const Box& a, const Box& b, float threshold) {
  const float w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const float h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  if (a.area() <= 0 || b.area() <= 0 || w <= 0 || h <= 0) return false;
  const float inter = w * h;
  return inter / (a.area() + b.area() - inter) > threshold;
}

// Greedy NMS per (batch, class): boxes by descending score (ties: lower index first), above
// score_threshold, each kept unless it overlaps a kept one by more than iou_threshold, at
// most max_output_boxes_per_class. Output rows are [batch, class, box], batch- then
// class-major, in selection order.
void non_max_suppression(const ir::Node& node, OpContext& ctx) {
  const Tensor& boxes = ctx.in(0);
  const Tensor& scores = ctx.in(1);
  if (boxes.dtype != DType::Float || scores.dtype != DType::Float)
    bad_input("NonMaxSuppression boxes and scores must be float, got {} and {}", describe(boxes), describe(scores));
  if (boxes.dims.size() != 3 || boxes.dims[2] != 4 || scores.dims.size() != 3 || scores.dims[0] != boxes.dims[0] ||
      scores.dims[2] != boxes.dims[1])
    bad_input("NonMaxSuppression needs boxes [B, N, 4] and scores [B, C, N], got {} and {}", describe(boxes),
              describe(scores));
  const int64_t max_out = ctx.has_input(2) ? scalar_int(ctx.in(2), "NonMaxSuppression max_output_boxes_per_class") : 0;
  const float iou_threshold = ctx.has_input(3) ? static_cast<float>(scalar_as_double(ctx.in(3))) : 0.f;
  const bool has_score_threshold = ctx.has_input(4);
  const float score_threshold = has_score_threshold ? static_cast<float>(scalar_as_double(ctx.in(4))) : 0.f;
  if (iou_threshold < 0 || iou_threshold > 1)
    bad_input("NonMaxSuppression iou_threshold {} is outside [0, 1]", iou_threshold);
  const bool center = node.attr_int("center_point_box", 0) != 0;
  const int64_t batches = boxes.dims[0], n = boxes.dims[1], classes = scores.dims[1];

  // The kept boxes of every (batch, class), found in parallel.
  std::vector<std::vector<int64_t>> kept(batches * classes);
  auto run = [&](int64_t begin, int64_t end) {
    std::vector<int64_t> candidates;
    std::vector<Box> kept_boxes;
    for (int64_t bc = begin; bc < end; ++bc) {
      const float* score = scores.values<float>() + bc * n;
      const float* box = boxes.values<float>() + bc / classes * n * 4;
      candidates.clear();
      for (int64_t j = 0; j < n; ++j)
        if (!has_score_threshold || score[j] > score_threshold) candidates.push_back(j);
      std::stable_sort(candidates.begin(), candidates.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
      kept_boxes.clear();
      for (int64_t j : candidates) {
        if (static_cast<int64_t>(kept[bc].size()) >= max_out) break;
        const Box candidate = box_at(box + j * 4, center);
        if (std::none_of(kept_boxes.begin(), kept_boxes.end(),
                         [&](const Box& k) { return overlaps(k, candidate, iou_threshold); })) {
          kept[bc].push_back(j);
          kept_boxes.push_back(candidate);
        }
      }
    }
  };
  ctx.pool->parallel_for(batches * classes, 1, run);

  int64_t total = 0;
  for (auto& k : kept) total += static_cast<int64_t>(k.size());
  Tensor& y = ctx.set_out(0, new_tensor(DType::Int64, {total, 3}));
  int64_t* row = y.mutable_values<int64_t>();
  for (int64_t bc = 0; bc < batches * classes; ++bc)
    for (int64_t j : kept[bc]) {
      row[0] = bc / classes;
      row[1] = bc % classes;
      row[2] = j;
      row += 3;
    }
}

}  // namespace

void register_select_ops() {
  register_kernel("", "TopK", 1, simple_kernel([](const ir::Node& n, OpContext& c) { top_k(n, c, n.attr_int("k", -1)); }));
  // Opset 10 moved k to an input; opset 11 added largest/sorted, whose defaults are the
  // earlier behaviour.
  register_kernel("", "TopK", 10, simple_kernel([](const ir::Node& n, OpContext& c) {
                    top_k(n, c, scalar_int(c.in(1), "TopK k"));
                  }));
  register_kernel("", "Unique", 11, simple_kernel(unique));
  register_kernel("", "NonZero", 9, simple_kernel(non_zero));
  register_kernel("", "NonMaxSuppression", 10, simple_kernel(non_max_suppression));
}

}  // namespace slmops::runtime::ops::index
