// Convolution and pooling kernels (runtime/kernels/conv.h) against plain reference loops in
// double: the strip im2col for every kind of strip (consecutive windows, stride 2, gathered),
// the GEMM on strips with bias and clamp, the depthwise convolution; each at every ISA level
// the CPU has (portable, AVX-512), on odd sizes, padding, strides, dilations and partial
// strips. Then the Conv and MaxPool ops end to end (grouped, strided, depthwise, 7x7 stem,
// padded pool; one and two threads) against their definitions, and two ops of a transformer's
// attention: Where (the mask) for each element width it moves, and Softmax / LogSoftmax.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"
#include "runtime/kernels/conv.h"
#include "runtime/kernels/cpu_features.h"
#include "runtime/ops/common.h"
#include "runtime/ops/reduce_common.h"
#include "test_util.h"

using namespace slmops::runtime;
using slmops::test::random_floats;

namespace {

// Float sums in another order than the double reference: K * 2^-24 times the sum of |terms|
// bounds the difference; 1e-5 of that sum passes every case here and still catches a wrong
// or missing term (each term is at least ~1e-3 of the sum).
constexpr double kRelTol = 1e-5;

std::vector<kernels::ConvIsa> isas() {
  std::vector<kernels::ConvIsa> v = {kernels::ConvIsa::Portable};
  if (kernels::cpu().fma) v.push_back(kernels::ConvIsa::Fma);
  if (kernels::cpu().avx512f) v.push_back(kernels::ConvIsa::Avx512);
  return v;
}

// A 2-D window with explicit pads (pad_end so that out = (in + pads - extent) / stride + 1).
kernels::WindowShape window(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t stride, int64_t dil, int64_t pad) {
  kernels::WindowShape s;
  s.in = {H, W};
  s.kernel = {KH, KW};
  s.strides = {stride, stride};
  s.dilations = {dil, dil};
  s.pad_begin = {pad, pad};
  s.pad_end = {pad, pad};
  s.out = {(H + 2 * pad - (KH - 1) * dil - 1) / stride + 1, (W + 2 * pad - (KW - 1) * dil - 1) / stride + 1};
  return s;
}

// The input element under kernel offset (ky, kx) of output j, or 0 in the padding.
float window_element(const float* plane, const kernels::WindowShape& s, int64_t j, int64_t ky, int64_t kx) {
  const int64_t iy = j / s.out[1] * s.strides[0] - s.pad_begin[0] + ky * s.dilations[0];
  const int64_t ix = j % s.out[1] * s.strides[1] - s.pad_begin[1] + kx * s.dilations[1];
  return iy >= 0 && iy < s.in[0] && ix >= 0 && ix < s.in[1] ? plane[iy * s.in[1] + ix] : 0.0f;
}

struct Geo {
  int64_t H, W, KH, KW, stride, dil, pad;
};
// Stride 1 "same" (one masked load per row), stride 2 with rows a multiple of 16 wide (two
// loads and a permute), stride 2 with rows that split strips and the 7x7 stem shape
// (gathers), 1x1 stride 2 (ResNet's downsample), dilation, no padding (windows that end
// before the row does), odd sizes whose last strip is partial.
const std::vector<Geo> kGeos = {{8, 8, 3, 3, 1, 1, 1},   {7, 9, 3, 3, 1, 1, 1},   {9, 64, 3, 3, 2, 1, 1},
                                {28, 28, 3, 3, 2, 1, 1}, {23, 21, 7, 7, 2, 1, 3}, {14, 14, 1, 1, 2, 1, 0},
                                {11, 13, 3, 3, 1, 2, 2}, {10, 12, 3, 5, 1, 1, 0}, {5, 5, 5, 5, 3, 1, 2},
                                {1, 1, 1, 1, 1, 1, 0},   {6, 40, 3, 3, 2, 1, 0}};

}  // namespace

TEST_CASE("StripIm2col writes every window's elements in 16-wide strips, zeros in the padding and past the plane") {
  for (const Geo& g : kGeos) {
    const kernels::WindowShape s = window(g.H, g.W, g.KH, g.KW, g.stride, g.dil, g.pad);
    CAPTURE(g.H);
    CAPTURE(g.W);
    CAPTURE(g.KH);
    CAPTURE(g.stride);
    CAPTURE(g.dil);
    REQUIRE(kernels::StripIm2col::supported(s));
    const kernels::StripIm2col im2col(s);
    const int64_t C = 5, P = s.out_size(), ksize = s.kernel_size(), strips = im2col.strips();
    CHECK(strips == (P + 15) / 16);
    const auto x = random_floats(C * g.H * g.W, 3);
    // Channels [1, 4) and strips [t0, strips): a block as conv_strips asks for one, with one
    // spare row per strip that must be left alone.
    const int64_t c0 = 1, c1 = 4, t0 = strips > 1 ? 1 : 0, rows = (c1 - c0) * ksize + 1;
    for (kernels::ConvIsa isa : isas()) {
      CAPTURE(static_cast<int>(isa));
      std::vector<float> col((strips - t0) * rows * 16, -7.0f);
      im2col.run_at(isa, x.data(), c0, c1, t0, strips, col.data(), rows);
      int64_t wrong = 0;
      for (int64_t t = t0; t < strips; ++t)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t i = 0; i < 16; ++i) {
            const int64_t j = t * 16 + i;
            const float got = col[((t - t0) * rows + r) * 16 + i];
            float want = -7.0f;  // the spare row
            if (r < rows - 1) {
              const int64_t c = c0 + r / ksize, k = r % ksize;
              want = j < P ? window_element(x.data() + c * g.H * g.W, s, j, k / g.KW, k % g.KW) : 0.0f;
            }
            wrong += got != want;
          }
      CHECK(wrong == 0);
    }
  }
  // Nothing past the input is read: the image ends right before a page that may not be read,
  // where a stride-2 strip's last window takes the very last element (33 columns, no padding:
  // 16 windows a row; the element after it would be the next page's first).
  {
    const kernels::WindowShape sg = window(5, 33, 3, 3, 2, 1, 0);
    const kernels::StripIm2col im2col(sg);
    const int64_t C = 2, n = C * 5 * 33, ksize = 9, page = sysconf(_SC_PAGESIZE);
    const int64_t bytes = (n * int64_t{sizeof(float)} + page - 1) / page * page;
    char* map =
        static_cast<char*>(mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(map != MAP_FAILED);
    REQUIRE(mprotect(map + bytes, page, PROT_NONE) == 0);
    float* x = reinterpret_cast<float*>(map + bytes) - n;
    const auto values = random_floats(n, 4);
    std::memcpy(x, values.data(), n * sizeof(float));
    for (kernels::ConvIsa isa : isas()) {
      CAPTURE(static_cast<int>(isa));
      std::vector<float> col(im2col.strips() * C * ksize * 16);
      im2col.run_at(isa, x, 0, C, 0, im2col.strips(), col.data(), C * ksize);
      // The last strip's last row: window 15's element (2, 2) of the last channel, x's last.
      CHECK(col.back() == x[n - 1]);
    }
    munmap(map, bytes + page);
  }
  // Outside: a 3-D window, and an empty output.
  kernels::WindowShape s3 = window(4, 4, 3, 3, 1, 1, 1);
  s3.in.push_back(4);
  CHECK_FALSE(kernels::StripIm2col::supported(s3));
  kernels::WindowShape empty = window(4, 4, 3, 3, 1, 1, 1);
  empty.out = {0, 4};
  CHECK_FALSE(kernels::StripIm2col::supported(empty));
}

TEST_CASE("conv_gemm_strips adds W x strips to C (or starts from the bias) and clamps on the last block") {
  const float inf = std::numeric_limits<float>::infinity();
  // Bounds of the clamp in modes 3 (Relu) and 4 (Clip, as a fused ReLU6 but within the values' range).
  const float los[] = {0.0f, -0.5f}, his[] = {inf, 0.75f};
  struct Case {
    int64_t M, kc, width;
  };
  // Rows around the 8-row tile, widths around the 16 and 32-column tiles (partial strips),
  // the widths of 7x7 and 14x14 planes, depths around the 16-float vector.
  const std::vector<Case> cases = {{1, 1, 1},    {8, 9, 16},   {13, 27, 37},  {7, 256, 64}, {17, 5, 33},
                                   {3, 100, 15}, {9, 261, 49}, {21, 19, 196}, {6, 16, 18},  {5, 33, 3}};
  for (const Case& cs : cases) {
    CAPTURE(cs.M);
    CAPTURE(cs.kc);
    CAPTURE(cs.width);
    const int64_t strips = (cs.width + 15) / 16, lda = cs.kc + 3, ldc = cs.width + 5;
    const auto a = random_floats(cs.M * lda, 1);
    const auto b = random_floats(strips * cs.kc * 16, 2);
    const auto bias = random_floats(cs.M, 4);
    const auto c_in = random_floats(cs.M * ldc, 5);
    for (kernels::ConvIsa isa : isas())
      for (int mode = 0; mode < 5; ++mode) {
        // 0: first with bias, 1: first without, 2: accumulate, 3: accumulate + Relu, 4: first
        // with bias + Clip.
        CAPTURE(static_cast<int>(isa));
        CAPTURE(mode);
        const bool first = mode < 2 || mode == 4, last = mode >= 3;
        const float* bp = mode == 0 || mode == 4 ? bias.data() : nullptr;
        const float lo = los[mode == 4], hi = his[mode == 4];
        std::vector<float> c = c_in;
        kernels::conv_gemm_strips_at(isa, cs.M, cs.kc, cs.width, a.data(), lda, b.data(), 16, cs.kc * 16, bp, first,
                                     last, lo, hi, c.data(), ldc);
        int64_t wrong = 0;
        for (int64_t m = 0; m < cs.M; ++m)
          for (int64_t j = 0; j < ldc; ++j) {
            if (j >= cs.width) {  // columns past width untouched
              wrong += c[m * ldc + j] != c_in[m * ldc + j];
              continue;
            }
            double want = first ? (bp ? bp[m] : 0.0) : c_in[m * ldc + j], mag = std::abs(want);
            for (int64_t k = 0; k < cs.kc; ++k) {
              const double term = double(a[m * lda + k]) * b[(j / 16) * cs.kc * 16 + k * 16 + j % 16];
              want += term;
              mag += std::abs(term);
            }
            if (last) want = std::min<double>(std::max<double>(want, lo), hi);
            wrong += std::abs(c[m * ldc + j] - want) > kRelTol * mag + 1e-7;
          }
        CHECK(wrong == 0);
      }
    // B as a row-major matrix (a pointwise convolution's X): ldb = its row length, strips 16
    // columns apart; nothing past `width` of the last row is read (the copy ends there).
    const int64_t ldb = cs.width + 3;
    std::vector<float> rowmajor(cs.kc * ldb);
    for (int64_t k = 0; k < cs.kc; ++k)
      for (int64_t j = 0; j < ldb; ++j)
        rowmajor[k * ldb + j] = j < cs.width ? b[(j / 16) * cs.kc * 16 + k * 16 + j % 16] : NAN;
    const std::vector<float> bounded(rowmajor.begin(), rowmajor.end() - (ldb - cs.width));
    for (kernels::ConvIsa isa : isas()) {
      CAPTURE(static_cast<int>(isa));
      std::vector<float> want = c_in, got = c_in;
      kernels::conv_gemm_strips_at(isa, cs.M, cs.kc, cs.width, a.data(), lda, b.data(), 16, cs.kc * 16, bias.data(),
                                   true, true, 0.0f, inf, want.data(), ldc);
      kernels::conv_gemm_strips_at(isa, cs.M, cs.kc, cs.width, a.data(), lda, bounded.data(), ldb, 16, bias.data(),
                                   true, true, 0.0f, inf, got.data(), ldc);
      CHECK(got == want);
    }
  }
}

// maps_to_rows: every ISA's rows equal the portable loop's bits (bias, each kind of clamp, NaN,
// signed zeros), for map counts and widths around the 16 x 16 blocks and 32-map panels; Y's
// row padding (ldy > width) stays untouched.
TEST_CASE("maps_to_rows writes a position-major tile as clamped rows, the same bits on every ISA") {
  const float inf = std::numeric_limits<float>::infinity();
  const std::pair<float, float> clamps[] = {{-inf, inf}, {0.0f, inf}, {0.0f, 6.0f}, {-inf, 0.5f}};
  int64_t checked = 0, wrong = 0;
  for (int64_t rows : {1, 15, 16, 17, 31, 32, 33, 64, 100})
    for (int64_t width : {1, 7, 15, 16, 17, 33, 49, 196}) {
      const int64_t panels = (rows + 31) / 32, ldy = width + 3;
      auto ct = random_floats(panels * width * 32, 30 + static_cast<uint32_t>(rows * 7 + width), -8.0f, 8.0f);
      ct[0] = std::nanf("");
      if (ct.size() > 5) ct[5] = -0.0f;
      const auto bias = random_floats(rows, 31, -1.0f, 1.0f);
      for (const auto& [lo, hi] : clamps)
        for (bool with_bias : {false, true}) {
          std::vector<float> want(rows * ldy, 7.0f);
          kernels::maps_to_rows_at(kernels::ConvIsa::Portable, ct.data(), width, rows,
                                   with_bias ? bias.data() : nullptr, lo, hi, want.data(), ldy);
          for (kernels::ConvIsa isa : isas()) {
            std::vector<float> got(rows * ldy, 7.0f);
            kernels::maps_to_rows_at(isa, ct.data(), width, rows, with_bias ? bias.data() : nullptr, lo, hi, got.data(),
                                     ldy);
            ++checked;
            wrong += std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0;
          }
          // The portable loop against the definition, one element per block corner.
          for (int64_t i : {int64_t{0}, rows - 1})
            for (int64_t j : {int64_t{0}, width - 1}) {
              float v = ct[(i / 32) * width * 32 + j * 32 + i % 32] + (with_bias ? bias[i] : 0.0f);
              if (lo != -inf) v = v > lo ? v : lo;
              if (hi != inf) v = v < hi ? v : hi;
              wrong += std::memcmp(&v, &want[i * ldy + j], sizeof v) != 0;
            }
        }
    }
  CHECK(checked > 0);
  CHECK(wrong == 0);
}

TEST_CASE("conv_gemm_maps accumulates W x B into a position-major tile of 32-map panels") {
  struct Case {
    int64_t M, kc, width;
  };
  // Maps around the 32-map panel (zero rows past M), widths around the 7-position tile and
  // the 16-wide strips (a tile crossing a strip), 7x7 and 14x14 maps, 3 to 5 panels (each
  // fetching the next one's rows).
  const std::vector<Case> cases = {{1, 1, 1},   {32, 9, 7},    {13, 27, 37}, {40, 256, 49},
                                   {96, 5, 16}, {70, 19, 196}, {160, 3, 8},  {33, 100, 50}};
  for (const Case& cs : cases) {
    CAPTURE(cs.M);
    CAPTURE(cs.kc);
    CAPTURE(cs.width);
    const int64_t panels = (cs.M + 31) / 32, strips = (cs.width + 15) / 16, K = cs.kc + 4;
    const auto w = random_floats(cs.M * K, 6);
    const auto b = random_floats(strips * cs.kc * 16, 7);
    const auto ct_in = random_floats(panels * cs.width * 32, 8);
    const std::vector<float> wt = kernels::pack_map_panels(w.data(), cs.M, K);
    REQUIRE(wt.size() == static_cast<size_t>(panels * K * 32));
    for (kernels::ConvIsa isa : isas())
      for (bool first : {true, false}) {
        CAPTURE(static_cast<int>(isa));
        CAPTURE(first);
        std::vector<float> ct = ct_in;
        // Depth rows 2 .. kc + 1 of the packed weights (a later chunk's block).
        kernels::conv_gemm_maps_at(isa, panels, cs.kc, cs.width, wt.data() + 2 * 32, K * 32, b.data(), 16, cs.kc * 16,
                                   first, ct.data(), cs.width * 32);
        int64_t wrong = 0;
        for (int64_t p = 0; p < panels; ++p)
          for (int64_t j = 0; j < cs.width; ++j)
            for (int64_t i = 0; i < 32; ++i) {
              const int64_t m = p * 32 + i, at = (p * cs.width + j) * 32 + i;
              double want = first ? 0.0 : ct_in[at], mag = std::abs(want);
              for (int64_t k = 0; m < cs.M && k < cs.kc; ++k) {
                const double term = double(w[m * K + 2 + k]) * b[(j / 16) * cs.kc * 16 + k * 16 + j % 16];
                want += term;
                mag += std::abs(term);
              }
              wrong += std::abs(ct[at] - want) > kRelTol * mag + 1e-7;
            }
        CHECK(wrong == 0);
      }
  }
}

TEST_CASE("depthwise_conv2d matches its definition with bias, padding, strides, dilation and a fused clamp") {
  const float inf = std::numeric_limits<float>::infinity();
  // 3x3 stride 1 and 2 (MobileNet), 5x5, 7x1, dilation 2, stride 3 (the portable loop),
  // planes narrower and wider than a vector, 4-row blocks with remainders; stride 2 with and
  // without padding over 35 and 40 columns (the FMA kernel splits padded rows into even and
  // odd columns 16 at a time, from an odd or an even first column); 16 output columns, whose
  // last taps read the last padding column of the FMA kernel's rows.
  const std::vector<Geo> geos = {{7, 7, 3, 3, 1, 1, 1},   {14, 14, 3, 3, 2, 1, 1}, {9, 37, 3, 3, 1, 1, 1},
                                 {13, 35, 3, 3, 2, 1, 1}, {11, 20, 5, 5, 1, 1, 2}, {12, 19, 7, 1, 2, 1, 0},
                                 {10, 18, 3, 3, 1, 2, 2}, {10, 18, 3, 3, 3, 1, 1}, {1, 1, 3, 3, 1, 1, 1},
                                 {3, 50, 3, 3, 2, 2, 0},  {9, 40, 3, 3, 2, 1, 0},  {6, 16, 3, 3, 1, 1, 1},
                                 {6, 32, 3, 3, 2, 1, 1}};
  for (const Geo& g : geos) {
    kernels::WindowShape s = window(g.H, g.W, g.KH, g.KW, g.stride, g.dil, g.pad);
    if (g.KW == 1) {  // 7x1: pad only the rows
      s.pad_begin = {g.pad, 0};
      s.out[1] = (g.W - 1) / g.stride + 1;
    }
    CAPTURE(g.H);
    CAPTURE(g.W);
    CAPTURE(g.KH);
    CAPTURE(g.stride);
    CAPTURE(g.dil);
    const int64_t C = 3, in = s.in_size(), out = s.out_size(), ksize = s.kernel_size();
    auto x = random_floats(C * in, 7);
    x[in + in / 2] = std::numeric_limits<float>::quiet_NaN();  // channel 1: NaN sums -> 0 under Relu
    const auto w = random_floats(C * ksize, 8);
    const auto bias = random_floats(C, 9);
    for (kernels::ConvIsa isa : isas())
      for (bool relu : {false, true}) {
        CAPTURE(static_cast<int>(isa));
        CAPTURE(relu);
        std::vector<float> y(C * out, -5.0f);
        // First a wide plane of large values at the same stride, so that scratch memory a
        // kernel keeps between planes holds data, not zeros, where this plane's padding goes.
        {
          const kernels::WindowShape big = window(20, 60, 3, 3, g.stride, 1, 1);
          const std::vector<float> xb(big.in_size(), 1000.0f), wb(9, 1.0f);
          std::vector<float> yb(big.out_size());
          kernels::depthwise_conv2d_at(isa, xb.data(), big, wb.data(), nullptr, 0, 1, -inf, inf, yb.data());
        }
        // Channels [1, 3) only: channel 0 stays as it was.
        kernels::depthwise_conv2d_at(isa, x.data(), s, w.data(), bias.data(), 1, 3, relu ? 0.0f : -inf, inf, y.data());
        int64_t wrong = 0;
        for (int64_t j = 0; j < out; ++j) wrong += y[j] != -5.0f;
        for (int64_t c = 1; c < C; ++c)
          for (int64_t j = 0; j < out; ++j) {
            double want = bias[c], mag = std::abs(want);
            for (int64_t k = 0; k < ksize; ++k) {
              const double term =
                  double(w[c * ksize + k]) * window_element(x.data() + c * in, s, j, k / g.KW, k % g.KW);
              want += term;
              mag += std::abs(term);
            }
            const float got = y[c * out + j];
            if (std::isnan(want)) {
              wrong += relu ? got != 0.0f : !std::isnan(got);
              continue;
            }
            if (relu) want = want > 0 ? want : 0;
            wrong += std::abs(got - want) > kRelTol * mag + 1e-7;
          }
        CHECK(wrong == 0);
      }
  }
}

namespace {

// One node in a model of the given opset with `constant` inputs as initializers, run on
// `threads` threads.
Tensor run_one(const std::string& op, const std::vector<std::pair<Tensor, bool>>& inputs,
               std::vector<slmops::ir::Attribute> attrs, int threads) {
  slmops::ir::Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.graph = std::make_unique<slmops::ir::Graph>();
  std::vector<slmops::ir::Value*> ins;
  std::vector<RValue> feeds;
  for (const auto& [t, constant] : inputs) {
    if (constant) {
      ins.push_back(m.graph->add_initializer(t));
      continue;
    }
    slmops::ir::TensorType type;
    type.is_tensor = true;
    type.elem_code = static_cast<int32_t>(t.dtype);
    ins.push_back(m.graph->add_input(t.name, type));
    feeds.push_back(RValue::of(t));
  }
  slmops::ir::Node* n = m.graph->add_node(op, ins, {"y"}, std::move(attrs));
  m.graph->add_output(n->outputs[0]);
  Session s(m, threads);
  return s.run(std::move(feeds))[0].tensor;
}

std::vector<slmops::ir::Attribute> conv_attrs(int64_t k, int64_t stride, int64_t pad, int64_t group) {
  using slmops::ir::Attribute;
  std::vector<Attribute> a;
  a.push_back(Attribute::make_ints("kernel_shape", {k, k}));
  a.push_back(Attribute::make_ints("strides", {stride, stride}));
  a.push_back(Attribute::make_ints("pads", {pad, pad, pad, pad}));
  if (group > 0) a.push_back(Attribute::make_int("group", group));
  return a;
}

Tensor float_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
  Tensor t = new_tensor(DType::Float, dims);
  std::copy(v.begin(), v.end(), t.mutable_values<float>());
  t.name = name;
  return t;
}

}  // namespace

TEST_CASE("Conv: grouped, strided, depthwise and 7x7-stem convolutions equal their definition") {
  struct Case {
    int64_t N, C, H, W, M, K, stride, pad, group;
  };
  const std::vector<Case> cases = {
      {1, 3, 23, 21, 8, 7, 2, 3, 1},   // the stem, small
      {2, 8, 9, 11, 12, 3, 2, 1, 1},   // stride 2, partial strips, batch 2
      {1, 12, 10, 10, 6, 3, 1, 1, 3},  // grouped
      {1, 6, 9, 9, 6, 3, 2, 1, 6},     // depthwise stride 2
      {2, 5, 12, 17, 5, 3, 1, 1, 5},   // depthwise stride 1
      {1, 40, 6, 6, 9, 3, 1, 1, 1},    // K = 360: two channel chunks, bias in the first
      {1, 300, 4, 4, 3, 1, 2, 0, 1},   // 1x1 stride 2, K = 300
      {2, 300, 5, 7, 10, 1, 1, 0, 1},  // pointwise (X read in place), two chunks, partial strips
      // Columns written in sgemm's packed layout (conv_packed_columns), depth blocks of whole
      // channels: K = 630 in blocks of 252, 252, 126 (3x3, a partial last strip); K = 825 in
      // blocks of 250 (5x5 stride 2: gathered windows); each with the weights pre-packed
      // (constant) or not.
      {1, 70, 9, 10, 13, 3, 1, 1, 1},
      {1, 33, 11, 11, 7, 5, 2, 2, 1},
      // How conv_strips shares the work out (AVX-512 CPUs): by maps where output rows are
      // not whole strips (7x7 grouped pointwise, 20 maps = 3 groups of 8 per group; a 14x14
      // 3x3 with 36 maps), by strips where they are (an 8x8 map, 40 maps, batch 3), each on 1,
      // 2 and 3 threads, so that shares start and end inside a strip or a group of maps.
      {2, 16, 7, 7, 40, 1, 1, 0, 2},
      {1, 24, 14, 14, 36, 3, 1, 1, 1},
      {3, 8, 8, 8, 40, 3, 1, 1, 1},
  };
  for (const Case& cs : cases) {
    CAPTURE(cs.C);
    CAPTURE(cs.K);
    CAPTURE(cs.stride);
    CAPTURE(cs.group);
    const int64_t cg = cs.C / cs.group, mg = cs.M / cs.group;
    const int64_t OH = (cs.H + 2 * cs.pad - cs.K) / cs.stride + 1, OW = (cs.W + 2 * cs.pad - cs.K) / cs.stride + 1;
    const auto x = random_floats(cs.N * cs.C * cs.H * cs.W, 21);
    const auto w = random_floats(cs.M * cg * cs.K * cs.K, 22);
    const auto b = random_floats(cs.M, 23);
    std::vector<double> want(cs.N * cs.M * OH * OW), mag(want.size());
    for (int64_t n = 0; n < cs.N; ++n)
      for (int64_t m = 0; m < cs.M; ++m)
        for (int64_t oy = 0; oy < OH; ++oy)
          for (int64_t ox = 0; ox < OW; ++ox) {
            const int64_t o = ((n * cs.M + m) * OH + oy) * OW + ox;
            want[o] = b[m];
            mag[o] = std::abs(b[m]);
            for (int64_t c = 0; c < cg; ++c)
              for (int64_t ky = 0; ky < cs.K; ++ky)
                for (int64_t kx = 0; kx < cs.K; ++kx) {
                  const int64_t iy = oy * cs.stride - cs.pad + ky, ix = ox * cs.stride - cs.pad + kx;
                  if (iy < 0 || iy >= cs.H || ix < 0 || ix >= cs.W) continue;
                  const int64_t ci = m / mg * cg + c;
                  const double term =
                      double(w[((m * cg + c) * cs.K + ky) * cs.K + kx]) * x[((n * cs.C + ci) * cs.H + iy) * cs.W + ix];
                  want[o] += term;
                  mag[o] += std::abs(term);
                }
          }
    for (bool constant_w : {true, false})
      for (int threads : {1, 2, 3}) {
        CAPTURE(constant_w);
        CAPTURE(threads);
        const Tensor y = run_one("Conv",
                                 {{float_tensor("x", {cs.N, cs.C, cs.H, cs.W}, x), false},
                                  {float_tensor("w", {cs.M, cg, cs.K, cs.K}, w), constant_w},
                                  {float_tensor("b", {cs.M}, b), constant_w}},
                                 conv_attrs(cs.K, cs.stride, cs.pad, cs.group), threads);
        REQUIRE(y.dims == std::vector<int64_t>{cs.N, cs.M, OH, OW});
        int64_t wrong = 0;
        for (size_t i = 0; i < want.size(); ++i)
          wrong += std::abs(y.values<float>()[i] - want[i]) > kRelTol * mag[i] + 1e-6;
        CHECK(wrong == 0);
      }
  }
}

TEST_CASE("MaxPool with padding and ceil_mode equals its definition (the ResNet stem's 3x3 stride-2 pool)") {
  struct Case {
    int64_t H, W, K, stride, pad;
    bool ceil;
  };
  const std::vector<Case> cases = {{16, 16, 3, 2, 1, false}, {15, 13, 3, 2, 1, true}, {9, 7, 2, 2, 1, false},
                                   {5, 6, 3, 1, 1, false},   {8, 9, 3, 3, 0, true},   {6, 45, 3, 2, 1, true},
                                   {5, 40, 4, 2, 1, false}};
  for (const Case& cs : cases) {
    CAPTURE(cs.H);
    CAPTURE(cs.W);
    CAPTURE(cs.ceil);
    const int64_t C = 3;
    auto extent = [&](int64_t in) {
      const int64_t span = in + 2 * cs.pad - cs.K;
      return (cs.ceil ? (span + cs.stride - 1) / cs.stride : span / cs.stride) + 1;
    };
    const int64_t OH = extent(cs.H), OW = extent(cs.W);
    auto x = random_floats(C * cs.H * cs.W, 31, -2.0f, -1.0f);  // all negative: padding must not count as 0
    x[5] = std::numeric_limits<float>::quiet_NaN();             // NaN never wins
    for (int threads : {1, 2}) {
      auto a = conv_attrs(cs.K, cs.stride, cs.pad, 0);
      a.push_back(slmops::ir::Attribute::make_int("ceil_mode", cs.ceil ? 1 : 0));
      const Tensor y = run_one("MaxPool", {{float_tensor("x", {1, C, cs.H, cs.W}, x), false}}, std::move(a), threads);
      REQUIRE(y.dims == std::vector<int64_t>{1, C, OH, OW});
      int64_t wrong = 0;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t oy = 0; oy < OH; ++oy)
          for (int64_t ox = 0; ox < OW; ++ox) {
            float want = std::numeric_limits<float>::lowest();
            for (int64_t ky = 0; ky < cs.K; ++ky)
              for (int64_t kx = 0; kx < cs.K; ++kx) {
                const int64_t iy = oy * cs.stride - cs.pad + ky, ix = ox * cs.stride - cs.pad + kx;
                if (iy < 0 || iy >= cs.H || ix < 0 || ix >= cs.W) continue;
                const float v = x[(c * cs.H + iy) * cs.W + ix];
                want = v > want ? v : want;
              }
            wrong += y.values<float>()[(c * OH + oy) * OW + ox] != want;
          }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("Where selects by a broadcast condition for elements of 1, 2, 4 and 8 bytes") {
  // A causal-mask shape: cond [1, 1, 3, 5] over x [2, 3, 3, 5] and a scalar y.
  const std::vector<int64_t> cd = {1, 1, 3, 5}, xd = {2, 3, 3, 5};
  Tensor cond = new_tensor(DType::Bool, cd);
  for (int64_t i = 0; i < 15; ++i) cond.mutable_values<bool>()[i] = i % 5 <= i / 5 + 1;
  cond.name = "c";
  auto check = [&](DType dt, auto tag) {
    using T = decltype(tag);
    CAPTURE(static_cast<int>(dt));
    Tensor x = new_tensor(dt, xd), y = new_tensor(dt, {});
    for (int64_t i = 0; i < 90; ++i) x.mutable_values<T>()[i] = static_cast<T>(1000 + 37 * i);
    y.mutable_values<T>()[0] = static_cast<T>(7);
    x.name = "x";
    y.name = "y";
    const Tensor out = run_one("Where", {{cond, false}, {x, false}, {y, true}}, {}, 1);
    REQUIRE(out.dims == xd);
    int64_t wrong = 0;
    for (int64_t i = 0; i < 90; ++i) {
      const T want = cond.values<bool>()[i % 15] ? x.values<T>()[i] : T{7};
      wrong += out.values<T>()[i] != want;
    }
    CHECK(wrong == 0);
  };
  check(DType::UInt8, uint8_t{});
  check(DType::UInt16, uint16_t{});
  check(DType::Float, float{});
  check(DType::Int64, int64_t{});
}

TEST_CASE("Softmax and LogSoftmax along the last axis: every row length around the vector width, NaN, -inf") {
  using slmops::ir::Attribute;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    CAPTURE(op);
    const bool log = std::string(op) == "LogSoftmax";
    for (int64_t n : {1, 5, 15, 16, 17, 31, 33, 64, 70}) {
      CAPTURE(n);
      // Row 0 random in [-8, 8]; row 1 has a NaN; row 2 is all -inf; row 3 holds -inf and finite values.
      auto x = random_floats(4 * n, 40 + static_cast<uint32_t>(n), -8.0f, 8.0f);
      x[n + n / 2] = nan;
      for (int64_t i = 0; i < n; ++i) x[2 * n + i] = -inf;
      x[3 * n] = -inf;
      std::vector<Attribute> a;
      a.push_back(Attribute::make_int("axis", -1));
      const Tensor y = run_one(op, {{float_tensor("x", {4, n}, x), false}}, std::move(a), 1);
      REQUIRE(y.dims == std::vector<int64_t>{4, n});
      const float* py = y.values<float>();
      int64_t wrong = 0;
      for (int64_t r : {0, 3}) {
        double m = -inf, sum = 0;
        for (int64_t i = 0; i < n; ++i) m = std::max<double>(m, x[r * n + i]);
        for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[r * n + i]) - m);
        for (int64_t i = 0; i < n; ++i) {
          const double d = double(x[r * n + i]) - m;
          const double want = log ? d - std::log(sum) : std::exp(d) / sum;
          const double got = py[r * n + i];
          if (std::isinf(want))
            wrong += got != want;
          else
            wrong += std::abs(got - want) > 2e-6 * std::max(1.0, std::abs(want));
        }
      }
      for (int64_t i = 0; i < n; ++i) wrong += !std::isnan(py[n + i]);      // a NaN in the row
      for (int64_t i = 0; i < n; ++i) wrong += !std::isnan(py[2 * n + i]);  // -inf - -inf
      CHECK(wrong == 0);
    }
  }
}

// Softmax rows take a 16-lane path on AVX-512 CPUs; it must give the bits of the generic
// 4 x 4-lane folds (calibrated ranges, and so quantized models' bytes, come from softmax
// outputs: a different order of additions changed them once). Rows around the vector width
// and across the fold's 512-element blocks, with NaN, -inf, signed zeros and a wide range.
TEST_CASE("Softmax rows: the 16-lane path gives the generic path's bits") {
  namespace red = slmops::runtime::ops::reduction;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  if (!red::detail::softmax_row_has_x16()) MESSAGE("no AVX-512F here: both calls take the generic path");
  int64_t rows = 0, differing = 0;
  for (int64_t n : {1, 3, 15, 16, 17, 31, 32, 48, 63, 64, 65, 127, 128, 200, 511, 512, 513, 527, 1024, 1100, 3000})
    for (int kind = 0; kind < 4; ++kind) {
      auto x = random_floats(n, 700 + static_cast<uint32_t>(n * 4 + kind), -30.0f, 30.0f);
      if (kind == 1) x[n / 3] = nan;
      if (kind == 2)
        for (int64_t i = 0; i < n; i += 3) x[i] = -inf;
      if (kind == 3)
        for (int64_t i = 0; i < n; ++i) x[i] = i % 2 ? 0.0f : -0.0f;
      for (bool log : {false, true}) {
        std::vector<float> wide(n), generic(n), pair0(n), pair1(n);
        red::detail::softmax_row_f32(x.data(), wide.data(), n, log, true);
        red::detail::softmax_row_f32(x.data(), generic.data(), n, log, false);
        // Two rows at once (the kernel's float path): each row as alone; the second row is
        // the first reversed, so that the two rows' chains differ.
        std::vector<float> x1(x.rbegin(), x.rend()), generic1(n);
        red::detail::softmax_row_pair_f32(x.data(), x1.data(), pair0.data(), pair1.data(), n, log);
        red::detail::softmax_row_f32(x1.data(), generic1.data(), n, log, false);
        differing += std::memcmp(pair0.data(), generic.data(), n * sizeof(float)) != 0;
        differing += std::memcmp(pair1.data(), generic1.data(), n * sizeof(float)) != 0;
        ++rows;
        if (std::memcmp(wide.data(), generic.data(), n * sizeof(float)) != 0) {
          ++differing;
          INFO("n " << n << " kind " << kind << " log " << log);
          CHECK(std::memcmp(wide.data(), generic.data(), n * sizeof(float)) == 0);
        }
      }
    }
  CHECK(rows == 21 * 4 * 2);
  CHECK(differing == 0);
}
