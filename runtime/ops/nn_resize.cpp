// Resize (opsets 10, 11, 13, 18, 19) and Upsample (7, 9) over any axes.
//
// Every output coordinate x of an axis maps back to a fractional input coordinate
// (coordinate_transformation_mode), which then picks input elements ("taps") and weights:
// one tap for nearest, the 2 / 4 neighbours for linear / cubic (more with antialias, whose
// filter widens by 1 / scale when downsampling). Interpolation is separable: nearest gathers
// all axes at once in the element type, linear and cubic run one float32 pass per axis that
// changes, last axis first.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "runtime/ops/nn_common.h"

namespace slmops::runtime::ops {
namespace {

enum class Mode { Nearest, Linear, Cubic };
enum class Coord { HalfPixel, HalfPixelSymmetric, PytorchHalfPixel, AlignCorners, Asymmetric, TfHalfPixelForNn, TfCropAndResize };
enum class Rounding { RoundPreferFloor, RoundPreferCeil, Floor, Ceil };
enum class AspectPolicy { Stretch, NotLarger, NotSmaller };

// Looks `value` up in a name table, naming the attribute when it is not there.
template <typename E, size_t N>
E parse_enum(const char* attr, const std::string& value, const std::pair<const char*, E> (&names)[N]) {
  std::string known;
  for (auto& [name, e] : names) {
    if (value == name) return e;
    known += (known.empty() ? "" : ", ") + std::string(name);
  }
  bad_input("{} '{}' is not one of {}", attr, value, known);
}

struct ResizeAttrs {
  Mode mode = Mode::Nearest;
  Coord coord = Coord::Asymmetric;
  Rounding rounding = Rounding::Floor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  bool antialias = false;
  float extrapolation = 0;
  AspectPolicy policy = AspectPolicy::Stretch;
  std::vector<int64_t> axes;  // empty: all

  // Upsample and Resize-10 know only `mode`; they map coordinates asymmetrically and round
  // nearest down.
  ResizeAttrs(const ir::Node& n, bool legacy) {
    mode = parse_enum<Mode>("mode", n.attr_string("mode", "nearest"),
                            {{"nearest", Mode::Nearest}, {"linear", Mode::Linear}, {"cubic", Mode::Cubic}});
    if (legacy) {
      if (mode == Mode::Cubic) bad_input("mode 'cubic' needs Resize from opset 11");
      return;
    }
    coord = parse_enum<Coord>("coordinate_transformation_mode", n.attr_string("coordinate_transformation_mode", "half_pixel"),
                              {{"half_pixel", Coord::HalfPixel},
                               {"half_pixel_symmetric", Coord::HalfPixelSymmetric},
                               {"pytorch_half_pixel", Coord::PytorchHalfPixel},
                               {"align_corners", Coord::AlignCorners},
                               {"asymmetric", Coord::Asymmetric},
                               {"tf_half_pixel_for_nn", Coord::TfHalfPixelForNn},
                               {"tf_crop_and_resize", Coord::TfCropAndResize}});
    rounding = parse_enum<Rounding>("nearest_mode", n.attr_string("nearest_mode", "round_prefer_floor"),
                                    {{"round_prefer_floor", Rounding::RoundPreferFloor},
                                     {"round_prefer_ceil", Rounding::RoundPreferCeil},
                                     {"floor", Rounding::Floor},
                                     {"ceil", Rounding::Ceil}});
    policy = parse_enum<AspectPolicy>("keep_aspect_ratio_policy", n.attr_string("keep_aspect_ratio_policy", "stretch"),
                                      {{"stretch", AspectPolicy::Stretch},
                                       {"not_larger", AspectPolicy::NotLarger},
                                       {"not_smaller", AspectPolicy::NotSmaller}});
    cubic_a = n.attr_float("cubic_coeff_a", -0.75f);
    exclude_outside = n.attr_int("exclude_outside", 0) != 0;
    antialias = n.attr_int("antialias", 0) != 0;
    extrapolation = n.attr_float("extrapolation_value", 0.0f);
    axes = n.attr_ints("axes");
    if (antialias && mode == Mode::Nearest) bad_input("antialias needs mode 'linear' or 'cubic'");
  }
};

// How one axis is resized.
struct Axis {
  int64_t in = 1, out = 1;
  double scale = 1;           // out / in as the coordinate mapping uses it
  double length = 1;          // the output length the mapping uses: scale * in, or out when given
  double roi_start = 0, roi_end = 1;  // tf_crop_and_resize's crop, normalized
};

// The input coordinate output coordinate x maps to.
double source_coordinate(Coord c, const Axis& a, int64_t x) {
  const double xs = static_cast<double>(x);
  switch (c) {
    case Coord::HalfPixel: return (xs + 0.5) / a.scale - 0.5;
    case Coord::HalfPixelSymmetric: {
      // Like half_pixel, but centres the output in the input when out is not exactly
      // scale * in (the rounding shrank it).
      const double adjustment = static_cast<double>(a.out) / a.length;
      const double offset = static_cast<double>(a.in) / 2 * (1 - adjustment);
      return offset + (xs + 0.5) / a.scale - 0.5;
    }
    case Coord::PytorchHalfPixel: return a.out > 1 ? (xs + 0.5) / a.scale - 0.5 : 0.0;
    case Coord::AlignCorners: return a.length == 1 ? 0.0 : xs * static_cast<double>(a.in - 1) / (a.length - 1);
    case Coord::Asymmetric: return xs / a.scale;
    case Coord::TfHalfPixelForNn: return (xs + 0.5) / a.scale;
    case Coord::TfCropAndResize: {
      const double span = (a.roi_end - a.roi_start) * static_cast<double>(a.in - 1);
      const double start = a.roi_start * static_cast<double>(a.in - 1);
      return a.length == 1 ? start + span / 2 : start + xs * span / (a.length - 1);
    }
  }
  return 0;
}

// The nearest input index to coordinate x (before clamping).
int64_t round_coordinate(Rounding r, double x) {
  const double f = std::floor(x);
  const double frac = x - f;
  const auto fi = static_cast<int64_t>(f);
  if (frac == 0) return fi;
  switch (r) {
    case Rounding::RoundPreferFloor: return frac <= 0.5 ? fi : fi + 1;
    case Rounding::RoundPreferCeil: return frac < 0.5 ? fi : fi + 1;
    case Rounding::Floor: return fi;
    case Rounding::Ceil: return fi + 1;
  }
  return fi;
}

// The taps of every output position of an axis: n per position.
struct Taps {
  int64_t n = 0;
  std::vector<int64_t> index;    // out * n input indices, inside [0, in)
  std::vector<float> weight;     // out * n
  std::vector<uint8_t> outside;  // per output: off the input crop (extrapolation_value)

  // Whether every output reads exactly its own input position.
  bool identity(const Axis& a) const {
    if (a.in != a.out) return false;
    for (int64_t j = 0; j < a.out; ++j) {
      if (outside[j]) return false;
      for (int64_t t = 0; t < n; ++t) {
        const float expected = index[j * n + t] == j ? 1.0f : 0.0f;
        if (weight[j * n + t] != expected) return false;
      }
    }
    return true;
  }
};

Taps make_taps(const ResizeAttrs& r, const Axis& a) {
  Taps taps;
  taps.outside.assign(a.out, 0);
  // tf_crop_and_resize extrapolates off the input (the other modes clamp instead).
  auto off_input = [&](double x) {
    return r.coord == Coord::TfCropAndResize && (x < 0 || x > static_cast<double>(a.in - 1));
  };
  if (r.mode == Mode::Nearest) {
    taps.n = 1;
    for (int64_t j = 0; j < a.out; ++j) {
      const double x = source_coordinate(r.coord, a, j);
      taps.outside[j] = off_input(x);
      taps.index.push_back(std::clamp<int64_t>(round_coordinate(r.rounding, x), 0, a.in - 1));
      taps.weight.push_back(1.0f);
    }
    return taps;
  }
  // The filter reaches `support` input steps either side; antialias stretches it by 1 / scale
  // when downsampling. Taps floor(x) + i for i in [first, 2 - first) cover it.
  const double support = r.mode == Mode::Linear ? 1.0 : 2.0;
  const double stretch = r.antialias ? std::min(a.scale, 1.0) : 1.0;
  const auto first = static_cast<int64_t>(std::floor(-support / stretch)) + 1;
  taps.n = 2 - 2 * first;
  auto filter = [&](double d) {
    return r.mode == Mode::Linear ? std::max(0.0, 1 - std::abs(d)) : cubic_weight(r.cubic_a, d);
  };
  std::vector<double> w(taps.n);
  for (int64_t j = 0; j < a.out; ++j) {
    const double x = source_coordinate(r.coord, a, j);
    taps.outside[j] = off_input(x);
    const double base = std::floor(x);
    const double frac = x - base;
    double sum = 0, inside_sum = 0;
    for (int64_t i = 0; i < taps.n; ++i) {
      w[i] = filter(stretch * (static_cast<double>(first + i) - frac));
      sum += w[i];
      const int64_t idx = static_cast<int64_t>(base) + first + i;
      if (r.exclude_outside && (idx < 0 || idx >= a.in)) w[i] = 0;
      inside_sum += w[i];
    }
    // Antialias filters are normalized to sum 1; exclude_outside renormalizes what is left.
    const double norm = r.exclude_outside ? inside_sum : r.antialias ? sum : 1.0;
    for (int64_t i = 0; i < taps.n; ++i) {
      const int64_t idx = static_cast<int64_t>(base) + first + i;
      taps.index.push_back(std::clamp<int64_t>(idx, 0, a.in - 1));
      taps.weight.push_back(norm != 0 ? static_cast<float>(w[i] / norm) : 0.0f);
    }
  }
  return taps;
}

// ---- resizing ------------------------------------------------------------------------------

// Y = X gathered at the nearest index along every axis, in the element type.
void gather_nearest(const Tensor& x, const std::vector<Axis>& axes, const std::vector<Taps>& taps, float extrapolation,
                    Tensor& y, ThreadPool* pool) {
  const size_t rank = axes.size();
  const std::vector<int64_t> in_strides = strides_of(x.dims);
  const int64_t width = y.dims.back();
  const int64_t rows = static_cast<int64_t>(y.numel()) / std::max<int64_t>(width, 1);
  dispatch<kNumeric | kBool>(x.dtype, "Resize", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.values<T>();
    T* py = y.mutable_values<T>();
    const T fill = from_f32<T>(extrapolation);
    const Taps& last = taps[rank - 1];
    parallel_range(pool, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(width, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        // The input offset and crop flag of the row's leading output coordinates.
        int64_t base = 0;
        bool outside = false;
        for (int64_t d = static_cast<int64_t>(rank) - 2, rest = r; d >= 0; --d) {
          const int64_t o = rest % axes[d].out;
          rest /= axes[d].out;
          base += taps[d].index[o] * in_strides[d];
          outside = outside || taps[d].outside[o];
        }
        T* dst = py + r * width;
        for (int64_t j = 0; j < width; ++j) dst[j] = outside || last.outside[j] ? fill : px[base + last.index[j]];
      }
    });
  });
}

// One interpolation pass along `axis` of the float tensor x, which becomes a.out long:
// y[o, j, i] = sum over the taps of j of weight * x[o, index, i].
Tensor interpolate_axis(const Tensor& x, size_t axis, const Axis& a, const Taps& taps, float extrapolation,
                        ThreadPool* pool) {
  std::vector<int64_t> dims = x.dims;
  dims[axis] = a.out;
  Tensor y = new_tensor(DType::Float, dims);
  const int64_t inner = product(dims, axis + 1);
  const int64_t rows = product(dims, 0, axis + 1);  // (o, j) pairs
  const float* px = x.values<float>();
  float* py = y.mutable_values<float>();
  parallel_range(pool, rows, std::max<int64_t>(1, 4096 / (inner * taps.n)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r / a.out, j = r % a.out;
      float* dst = py + r * inner;
      if (taps.outside[j]) {
        std::fill(dst, dst + inner, extrapolation);
        continue;
      }
      const int64_t* index = &taps.index[j * taps.n];
      const float* weight = &taps.weight[j * taps.n];
      const float* src = px + o * a.in * inner;
      if (inner == 1) {  // the last axis: one dot product per output
        float v = 0;
        for (int64_t t = 0; t < taps.n; ++t) v += weight[t] * src[index[t]];
        *dst = v;
        continue;
      }
      std::fill(dst, dst + inner, 0.0f);
      for (int64_t t = 0; t < taps.n; ++t) {
        if (weight[t] == 0) continue;
        const float* line = src + index[t] * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] += weight[t] * line[i];
      }
    }
  });
  return y;
}

// A float tensor converted to `dt`: integer types round to nearest and saturate.
Tensor from_float_rounded(const Tensor& f, DType dt) {
  Tensor t = new_tensor(dt, f.dims);
  const float* v = f.values<float>();
  const auto n = static_cast<int64_t>(f.numel());
  dispatch<kNumeric>(dt, "Resize", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.mutable_values<T>();
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_integral_v<T>) {
        const double r = std::nearbyint(static_cast<double>(v[i]));
        p[i] = static_cast<T>(std::clamp(r, static_cast<double>(std::numeric_limits<T>::lowest()),
                                         static_cast<double>(std::numeric_limits<T>::max())));
      } else {
        p[i] = from_f32<T>(v[i]);
      }
    }
  });
  return t;
}

void resize(const ResizeAttrs& r, const Tensor& x, const std::vector<Axis>& axes, OpContext& ctx) {
  std::vector<int64_t> out_dims;
  for (const Axis& a : axes) out_dims.push_back(a.out);
  if (product(out_dims) == 0 || x.numel() == 0) {
    if (product(out_dims) != 0) bad_input("X {} is empty, it cannot be resized to a non-empty shape", describe(x));
    ctx.set_out(0, new_tensor(x.dtype, out_dims));
    return;
  }
  std::vector<Taps> taps;
  for (const Axis& a : axes) taps.push_back(make_taps(r, a));
  if (r.mode == Mode::Nearest) {
    gather_nearest(x, axes, taps, r.extrapolation, ctx.set_out(0, new_tensor(x.dtype, out_dims)), ctx.pool);
    return;
  }
  Tensor y = to_float_tensor(x);
  for (size_t d = axes.size(); d-- > 0;)
    if (!taps[d].identity(axes[d])) y = interpolate_axis(y, d, axes[d], taps[d], r.extrapolation, ctx.pool);
  ctx.set_out(0, x.dtype == DType::Float ? y : from_float_rounded(y, x.dtype));
}

// ---- inputs --------------------------------------------------------------------------------

// The optional input i when present and not empty.
const Tensor* nonempty_input(const OpContext& ctx, size_t i) {
  if (!ctx.has_input(i) || ctx.in(i).numel() == 0) return nullptr;
  return &ctx.in(i);
}

// Per-axis geometry from `scales` (floor(in * scale)) or `sizes` of the resized axes (all
// when the axes attribute is absent), and the tf_crop_and_resize roi.
std::vector<Axis> resize_axes(const ResizeAttrs& r, const Tensor& x, const Tensor* scales, const Tensor* sizes,
                              const Tensor* roi) {
  const auto rank = static_cast<int64_t>(x.dims.size());
  if (rank == 0) bad_input("X must have at least one dim");
  std::vector<int64_t> which = r.axes;
  if (which.empty())
    for (int64_t d = 0; d < rank; ++d) which.push_back(d);
  for (int64_t& d : which) d = normalize_axis(d, rank, "axes");
  for (size_t i = 0; i < which.size(); ++i)
    if (std::count(which.begin(), which.end(), which[i]) > 1) bad_input("axes lists axis {} twice", which[i]);

  std::vector<Axis> axes(rank);
  for (int64_t d = 0; d < rank; ++d) {
    axes[d].in = axes[d].out = x.dims[d];
    axes[d].length = static_cast<double>(x.dims[d]);
  }
  const size_t n = which.size();
  if ((scales != nullptr) == (sizes != nullptr)) bad_input("exactly one of scales and sizes must be given");
  if (scales) {
    const std::vector<double> s = to_doubles(*scales);
    if (s.size() != n) bad_input("scales has {} values, expected {}", s.size(), n);
    for (size_t i = 0; i < n; ++i) {
      if (!(s[i] > 0)) bad_input("scales value {} must be positive", s[i]);
      Axis& a = axes[which[i]];
      a.scale = s[i];
      a.length = s[i] * static_cast<double>(a.in);
      a.out = static_cast<int64_t>(std::floor(a.length));
    }
  } else {
    const std::vector<int64_t> s = to_int64s(*sizes);
    if (s.size() != n) bad_input("sizes has {} values, expected {}", s.size(), n);
    for (size_t i = 0; i < n; ++i) {
      if (s[i] < 0) bad_input("sizes value {} is negative", s[i]);
      if (x.dims[which[i]] == 0 && s[i] != 0) bad_input("axis {} of X {} is empty, it cannot be resized", which[i], describe(x));
    }
    // not_larger / not_smaller keep the aspect ratio: one scale for all resized axes, the
    // largest that fits in `sizes` or the smallest that covers it.
    double common = 0;
    for (size_t i = 0; i < n; ++i) {
      const double s_i = static_cast<double>(s[i]) / static_cast<double>(std::max<int64_t>(x.dims[which[i]], 1));
      if (i == 0 || (r.policy == AspectPolicy::NotLarger ? s_i < common : s_i > common)) common = s_i;
    }
    for (size_t i = 0; i < n; ++i) {
      Axis& a = axes[which[i]];
      if (r.policy == AspectPolicy::Stretch) {
        a.out = s[i];
        a.scale = static_cast<double>(s[i]) / static_cast<double>(std::max<int64_t>(a.in, 1));
        a.length = static_cast<double>(s[i]);
      } else {
        a.scale = common;
        a.length = common * static_cast<double>(a.in);
        a.out = static_cast<int64_t>(std::floor(a.length + 0.5));
      }
    }
  }
  if (r.coord == Coord::TfCropAndResize) {
    if (!roi) bad_input("coordinate_transformation_mode tf_crop_and_resize needs roi");
    const std::vector<double> v = to_doubles(*roi);
    if (v.size() != 2 * n) bad_input("roi has {} values, expected {}", v.size(), 2 * n);
    for (size_t i = 0; i < n; ++i) {
      axes[which[i]].roi_start = v[i];
      axes[which[i]].roi_end = v[n + i];
    }
  }
  return axes;
}

// Resize-11 and later: X, roi, scales, sizes.
class ResizeKernel : public Kernel {
 public:
  explicit ResizeKernel(const ir::Node& n) : attrs_(n, false) {}
  void run(OpContext& ctx) override {
    const Tensor& x = ctx.in(0);
    resize(attrs_, x, resize_axes(attrs_, x, nonempty_input(ctx, 2), nonempty_input(ctx, 3), nonempty_input(ctx, 1)), ctx);
  }

 private:
  ResizeAttrs attrs_;
};

// Upsample-7 (the `scales` attribute), Upsample-9 and Resize-10 (X, scales).
class LegacyResizeKernel : public Kernel {
 public:
  explicit LegacyResizeKernel(const ir::Node& n) : attrs_(n, true) {
    if (const ir::Attribute* a = n.attr("scales"))
      scales_attr_ = Tensor::from_values("scales", DType::Float, {static_cast<int64_t>(a->floats.size())}, a->floats);
  }
  void run(OpContext& ctx) override {
    const Tensor& x = ctx.in(0);
    const Tensor& scales = scales_attr_ ? *scales_attr_ : ctx.in(1);
    resize(attrs_, x, resize_axes(attrs_, x, &scales, nullptr, nullptr), ctx);
  }

 private:
  ResizeAttrs attrs_;
  std::optional<Tensor> scales_attr_;
};

}  // namespace

void register_resize_ops() {
  register_kernel("", "Upsample", 7, node_kernel<LegacyResizeKernel>());
  register_kernel("", "Resize", 10, node_kernel<LegacyResizeKernel>());
  register_kernel("", "Resize", 11, node_kernel<ResizeKernel>());
}

}  // namespace slmops::runtime::ops
