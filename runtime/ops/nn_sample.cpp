// Sampling at computed positions: GridSample (any number of spatial dims) and RoiAlign.
// Both compute in float32.
#include <algorithm>
#include <cmath>

#include "runtime/ops/nn_common.h"

namespace slmops::runtime::ops {
namespace {

// ---- GridSample ----------------------------------------------------------------------------

enum class SampleMode { Nearest, Linear, Cubic };
enum class Padding { Zeros, Border, Reflection };

// Folds x into [lo, hi] by reflecting it at the borders as often as needed.
double reflect(double x, double lo, double hi) {
  const double range = hi - lo;
  if (range <= 0) return lo;
  if (x >= lo && x <= hi) return x;
  const bool below = x < lo;
  const double dx = below ? lo - x : x - hi;
  const double flips = std::floor(dx / range);
  const double r = dx - flips * range;
  // An even number of whole flips leaves x entering from the border it crossed.
  const bool from_low = below == (std::fmod(flips, 2.0) == 0);
  return from_low ? lo + r : hi - r;
}

// The input samples along one spatial dim that an output reads: index (-1: a zero from the
// padding) and weight of each.
struct Taps {
  struct Tap {
    int64_t index;
    double weight;
  };
  Tap tap[4];
  int n;
};

class GridSampleKernel : public Kernel {
 public:
  explicit GridSampleKernel(const ir::Node& n) : align_corners_(n.attr_int("align_corners", 0) != 0) {
    // Opset 20 renamed bilinear / bicubic to linear / cubic.
    const std::string mode = n.attr_string("mode", "bilinear");
    if (mode == "nearest") mode_ = SampleMode::Nearest;
    else if (mode == "bilinear" || mode == "linear") mode_ = SampleMode::Linear;
    else if (mode == "bicubic" || mode == "cubic") mode_ = SampleMode::Cubic;
    else bad_input("mode '{}' is not one of nearest, linear (bilinear), cubic (bicubic)", mode);
    const std::string padding = n.attr_string("padding_mode", "zeros");
    if (padding == "zeros") padding_ = Padding::Zeros;
    else if (padding == "border") padding_ = Padding::Border;
    else if (padding == "reflection") padding_ = Padding::Reflection;
    else bad_input("padding_mode '{}' is not one of zeros, border, reflection", padding);
  }

  // X [N, C, D1..Dr] sampled at grid [N, O1..Or, r] (normalized coordinates in [-1, 1], the
  // last spatial dim first) gives Y [N, C, O1..Or].
  void run(OpContext& ctx) override {
    const Tensor& x_in = ctx.in(0);
    const Tensor& grid_in = ctx.in(1);
    require_float_type(grid_in, "grid");
    const size_t rank = x_in.dims.size() < 3 ? 0 : x_in.dims.size() - 2;
    if (rank == 0 || grid_in.dims.size() != rank + 2 || grid_in.dims[0] != x_in.dims[0] ||
        grid_in.dims.back() != static_cast<int64_t>(rank))
      bad_input("grid {} does not fit X {}: expected [N, spatial..., {}]", describe(grid_in), describe(x_in), rank);
    const Tensor x = to_float_tensor(x_in);
    const Tensor grid = to_float_tensor(grid_in);
    const int64_t batch = x.dims[0], channels = x.dims[1];
    const std::vector<int64_t> in(x.dims.begin() + 2, x.dims.end());
    const std::vector<int64_t> in_strides = strides_of(in);
    const int64_t in_size = product(in), out_size = product(grid.dims, 1, rank + 1);
    if (in_size == 0 && out_size != 0) bad_input("X {} has nothing to sample", describe(x_in));
    std::vector<int64_t> y_dims = {batch, channels};
    y_dims.insert(y_dims.end(), grid.dims.begin() + 1, grid.dims.end() - 1);
    Tensor y = new_tensor(DType::Float, y_dims);
    const float* px = x.values<float>();
    const float* pg = grid.values<float>();
    float* py = y.mutable_values<float>();

    parallel_range(ctx.pool, batch * out_size, 64, [&](int64_t p0, int64_t p1) {
      std::vector<std::pair<int64_t, double>> samples, next;  // (in-plane offset, weight)
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n = p / out_size, j = p % out_size;
        // The weighted input positions: the product of every dim's taps.
        samples.assign(1, {0, 1.0});
        for (size_t d = 0; d < rank; ++d) {
          const double coord = pg[p * static_cast<int64_t>(rank) + static_cast<int64_t>(rank - 1 - d)];
          next.clear();
          const Taps t = taps(coord, in[d], rank);
          for (int i = 0; i < t.n; ++i)
            if (t.tap[i].index >= 0)
              for (auto [off, w] : samples) next.emplace_back(off + t.tap[i].index * in_strides[d], w * t.tap[i].weight);
          samples.swap(next);
        }
        for (int64_t c = 0; c < channels; ++c) {
          const float* plane = px + (n * channels + c) * in_size;
          double v = 0;
          for (auto [off, w] : samples) v += w * plane[off];
          py[(n * channels + c) * out_size + j] = static_cast<float>(v);
        }
      }
    });
    ctx.set_out(0, from_float_tensor(y, x_in.dtype));
  }

 private:
  // The taps along a dim of `size` elements for normalized coordinate `g`, as PyTorch's
  // grid_sample (which ONNX follows) computes them.
  Taps taps(double g, int64_t size, size_t rank) const {
    const auto fsize = static_cast<double>(size);
    // Normalized -1 / 1 are the centres of the corner elements (align_corners) or their
    // outer edges; [lo, hi] is that span in input coordinates.
    double v = align_corners_ ? (g + 1) / 2 * (fsize - 1) : ((g + 1) * fsize - 1) / 2;
    const double lo = align_corners_ ? 0.0 : -0.5, hi = align_corners_ ? fsize - 1 : fsize - 0.5;
    if (mode_ == SampleMode::Nearest) v = rank == 3 ? std::round(v) : std::nearbyint(v);  // PyTorch's 3-D rounds half away
    // A point off [lo, hi] moves to the border or its mirror image, except in cubic mode:
    // there, as in PyTorch and ONNX Runtime, only the taps are padded.
    if ((v < lo || v > hi) && mode_ != SampleMode::Cubic) {
      if (padding_ == Padding::Border) v = std::clamp(v, 0.0, fsize - 1);
      else if (padding_ == Padding::Reflection) v = reflect(v, lo, hi);
    }
    // An index off the input: a padding zero, the nearest border element, or its mirror.
    auto pad = [&](int64_t i) -> int64_t {
      if (i >= 0 && i < size) return i;
      if (padding_ == Padding::Zeros) return -1;
      if (padding_ == Padding::Border) return std::clamp<int64_t>(i, 0, size - 1);
      return static_cast<int64_t>(reflect(static_cast<double>(i), lo, hi));
    };
    if (mode_ == SampleMode::Nearest) return {{{pad(static_cast<int64_t>(v)), 1.0}}, 1};
    const double base = std::floor(v), t = v - base;
    const auto b = static_cast<int64_t>(base);
    if (mode_ == SampleMode::Linear) return {{{pad(b), 1 - t}, {pad(b + 1), t}}, 2};
    constexpr double kA = -0.75;
    return {{{pad(b - 1), cubic_weight(kA, t + 1)},
             {pad(b), cubic_weight(kA, t)},
             {pad(b + 1), cubic_weight(kA, 1 - t)},
             {pad(b + 2), cubic_weight(kA, 2 - t)}},
            4};
  }

  bool align_corners_;
  SampleMode mode_ = SampleMode::Linear;
  Padding padding_ = Padding::Zeros;
};

// ---- RoiAlign ------------------------------------------------------------------------------

// A bilinear sample: four in-plane offsets and their weights (all zero off the map).
struct BilinearSample {
  int64_t offset[4] = {0, 0, 0, 0};
  float weight[4] = {0, 0, 0, 0};
};

// The bilinear sample at (y, x) of an h x w plane, clamping to the edges as Detectron's
// RoIAlign does: points more than one element off the map read nothing.
BilinearSample bilinear_sample(double y, double x, int64_t h, int64_t w) {
  BilinearSample s;
  if (y < -1.0 || y > static_cast<double>(h) || x < -1.0 || x > static_cast<double>(w)) return s;
  y = std::max(y, 0.0);
  x = std::max(x, 0.0);
  auto y_lo = static_cast<int64_t>(y), x_lo = static_cast<int64_t>(x);
  int64_t y_hi = y_lo + 1, x_hi = x_lo + 1;
  if (y_lo >= h - 1) {  // on the last row (or past it, within one element): no interpolation
    y_lo = y_hi = h - 1;
    y = static_cast<double>(y_lo);
  }
  if (x_lo >= w - 1) {
    x_lo = x_hi = w - 1;
    x = static_cast<double>(x_lo);
  }
  const double ly = y - static_cast<double>(y_lo), lx = x - static_cast<double>(x_lo);
  const double hy = 1 - ly, hx = 1 - lx;
  s.offset[0] = y_lo * w + x_lo;
  s.offset[1] = y_lo * w + x_hi;
  s.offset[2] = y_hi * w + x_lo;
  s.offset[3] = y_hi * w + x_hi;
  s.weight[0] = static_cast<float>(hy * hx);
  s.weight[1] = static_cast<float>(hy * lx);
  s.weight[2] = static_cast<float>(ly * hx);
  s.weight[3] = static_cast<float>(ly * lx);
  return s;
}

class RoiAlignKernel : public Kernel {
 public:
  RoiAlignKernel(const ir::Node& n, int opset)
      : max_(n.attr_string("mode", "avg") == "max"),
        out_h_(n.attr_int("output_height", 1)),
        out_w_(n.attr_int("output_width", 1)),
        sampling_ratio_(n.attr_int("sampling_ratio", 0)),
        spatial_scale_(n.attr_float("spatial_scale", 1.0f)) {
    const std::string mode = n.attr_string("mode", "avg");
    if (mode != "avg" && mode != "max") bad_input("mode '{}' is not one of avg, max", mode);
    // RoiAlign-10 behaves as output_half_pixel; opset 16 added the choice, half_pixel first.
    const std::string coord = n.attr_string("coordinate_transformation_mode", opset >= 16 ? "half_pixel" : "output_half_pixel");
    if (coord != "half_pixel" && coord != "output_half_pixel")
      bad_input("coordinate_transformation_mode '{}' is not one of half_pixel, output_half_pixel", coord);
    half_pixel_ = coord == "half_pixel";
    if (out_h_ < 1 || out_w_ < 1) bad_input("output_height and output_width must be positive");
    if (sampling_ratio_ < 0) bad_input("sampling_ratio {} must not be negative", sampling_ratio_);
  }

  // Y[r, c] = the output_height x output_width bins of region rois[r] of X[batch_indices[r], c],
  // each the average (or max) of a grid of bilinear samples.
  void run(OpContext& ctx) override {
    const Tensor& x_in = ctx.in(0);
    require_float_type(x_in, "X");
    const Tensor& rois_in = ctx.in(1);
    const Tensor& batch_in = ctx.in(2);
    if (x_in.dims.size() != 4) bad_input("X must be [N, C, H, W], got {}", describe(x_in));
    if (rois_in.dims.size() != 2 || rois_in.dims[1] != 4) bad_input("rois must be [num_rois, 4], got {}", describe(rois_in));
    const int64_t num_rois = rois_in.dims[0];
    if (batch_in.dims.size() != 1 || batch_in.dims[0] != num_rois)
      bad_input("batch_indices {} must have one entry per roi ({})", describe(batch_in), num_rois);
    const Tensor x = to_float_tensor(x_in);
    const std::vector<double> rois = to_doubles(rois_in);
    const std::vector<int64_t> batch = to_int64s(batch_in);
    const int64_t channels = x.dims[1], h = x.dims[2], w = x.dims[3];
    for (int64_t b : batch)
      if (b < 0 || b >= x.dims[0]) bad_input("batch_indices holds {}, X has {} images", b, x.dims[0]);
    Tensor y = new_tensor(DType::Float, {num_rois, channels, out_h_, out_w_});
    const float* px = x.values<float>();
    float* py = y.mutable_values<float>();
    parallel_range(ctx.pool, num_rois, 1, [&](int64_t r0, int64_t r1) {
      std::vector<BilinearSample> samples;
      for (int64_t r = r0; r < r1; ++r) {
        sample_grid(rois, r, samples, h, w);
        const auto per_bin = static_cast<int64_t>(samples.size()) / (out_h_ * out_w_);
        const float count = static_cast<float>(std::max<int64_t>(per_bin, 1));
        for (int64_t c = 0; c < channels; ++c) {
          const float* plane = px + (batch[r] * channels + c) * h * w;
          float* out = py + (r * channels + c) * out_h_ * out_w_;
          for (int64_t bin = 0; bin < out_h_ * out_w_; ++bin) {
            float acc = 0;
            for (int64_t i = 0; i < per_bin; ++i) {
              const BilinearSample& s = samples[bin * per_bin + i];
              if (max_) {
                float v = s.weight[0] * plane[s.offset[0]];
                for (int k = 1; k < 4; ++k) v = std::max(v, s.weight[k] * plane[s.offset[k]]);
                acc = i == 0 ? v : std::max(acc, v);
              } else {
                for (int k = 0; k < 4; ++k) acc += s.weight[k] * plane[s.offset[k]];
              }
            }
            out[bin] = max_ ? acc : acc / count;
          }
        }
      }
    });
    ctx.set_out(0, from_float_tensor(y, x_in.dtype));
  }

 private:
  // Fills `samples` with the bilinear samples of roi r, bin by bin (row-major), each bin a
  // grid of sampling_ratio (or roi size / bins, rounded up) points per side.
  void sample_grid(const std::vector<double>& rois, int64_t r, std::vector<BilinearSample>& samples, int64_t h,
                   int64_t w) const {
    const double offset = half_pixel_ ? 0.5 : 0.0;
    const double x0 = rois[r * 4] * spatial_scale_ - offset, y0 = rois[r * 4 + 1] * spatial_scale_ - offset;
    double roi_w = rois[r * 4 + 2] * spatial_scale_ - offset - x0;
    double roi_h = rois[r * 4 + 3] * spatial_scale_ - offset - y0;
    if (!half_pixel_) {  // the legacy mode makes malformed rois 1x1
      roi_w = std::max(roi_w, 1.0);
      roi_h = std::max(roi_h, 1.0);
    }
    const double bin_h = roi_h / static_cast<double>(out_h_), bin_w = roi_w / static_cast<double>(out_w_);
    auto grid = [&](double bin) { return std::max<int64_t>(0, static_cast<int64_t>(std::ceil(bin))); };
    const int64_t grid_h = sampling_ratio_ > 0 ? sampling_ratio_ : grid(bin_h);
    const int64_t grid_w = sampling_ratio_ > 0 ? sampling_ratio_ : grid(bin_w);
    samples.clear();
    for (int64_t ph = 0; ph < out_h_; ++ph)
      for (int64_t pw = 0; pw < out_w_; ++pw)
        for (int64_t iy = 0; iy < grid_h; ++iy) {
          const double y = y0 + static_cast<double>(ph) * bin_h + (static_cast<double>(iy) + 0.5) * bin_h / static_cast<double>(grid_h);
          for (int64_t ix = 0; ix < grid_w; ++ix) {
            const double x = x0 + static_cast<double>(pw) * bin_w + (static_cast<double>(ix) + 0.5) * bin_w / static_cast<double>(grid_w);
            samples.push_back(bilinear_sample(y, x, h, w));
          }
        }
  }

  bool max_;
  int64_t out_h_, out_w_, sampling_ratio_;
  float spatial_scale_;
  bool half_pixel_ = true;
};

}  // namespace

void register_sampling_ops() {
  register_kernel("", "GridSample", 16, node_kernel<GridSampleKernel>());
  register_kernel("", "RoiAlign", 10, [](const ir::Node& n, const PlanContext& p) {
    return std::make_unique<RoiAlignKernel>(n, p.opset);
  });
}

}  // namespace slmops::runtime::ops
