// Ops that move elements between layouts without looking at them: Transpose, Concat,
// Split, Slice, Expand, Tile (each one strided copy per input or output) and Pad (a gather
// through per-axis index maps). All work on any element type, strings included.
#include <algorithm>
#include <fmt/ranges.h>

#include "runtime/ops/tensor_common.h"
#include "runtime/ops/tensor_copy.h"

namespace slmops::runtime::ops {
namespace {

// [0, 1, ..., count - 1].
std::vector<int64_t> all_axes(int64_t count) {
  std::vector<int64_t> axes(count);
  for (int64_t i = 0; i < count; ++i) axes[i] = i;
  return axes;
}

// ---- Transpose -----------------------------------------------------------------------------

void reg_transpose() {
  register_kernel("", "Transpose", 1, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const size_t rank = x.dims.size();
    std::vector<int64_t> perm = all_axes(static_cast<int64_t>(rank));
    if (n.attr("perm")) perm = n.attr_ints("perm");
    else std::reverse(perm.begin(), perm.end());  // the default
    std::vector<bool> seen(rank, false);
    if (perm.size() != rank) bad_input("perm has {} entries for an input of rank {}", perm.size(), rank);
    for (int64_t& p : perm) {
      p = normalize_axis(p, static_cast<int64_t>(rank), "perm entry");
      if (seen[p]) bad_input("perm [{}] is not a permutation", fmt::join(perm, ", "));
      seen[p] = true;
    }
    // Output axis i is input axis perm[i].
    const auto in_strides = strides_of(x.dims);
    std::vector<int64_t> dims(rank), strides(rank);
    for (size_t i = 0; i < rank; ++i) {
      dims[i] = x.dims[perm[i]];
      strides[i] = in_strides[perm[i]];
    }
    ctx.set_out(0, copy_to_new(x, StridedCopy::into_contiguous(dims, strides), dims, ctx.pool));
  }));
}

// ---- Concat / Split ------------------------------------------------------------------------

// Concat-1 defaults axis to 1; from opset 4 it is required.
void reg_concat(int since) {
  register_kernel("", "Concat", since, simple_kernel([since](const ir::Node& n, OpContext& ctx) {
    const Tensor& first = ctx.in(0);
    const int64_t rank = static_cast<int64_t>(first.dims.size());
    if (since >= 4 && !n.attr("axis")) bad_input("attribute axis is missing");
    const int64_t axis = normalize_axis(n.attr_int("axis", 1), rank);
    std::vector<int64_t> dims = first.dims;
    dims[axis] = 0;
    for (size_t i = 0; i < ctx.input_count(); ++i) {
      const Tensor& x = ctx.in(i);
      bool fits = x.dtype == first.dtype && x.dims.size() == first.dims.size();
      for (int64_t k = 0; fits && k < rank; ++k) fits = k == axis || x.dims[k] == first.dims[k];
      if (!fits) bad_input("input {} is {}, which does not concatenate with input 0 ({}) on axis {}", i, describe(x), describe(first), axis);
      dims[axis] += x.dims[axis];
    }
    Tensor& y = ctx.set_out(0, new_tensor(first.dtype, dims));
    // Input i goes to the block of y that starts at `offset` along the axis.
    const auto out_strides = strides_of(dims);
    int64_t offset = 0;
    for (size_t i = 0; i < ctx.input_count(); ++i) {
      const Tensor& x = ctx.in(i);
      StridedCopy c;
      c.dims = x.dims;
      c.src_strides = strides_of(x.dims);
      c.dst_strides = out_strides;
      c.dst_offset = offset * out_strides[axis];
      strided_copy(x, y, c, ctx.pool);
      offset += x.dims[axis];
    }
  }));
}

// The length of each output of Split along an axis of length n: the explicit list, else
// `parts` pieces of ceil(n / parts) with a smaller last one (equal when n divides evenly).
std::vector<int64_t> split_lengths(int64_t n, const std::optional<std::vector<int64_t>>& given, int64_t parts) {
  std::vector<int64_t> lengths;
  if (given && !given->empty()) {
    lengths = *given;
  } else {
    if (parts < 1) bad_input("Split has no outputs");
    const int64_t chunk = (n + parts - 1) / parts;
    lengths.assign(parts, chunk);
    lengths.back() = n - chunk * (parts - 1);
  }
  int64_t total = 0;
  for (int64_t l : lengths) {
    if (l < 0) bad_input("split lengths [{}] do not divide an axis of length {}", fmt::join(lengths, ", "), n);
    total += l;
  }
  if (total != n) bad_input("split lengths [{}] add up to {}, not the axis length {}", fmt::join(lengths, ", "), total, n);
  return lengths;
}

// Split gives `split` as an attribute before opset 13 (Split-1 also takes it as input 1),
// as input 1 after; opset 18 adds num_outputs.
void reg_split(int since) {
  register_kernel("", "Split", since, simple_kernel([since](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const int64_t axis = normalize_axis(n.attr_int("axis", 0), static_cast<int64_t>(x.dims.size()));
    auto given = int_list(n, ctx, since >= 13, 1, "split");
    if (since == 1 && !given) given = int_list(n, ctx, true, 1, "split");
    int64_t parts = static_cast<int64_t>(ctx.output_count());
    if (const ir::Attribute* num = n.attr("num_outputs")) {
      if (num->i != parts) bad_input("num_outputs is {} but the node has {} outputs", num->i, parts);
      if (given) bad_input("split and num_outputs are both given");
    }
    const auto lengths = split_lengths(x.dims[axis], given, parts);
    if (static_cast<int64_t>(lengths.size()) != parts)
      bad_input("split has {} lengths for {} outputs", lengths.size(), parts);
    // Output i is the block of x that starts at `offset` along the axis.
    const auto in_strides = strides_of(x.dims);
    int64_t offset = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      std::vector<int64_t> dims = x.dims;
      dims[axis] = lengths[i];
      ctx.set_out(i, copy_to_new(x, StridedCopy::into_contiguous(dims, in_strides, offset * in_strides[axis]), dims, ctx.pool));
      offset += lengths[i];
    }
  }));
}

// ---- Slice ---------------------------------------------------------------------------------

// Slice takes starts/ends/axes as attributes before opset 10, then starts/ends/axes/steps
// as inputs 1-4. Per sliced axis of length n, negative starts/ends count from the end and
// are clamped to [0, n] (step > 0) or [-1, n-1] (step < 0); the output has
// ceil((end - start) / step) elements (none if negative): start, start + step, ...
void reg_slice(int since) {
  register_kernel("", "Slice", since, simple_kernel([since](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const bool inputs = since >= 10;
    const auto starts = int_list(n, ctx, inputs, 1, "starts");
    const auto ends = int_list(n, ctx, inputs, 2, "ends");
    if (!starts || !ends) bad_input("starts and ends are required");
    if (starts->size() != ends->size()) bad_input("starts has {} entries but ends has {}", starts->size(), ends->size());
    const size_t count = starts->size();
    const int64_t rank = static_cast<int64_t>(x.dims.size());
    auto axes = int_list(n, ctx, inputs, 3, "axes");
    if (!axes) axes = all_axes(static_cast<int64_t>(count));
    const auto steps = int_list(n, ctx, inputs, 4, "steps").value_or(std::vector<int64_t>(count, 1));
    if (axes->size() != count || steps.size() != count)
      bad_input("starts, ends, axes and steps have {}, {}, {} and {} entries", count, ends->size(), axes->size(), steps.size());

    const auto in_strides = strides_of(x.dims);
    std::vector<int64_t> dims = x.dims, strides = in_strides;
    std::vector<bool> seen(rank, false);
    int64_t offset = 0;
    for (size_t i = 0; i < count; ++i) {
      const int64_t axis = normalize_axis((*axes)[i], rank);
      if (seen[axis]) bad_input("axis {} is sliced twice", axis);
      seen[axis] = true;
      const int64_t len = x.dims[axis], step = steps[i];
      if (step == 0) bad_input("steps must not be 0");
      int64_t start = (*starts)[i], end = (*ends)[i];
      if (start < 0) start += len;
      if (end < 0) end += len;
      int64_t size = 0;
      if (step > 0) {
        start = std::clamp<int64_t>(start, 0, len);
        end = std::clamp<int64_t>(end, 0, len);
        if (end > start) size = (end - start + step - 1) / step;
      } else if (len > 0) {
        start = std::clamp<int64_t>(start, 0, len - 1);
        end = std::clamp<int64_t>(end, -1, len - 1);
        if (start > end) size = (start - end - step - 1) / -step;
      }
      dims[axis] = size;
      if (size > 0) offset += start * in_strides[axis];
      strides[axis] = step * in_strides[axis];
    }
    ctx.set_out(0, copy_to_new(x, StridedCopy::into_contiguous(dims, strides, offset), dims, ctx.pool));
  }));
}

// ---- Expand / Tile -------------------------------------------------------------------------

void reg_expand() {
  register_kernel("", "Expand", 8, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const auto dims = broadcast_shapes({x.dims, to_int64s(ctx.in(1))});
    ctx.set_out(0, copy_to_new(x, StridedCopy::into_contiguous(dims, broadcast_strides(x.dims, dims)), dims, ctx.pool));
  }));
}

// Tile: output axis k has repeats[k]·n_k elements, element j reading input j mod n_k.
// Viewed as shape [repeats_0, n_0, repeats_1, n_1, ...], the output is one strided copy
// whose repeat axes have source stride 0.
void tile(OpContext& ctx, const std::vector<int64_t>& repeats) {
  const Tensor& x = ctx.in(0);
  if (repeats.size() != x.dims.size())
    bad_input("repeats has {} entries for an input of rank {}", repeats.size(), x.dims.size());
  const auto in_strides = strides_of(x.dims);
  std::vector<int64_t> dims, view_dims, view_strides;
  for (size_t k = 0; k < repeats.size(); ++k) {
    if (repeats[k] < 0) bad_input("repeats [{}] has a negative entry", fmt::join(repeats, ", "));
    dims.push_back(x.dims[k] * repeats[k]);
    view_dims.insert(view_dims.end(), {repeats[k], x.dims[k]});
    view_strides.insert(view_strides.end(), {0, in_strides[k]});
  }
  ctx.set_out(0, copy_to_new(x, StridedCopy::into_contiguous(view_dims, view_strides), dims, ctx.pool));
}

void reg_tile() {
  // Tile-1 repeats the input `tiles` times along one `axis` (inputs 1 and 2).
  register_kernel("", "Tile", 1, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const int64_t rank = static_cast<int64_t>(ctx.in(0).dims.size());
    std::vector<int64_t> repeats(rank, 1);
    repeats[normalize_axis(to_int64s(ctx.in(2)).at(0), rank)] = to_int64s(ctx.in(1)).at(0);
    tile(ctx, repeats);
  }));
  register_kernel("", "Tile", 6,
                  simple_kernel([](const ir::Node&, OpContext& ctx) { tile(ctx, to_int64s(ctx.in(1))); }));
}

// ---- Pad -----------------------------------------------------------------------------------

enum class PadMode { Constant, Reflect, Edge, Wrap };

PadMode pad_mode(const std::string& s) {
  if (s == "constant") return PadMode::Constant;
  if (s == "reflect") return PadMode::Reflect;
  if (s == "edge") return PadMode::Edge;
  if (s == "wrap") return PadMode::Wrap;
  bad_input("mode '{}' is not one of constant, reflect, edge, wrap", s);
}

// For each position o of a padded axis, the input index it reads (i = o - before when
// inside [0, n)), or -1 for the constant value. Outside, edge clamps i to [0, n-1], wrap
// takes i mod n, reflect mirrors without repeating the edge: i mod 2(n-1), then
// 2(n-1) - i if that is >= n.
std::vector<int64_t> pad_index_map(int64_t n, int64_t before, int64_t out_len, PadMode mode) {
  auto positive_mod = [](int64_t a, int64_t m) { return (a % m + m) % m; };
  std::vector<int64_t> map(out_len);
  for (int64_t o = 0; o < out_len; ++o) {
    int64_t i = o - before;
    if (i < 0 || i >= n) {
      if (mode != PadMode::Constant && n == 0) bad_input("cannot pad an empty axis in a non-constant mode");
      switch (mode) {
        case PadMode::Constant: i = -1; break;
        case PadMode::Edge: i = std::clamp<int64_t>(i, 0, n - 1); break;
        case PadMode::Wrap: i = positive_mod(i, n); break;
        case PadMode::Reflect:
          if (n == 1) {
            i = 0;
          } else {
            i = positive_mod(i, 2 * (n - 1));
            if (i >= n) i = 2 * (n - 1) - i;
          }
          break;
      }
    }
    map[o] = i;
  }
  return map;
}

// Maximal runs of an index map that read consecutive input elements (or are all -1).
struct Run {
  int64_t begin, len, src;  // src -1: constant
};
std::vector<Run> runs_of(const std::vector<int64_t>& map) {
  std::vector<Run> runs;
  for (int64_t o = 0; o < static_cast<int64_t>(map.size()); ++o) {
    if (!runs.empty()) {
      Run& r = runs.back();
      const bool continues = r.src < 0 ? map[o] < 0 : map[o] == r.src + r.len;
      if (continues) {
        ++r.len;
        continue;
      }
    }
    runs.push_back({o, 1, map[o]});
  }
  return runs;
}

// y[o_0, ..., o_last] = x[map_0[o_0], ..., map_last[o_last]], or `value` where any map is -1.
// Row by row: the outer axes give a source row (or none), the last axis is a list of runs.
template <typename T>
void pad_gather(const Tensor& x, Tensor& y, const std::vector<std::vector<int64_t>>& maps, const T& value, ThreadPool* pool) {
  const T* src = elements<T>(x);
  T* dst = mutable_elements<T>(y);
  if (y.dims.empty()) {  // a scalar has nothing to pad
    dst[0] = src[0];
    return;
  }
  const size_t last = y.dims.size() - 1;
  const int64_t row_len = y.dims[last];
  const auto runs = runs_of(maps[last]);
  const auto in_strides = strides_of(x.dims);
  const int64_t rows = product(y.dims, 0, last);
  pool->parallel_for(rows, std::max<int64_t>(1, kCopyGrainElements / row_len), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      T* out = dst + r * row_len;
      int64_t base = 0;  // offset of the source row, -1 when the row is padding
      for (int64_t k = static_cast<int64_t>(last) - 1, rest = r; k >= 0 && base >= 0; --k) {
        const int64_t i = maps[k][rest % y.dims[k]];
        rest /= y.dims[k];
        base = i < 0 ? -1 : base + i * in_strides[k];
      }
      if (base < 0) {
        std::fill_n(out, row_len, value);
        continue;
      }
      for (const Run& run : runs) {
        if (run.src < 0) std::fill_n(out + run.begin, run.len, value);
        else std::copy_n(src + base + run.src, run.len, out + run.begin);
      }
    }
  });
}

// pads lists [begin_0, begin_1, ..., end_0, end_1, ...] for `axes` (all axes by default);
// negative pads crop. `value` is a one-element tensor of x's type, or nullptr for zero.
void pad(OpContext& ctx, const std::vector<int64_t>& pads, std::optional<std::vector<int64_t>> axes, PadMode mode,
         const Tensor* value) {
  const Tensor& x = ctx.in(0);
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (!axes) axes = all_axes(rank);
  const size_t count = axes->size();
  if (pads.size() != 2 * count) bad_input("pads has {} entries for {} axes (need two per axis)", pads.size(), count);
  std::vector<int64_t> before(rank, 0), after(rank, 0);
  for (size_t i = 0; i < count; ++i) {
    const int64_t axis = normalize_axis((*axes)[i], rank);
    before[axis] = pads[i];
    after[axis] = pads[i + count];
  }
  if (std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; })) {
    ctx.set_out(0, x);
    return;
  }
  std::vector<int64_t> dims(rank);
  std::vector<std::vector<int64_t>> maps(rank);
  for (int64_t k = 0; k < rank; ++k) {
    dims[k] = x.dims[k] + before[k] + after[k];
    if (dims[k] < 0) bad_input("pads [{}] crop axis {} of length {} below zero", fmt::join(pads, ", "), k, x.dims[k]);
    maps[k] = pad_index_map(x.dims[k], before[k], dims[k], mode);
  }
  if (value && (value->dtype != x.dtype || value->numel() != 1))
    bad_input("constant_value is {}, not one {} element", describe(*value), ir::dtype_name(x.dtype));
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, dims));
  if (y.numel() == 0) return;
  dispatch_width(x.dtype, "Pad", [&](auto tag) {
    using T = decltype(tag);
    pad_gather<T>(x, y, maps, value ? elements<T>(*value)[0] : T{}, ctx.pool);
  });
}

void reg_pad() {
  // Pad-1 and Pad-2: pads (Pad-1: paddings) and a float value as attributes.
  register_kernel("", "Pad", 1, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const ir::Attribute* pads = n.attr("pads") ? n.attr("pads") : n.attr("paddings");
    if (!pads) bad_input("attribute pads is missing");
    std::optional<Tensor> value;
    if (const float v = n.attr_float("value", 0.0f); v != 0) value = tensor_from_doubles(ctx.in(0).dtype, {}, {v});
    pad(ctx, pads->ints, std::nullopt, pad_mode(n.attr_string("mode", "constant")), value ? &*value : nullptr);
  }));
  // Pad-11: pads, constant_value and (opset 18) axes as inputs.
  register_kernel("", "Pad", 11, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    pad(ctx, to_int64s(ctx.in(1)), int_list(n, ctx, true, 3, "axes"), pad_mode(n.attr_string("mode", "constant")),
        ctx.has_input(2) ? &ctx.in(2) : nullptr);
  }));
}

}  // namespace

void register_tensor_layout_ops() {
  reg_transpose();
  reg_concat(1);
  reg_concat(4);
  reg_split(1);
  reg_split(2);
  reg_split(13);
  reg_slice(1);
  reg_slice(10);
  reg_expand();
  reg_tile();
  reg_pad();
}

}  // namespace slmops::runtime::ops
