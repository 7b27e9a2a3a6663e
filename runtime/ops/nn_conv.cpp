// Conv and ConvTranspose over any number of spatial dims, as GEMMs on im2col / col2im
// matrices (runtime/kernels/conv.h). float16, bfloat16 and double compute in float32.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>

#include "runtime/kernels/gemm.h"
#include "runtime/ops/nn_common.h"

namespace slmops::runtime::ops {
namespace {

// Most floats in one im2col / col2im tile (2 MiB: it stays in L2/L3 between its write and
// the GEMM that reads it), and the fewest columns worth a GEMM call.
constexpr int64_t kColBudget = int64_t{1} << 19;
constexpr int64_t kMinTileCols = 256;
// Elements an im2col / col2im chunk should touch before it is worth a thread of its own.
constexpr int64_t kCopyGrain = int64_t{1} << 15;

// Columns per tile of a column matrix with `rows` rows and `cols` columns.
int64_t tile_cols(int64_t rows, int64_t cols) {
  return std::min(cols, std::max(kMinTileCols, kColBudget / std::max<int64_t>(rows, 1)));
}

// The shapes a convolution node works on, checked against each other.
struct ConvDims {
  int64_t batch, in_channels, out_channels, group;
  std::vector<int64_t> spatial, kernel;  // of the input X and of the weights W
};

// X is [N, C, D1...], W is [M, C/group, k1...] (Conv) or [C, M/group, k1...] (ConvTranspose).
ConvDims conv_dims(const Tensor& x, const Tensor& w, int64_t group, const WindowAttrs& attrs, bool transposed) {
  require_float_type(x, "X");
  if (w.dtype != x.dtype) bad_input("W has type {}, X has {}", ir::dtype_name(w.dtype), ir::dtype_name(x.dtype));
  if (x.dims.size() < 3) bad_input("X must have a batch, a channel and at least one spatial dim, got {}", describe(x));
  if (w.dims.size() != x.dims.size()) bad_input("W {} must have the rank of X {}", describe(w), describe(x));
  if (group < 1) bad_input("group {} must be positive", group);
  ConvDims d;
  d.batch = x.dims[0];
  d.in_channels = x.dims[1];
  d.group = group;
  d.spatial.assign(x.dims.begin() + 2, x.dims.end());
  d.kernel.assign(w.dims.begin() + 2, w.dims.end());
  // The weights' channel dims: [out, in / group] for Conv, [in, out / group] when transposed.
  // dims[1] * group may overflow for an absurd group attribute: checked, never wrapped.
  int64_t grouped = 0;
  if (__builtin_mul_overflow(w.dims[1], group, &grouped))
    bad_input("W {} with group {} describes more channels than fit in 64 bits", describe(w), group);
  const int64_t w_in = transposed ? w.dims[0] : grouped;
  d.out_channels = transposed ? grouped : w.dims[0];
  if (w_in != d.in_channels || d.in_channels % group != 0 || d.out_channels % group != 0)
    bad_input("W {} does not fit X {} with group {}", describe(w), describe(x), group);
  if (!attrs.kernel_shape.empty() && attrs.kernel_shape != d.kernel)
    bad_input("kernel_shape [{}] does not match W {}", fmt::join(attrs.kernel_shape, ", "), describe(w));
  return d;
}

// The optional bias B as float32 values (nullptr when absent), checked to have M elements.
const float* bias_values(const OpContext& ctx, size_t input, int64_t maps, Tensor& storage) {
  if (!ctx.has_input(input)) return nullptr;
  const Tensor& b = ctx.in(input);
  if (static_cast<int64_t>(b.numel()) != maps) bad_input("B {} must have {} elements", describe(b), maps);
  storage = to_float_tensor(b);
  return storage.values<float>();
}

// Fills the `rows` rows (each `cols` long, `ld` apart) of y with bias[row], or zeros.
void init_rows(float* y, int64_t rows, int64_t cols, int64_t ld, const float* bias) {
  for (int64_t r = 0; r < rows; ++r) std::fill(y + r * ld, y + r * ld + cols, bias ? bias[r] : 0.0f);
}

// ---- Conv ----------------------------------------------------------------------------------

// A convolution whose groups have one input channel each (depthwise) skips the column
// matrix: each output plane accumulates its kernel's shifted, scaled input plane.
void conv_depthwise(const float* x, const float* w, const float* bias, const ConvDims& d, const kernels::WindowShape& s,
                    float* y, ThreadPool* pool) {
  const int64_t mg = d.out_channels / d.group;
  const int64_t in_size = s.in_size(), out_size = s.out_size(), ksize = s.kernel_size();
  const int64_t grain = std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(out_size * ksize, 1));
  parallel_range(pool, d.batch * d.out_channels, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / d.out_channels, m = p % d.out_channels;
      float* yp = y + p * out_size;
      std::fill(yp, yp + out_size, bias ? bias[m] : 0.0f);
      kernels::depthwise_accumulate(x + (n * d.in_channels + m / mg) * in_size, s, w + m * ksize, yp);
    }
  });
}

// For each image n and group g, with K = (C/group) * kernel_size:
//   Y[n, g's M/group maps, :] = W_g [M/group, K] * im2col(X[n, g's channels]) [K, out_size] + B
// The columns are produced and multiplied a tile at a time; (n, g, tile) triples are the
// parallel tasks. `pw`: the weights pre-packed per group (sgemm then packs only the columns),
// or null.
using PackedWeights = std::vector<kernels::PackedA>;
void conv_gemm(const float* x, const float* w, const PackedWeights* pw, const float* bias, const ConvDims& d,
               const kernels::WindowShape& s, float* y, ThreadPool* pool) {
  const int64_t cg = d.in_channels / d.group, mg = d.out_channels / d.group;
  const int64_t depth = cg * s.kernel_size();
  const int64_t in_size = s.in_size(), out_size = s.out_size();
  if (out_size == 0) return;
  const bool pointwise = s.pointwise();
  const int64_t tile = pointwise ? out_size : tile_cols(depth, out_size);
  const int64_t tiles = (out_size + tile - 1) / tile;
  run_tasks(pool, d.batch * d.group * tiles, [&](int64_t begin, int64_t end, ThreadPool* inner) {
    std::vector<float> col(pointwise ? 0 : depth * tile);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / tiles / d.group, g = t / tiles % d.group;
      const int64_t j0 = t % tiles * tile, cols = std::min(tile, out_size - j0);
      const float* xg = x + (n * d.in_channels + g * cg) * in_size;
      float* yg = y + (n * d.out_channels + g * mg) * out_size + j0;
      // A pointwise convolution multiplies X itself: its column matrix is X.
      const float* b = xg + j0;
      int64_t ldb = in_size;
      if (!pointwise) {
        parallel_range(inner, cg, std::max<int64_t>(1, kCopyGrain / (s.kernel_size() * cols)),
                       [&](int64_t c0, int64_t c1) { kernels::im2col(xg, s, c0, c1, j0, j0 + cols, col.data(), cols); });
        b = col.data();
        ldb = cols;
      }
      if (bias) init_rows(yg, mg, cols, out_size, bias + g * mg);
      if (pw)
        kernels::sgemm_packed_a((*pw)[g], false, cols, 1.0f, b, ldb, bias ? 1.0f : 0.0f, yg, out_size, inner);
      else
        kernels::sgemm(false, false, mg, cols, depth, 1.0f, w + g * mg * depth, depth, b, ldb, bias ? 1.0f : 0.0f, yg,
                       out_size, inner);
    }
  });
}

// A 64-byte aligned float buffer of one thread, grown to the largest size asked for.
float* thread_scratch(size_t n) {
  thread_local std::vector<float> v;
  if (v.size() < n + 16) v.resize(n + 16);
  const uintptr_t p = reinterpret_cast<uintptr_t>(v.data());
  return v.data() + ((64 - p % 64) % 64) / sizeof(float);
}

// ---- 2-D Conv as GEMMs on column strips ------------------------------------------------------

// Most column rows of one chunk (a run of input channels whose strips are made and multiplied
// together): a 16-wide strip of them is 16 KiB, in L1 next to an 8-row weight panel.
constexpr int64_t kChunkRows = 256;
// Most floats of a task's column strips and output tile together (256 KiB: in L2 between the
// im2col that writes the strips, the GEMM of every chunk and the fused clamp).
constexpr int64_t kStripTileBudget = int64_t{1} << 16;

// Whether conv_strips takes the convolution: a 2-D geometry StripIm2col handles, on a CPU with
// AVX + FMA at least (without them sgemm's kernels on an im2col matrix are faster than
// conv_gemm_strips' portable loop).
bool strips_fit(const kernels::WindowShape& s) {
  return kernels::conv_isa() != kernels::ConvIsa::Portable && kernels::StripIm2col::supported(s);
}

// The work of conv_strips in units of one 16-wide strip of output columns by one group of 8
// maps, ordered by image and group, then (strip, map group) or, with `maps_major`, (map group,
// strip); a thread's share is one contiguous range of them, cut into rectangles (a run of
// strips by a run of map groups, at most `most` strips).
struct StripRect {
  int64_t outer;   // n * group + g
  int64_t t0, t1;  // strips
  int64_t g0, g1;  // groups of 8 maps
};

template <typename Visit>
void for_each_strip_rect(int64_t u0, int64_t u1, int64_t strips, int64_t groups, int64_t most, bool maps_major,
                         Visit&& visit) {
  const int64_t per_outer = strips * groups;
  // Strips [t0, t1) of map groups [g0, g1), `most` strips at a time.
  auto emit = [&](int64_t o, int64_t t0, int64_t t1, int64_t g0, int64_t g1) {
    for (int64_t t = t0; t < t1; t += most) visit(StripRect{o, t, std::min(t1, t + most), g0, g1});
  };
  for (int64_t u = u0; u < u1;) {
    const int64_t o = u / per_outer, r = u % per_outer, end = std::min(u1, (o + 1) * per_outer);
    if (maps_major) {
      const int64_t g = r / strips, t = r % strips;
      if (t != 0 || end - u < strips) {  // part of one map group's strips
        const int64_t t1 = std::min(strips, t + (end - u));
        emit(o, t, t1, g, g + 1);
        u += t1 - t;
      } else {  // whole map groups
        const int64_t g1 = g + (end - u) / strips;
        emit(o, 0, strips, g, g1);
        u += (g1 - g) * strips;
      }
    } else {
      const int64_t t = r / groups, g = r % groups;
      if (g != 0 || end - u < groups) {  // part of one strip's map groups
        const int64_t g1 = std::min(groups, g + (end - u));
        emit(o, t, t + 1, g, g1);
        u += g1 - g;
      } else {  // whole strips
        const int64_t t1 = t + (end - u) / groups;
        emit(o, t, t1, 0, groups);
        u += (t1 - t) * groups;
      }
    }
  }
}

// The threads split the units (16 output columns by 8 maps, of every image and group) into
// equal contiguous shares, whatever the strip count (13 strips of a 14x14 map over two
// threads: six and a half each, not seven and six). Where output rows are not whole cache
// lines (P not a multiple of 16: 14x14, 7x7 maps) the shares are ranges of maps rather than
// of strips: two threads writing the ends of neighbouring rows would share their cache lines
// for the whole convolution (the output tile is read and written once per chunk), which on a
// 7x7 map made the GEMM take twice its CPU time. For each rectangle of a share, chunk of
// input channels by chunk: the chunk's column rows go straight into 16-wide strips
// (StripIm2col, in L1/L2), and kernels::conv_gemm_strips multiplies the weights in place (no
// packed copy of them) into Y[n, maps, strips], starting from the bias with the first chunk
// and clamping ([lo, hi]: a fused Relu) with the last. No column matrix of the image, no pass
// over Y for bias or Relu.
//   Y[n, g's maps, :] = bias + sum over chunks of W_g[:, chunk] * im2col(X[n, chunk])
//
// With `wt` (the weights in kernels::pack_map_panels' layout, one group) the product is
// kernels::conv_gemm_maps instead: vectors along 32 maps, positions broadcast, into a
// position-major tile of the thread that goes to Y with the bias and clamp after the last
// chunk; the units are then a strip by 32 maps.
void conv_strips(const float* x, const float* w, const float* wt, const float* bias, const kernels::StripIm2col& im2col,
                 const ConvDims& d, const kernels::WindowShape& s, float* y, ThreadPool* pool, float lo, float hi) {
  constexpr int64_t S = kernels::StripIm2col::kStrip, MP = kernels::kMapPanel;
  const int64_t P = s.out_size(), in_size = s.in_size(), ksize = s.kernel_size();
  const int64_t cg = d.in_channels / d.group, mg = d.out_channels / d.group, K = cg * ksize;
  const int64_t unit_maps = wt ? MP : 8;
  const int64_t strips = im2col.strips(), groups = (mg + unit_maps - 1) / unit_maps;
  const int64_t threads = pool ? pool->threads() : 1;
  const bool pointwise = s.pointwise();
  // Channels per chunk: as few chunks as keep each within kChunkRows, of equal sizes.
  const int64_t chunks = std::max<int64_t>(1, (K + kChunkRows - 1) / kChunkRows);
  const int64_t per_chunk = (cg + chunks - 1) / chunks, chunk_rows = per_chunk * ksize;
  // Strips per rectangle: the column strips and output tile within budget.
  const int64_t most = std::max<int64_t>(1, kStripTileBudget / ((chunk_rows + mg) * S));
  const int64_t units = d.batch * d.group * strips * groups;
  const int64_t shares = std::min(units, threads);
  const bool maps_major = wt || P % S != 0;
  parallel_range(pool, shares, 1, [&](int64_t share0, int64_t share1) {
    const int64_t col_floats = chunk_rows * most * S;
    float* cols = thread_scratch(static_cast<size_t>(col_floats + (wt ? groups * MP * most * S : 0)));
    float* ct = cols + col_floats;  // conv_gemm_maps' position-major tile
    for_each_strip_rect(units * share0 / shares, units * share1 / shares, strips, groups, most, maps_major,
                        [&](const StripRect& r) {
                          const int64_t g = r.outer % d.group, n = r.outer / d.group;
                          const int64_t j0 = r.t0 * S, width = std::min(P, r.t1 * S) - j0;
                          const int64_t m0 = r.g0 * unit_maps, rows = std::min(mg, r.g1 * unit_maps) - m0;
                          const float* xg = x + (n * d.in_channels + g * cg) * in_size;
                          const float* wg = w + (g * mg + m0) * K;
                          const float* bg = bias ? bias + g * mg + m0 : nullptr;
                          float* yg = y + (n * d.out_channels + g * mg + m0) * P + j0;
                          for (int64_t c0 = 0; c0 < cg; c0 += per_chunk) {
                            const int64_t c1 = std::min(cg, c0 + per_chunk), kc = (c1 - c0) * ksize;
                            // The chunk's columns: X's rows in place (pointwise) or strips.
                            const float* b = xg + c0 * P + j0;
                            int64_t ldb = P, sstride = S;
                            if (!pointwise) {
                              im2col.run(xg, c0, c1, r.t0, r.t1, cols, kc);
                              b = cols;
                              ldb = S;
                              sstride = kc * S;
                            }
                            if (wt) {
                              kernels::conv_gemm_maps(r.g1 - r.g0, kc, width, wt + (r.g0 * K + c0 * ksize) * MP, K * MP,
                                                      b, ldb, sstride, c0 == 0, ct, width * MP);
                              continue;
                            }
                            kernels::conv_gemm_strips(rows, kc, width, wg + c0 * ksize, K, b, ldb, sstride, bg, c0 == 0,
                                                      c1 == cg, lo, hi, yg, P);
                          }
                          // Y[m0 + i, j0 + j] = clamp(CT[i / 32, j, i % 32] + bias).
                          if (wt) kernels::maps_to_rows(ct, width, rows, bg, lo, hi, yg, P);
                        });
  });
}

// A depthwise 2-D convolution (one input channel and one map per group) with its bias and
// clamp fused: kernels::depthwise_conv2d over ranges of the N * C planes.
void conv_depthwise_2d(const float* x, const float* w, const float* bias, const ConvDims& d,
                       const kernels::WindowShape& s, float* y, ThreadPool* pool, float lo, float hi) {
  const int64_t C = d.in_channels, in_size = s.in_size(), out_size = s.out_size();
  const int64_t grain = std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(out_size * s.kernel_size(), 1));
  parallel_range(pool, d.batch * C, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1;) {
      const int64_t n = p / C, c0 = p % C, c1 = std::min(C, c0 + (p1 - p));
      kernels::depthwise_conv2d(x + n * C * in_size, s, w, bias, c0, c1, lo, hi, y + n * C * out_size);
      p += c1 - c0;
    }
  });
}

// Most floats in the column matrix of a whole batch (8 MiB) for conv_gemm_batched.
constexpr int64_t kBatchColBudget = int64_t{1} << 21;

// Whether conv_gemm_batched takes the convolution: one group, a real window (a pointwise
// convolution multiplies X in place, without a column matrix) and the batch's column
// matrix within budget.
bool batched_gemm_fits(const ConvDims& d, const kernels::WindowShape& s) {
  const int64_t depth = d.in_channels * s.kernel_size(), cols = d.batch * s.out_size();
  return d.group == 1 && !s.pointwise() && cols > 0 && depth * cols <= kBatchColBudget &&
         d.out_channels * cols <= kBatchColBudget;
}

// A group-1 convolution of the whole batch as one GEMM, for small images where a GEMM per
// image costs more in packing and calls than in arithmetic (8x8 digits: N = 64 per image):
//   T[M, B*P] = W[M, K] * [im2col(X[0]) | ... | im2col(X[B-1])],  K = C * kernel_size,
//   Y[n, m, :] = T[m, n*P : (n+1)*P] + bias[m],                   P = out_size.
// The column matrix and T are pooled tensors (see TensorPool), reused run after run.
void conv_gemm_batched(const float* x, const float* w, const PackedWeights* pw, const float* bias, const ConvDims& d,
                       const kernels::WindowShape& s, float* y, ThreadPool* pool) {
  const int64_t K = d.in_channels * s.kernel_size(), P = s.out_size(), N = d.batch * P, M = d.out_channels;
  const int64_t in_size = s.in_size();
  Tensor t = new_tensor(DType::Float, {M, N});
  const float* pt = t.values<float>();
  constexpr int64_t S = kernels::PackedB::kStrip;
  if (K <= kernels::PackedB::kWrapMaxK && P % S == 0) {
    // Each image's im2col (K x P, in cache) goes straight into sgemm's packed strips, strip
    // by strip (each strip one contiguous K x 16 block), so sgemm_packed skips its own pass
    // over the whole K x B*P column matrix.
    Tensor packed_t = new_tensor(DType::Float, {kernels::PackedB::packed_floats(K, N)});
    float* pk = packed_t.mutable_values<float>();
    parallel_range(pool, d.batch, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(K * P, 1)),
                   [&](int64_t n0, int64_t n1) {
                     thread_local std::vector<float> img;
                     img.resize(static_cast<size_t>(K * P));
                     for (int64_t n = n0; n < n1; ++n) {
                       kernels::im2col(x + n * d.in_channels * in_size, s, 0, d.in_channels, 0, P, img.data(), P);
                       for (int64_t j0 = 0; j0 < P; j0 += S) {
                         float* dst = pk + (n * P + j0) * K;  // strip (n * P + j0) / S
                         const float* src = img.data() + j0;
                         for (int64_t k = 0; k < K; ++k, dst += S, src += P)
                           for (int64_t i = 0; i < S; ++i) dst[i] = src[i];
                       }
                     }
                   });
    const kernels::PackedB packed = kernels::PackedB::wrap(K, N, pk);
    if (pw)
      kernels::sgemm_packed_ab((*pw)[0], packed, 1.0f, 0.0f, t.mutable_values<float>(), N, pool);
    else
      kernels::sgemm_packed(false, M, 1.0f, w, K, packed, 0.0f, t.mutable_values<float>(), N, pool);
  } else {
    Tensor col = new_tensor(DType::Float, {K, N});
    float* pc = col.mutable_values<float>();
    parallel_range(pool, d.batch, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(K * P, 1)),
                   [&](int64_t n0, int64_t n1) {
                     for (int64_t n = n0; n < n1; ++n)
                       kernels::im2col(x + n * d.in_channels * in_size, s, 0, d.in_channels, 0, P, pc + n * P, N);
                   });
    if (pw)
      kernels::sgemm_packed_a((*pw)[0], false, N, 1.0f, pc, N, 0.0f, t.mutable_values<float>(), N, pool);
    else
      kernels::sgemm(false, false, M, N, K, 1.0f, w, K, pc, N, 0.0f, t.mutable_values<float>(), N, pool);
  }
  parallel_range(pool, d.batch * M, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(P, 1)),
                 [&](int64_t p0, int64_t p1) {
                   for (int64_t p = p0; p < p1; ++p) {
                     const int64_t n = p / M, m = p % M;
                     const float* src = pt + m * N + n * P;
                     float* dst = y + p * P;
                     const float b = bias ? bias[m] : 0.0f;
                     for (int64_t j = 0; j < P; ++j) dst[j] = src[j] + b;
                   }
                 });
}

// ---- 2-D Conv as one GEMM on columns written in sgemm's packed layout ---------------------

// Most floats of one image's packed column matrix for conv_packed_columns (16 MiB).
constexpr int64_t kPackedColBudget = int64_t{1} << 22;

// Channels per depth block of conv_packed_columns: whole channels, at most a GEMM depth block.
int64_t channels_per_block(int64_t ksize) { return std::max<int64_t>(1, kernels::PackedB::kMaxDepthBlock / ksize); }

// Whether conv_packed_columns takes the convolution: 2-D, one group, a real window (a
// pointwise convolution multiplies X in place), one channel's rows within a depth block, and
// the packed columns within budget.
bool packed_columns_fit(const ConvDims& d, const kernels::WindowShape& s) {
  if (s.rank() != 2 || d.group != 1 || s.pointwise() || !kernels::StripIm2col::supported(s)) return false;
  const int64_t ksize = s.kernel_size();
  const int64_t strips = (s.out_size() + kernels::PackedB::kStrip - 1) / kernels::PackedB::kStrip;
  return ksize <= kernels::PackedB::kMaxDepthBlock &&
         d.in_channels * ksize * strips * kernels::PackedB::kStrip <= kPackedColBudget;
}

// Per image: Y[M, P] = W[M, K] * cols(X) + bias, where StripIm2col writes the columns straight
// into sgemm's packed strips (depth blocks of whole channels, PackedB::wrap_blocked), so the
// GEMM packs nothing when the weights are pre-packed (`pw`, with the same depth blocks) and
// writes Y in place. The threads split the column writing by (depth block, strip) and then
// the GEMM.
void conv_packed_columns(const float* x, const float* w, const PackedWeights* pw, const float* bias, const ConvDims& d,
                         const kernels::WindowShape& s, const kernels::StripIm2col& im, float* y, ThreadPool* pool) {
  constexpr int64_t S = kernels::PackedB::kStrip;
  const int64_t ksize = s.kernel_size(), C = d.in_channels, K = C * ksize, P = s.out_size(), M = d.out_channels;
  const int64_t kb = channels_per_block(ksize) * ksize, cpb = kb / ksize;
  const int64_t strips = im.strips(), blocks = (C + cpb - 1) / cpb;
  Tensor packed_t = new_tensor(DType::Float, {K * strips * S});
  float* pk = packed_t.mutable_values<float>();
  const kernels::PackedB B = kernels::PackedB::wrap_blocked(K, P, kb, pk);
  for (int64_t n = 0; n < d.batch; ++n) {
    const float* xn = x + n * C * s.in_size();
    parallel_range(pool, blocks * strips, std::max<int64_t>(1, kCopyGrain / (kb * S)), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1;) {
        const int64_t b = i / strips, t0 = i % strips, t1 = std::min(strips, t0 + (i1 - i));
        const int64_t c0 = b * cpb, c1 = std::min(C, c0 + cpb), kc = (c1 - c0) * ksize;
        im.run(xn, c0, c1, t0, t1, pk + c0 * ksize * strips * S + t0 * kc * S, kc);
        i += t1 - t0;
      }
    });
    float* yn = y + n * M * P;
    if (bias) init_rows(yn, M, P, P, bias);
    if (pw)
      kernels::sgemm_packed_ab((*pw)[0], B, 1.0f, bias ? 1.0f : 0.0f, yn, P, pool);
    else
      kernels::sgemm_packed(false, M, 1.0f, w, K, B, bias ? 1.0f : 0.0f, yn, P, pool);
  }
}

class ConvKernel : public Kernel {
 public:
  ConvKernel(const ir::Node& n, const PlanContext& pc) : attrs_(n), group_(n.attr_int("group", 1)) {
    pack_weights(n, pc);
  }

  void run(OpContext& ctx) override {
    const Tensor& x_in = ctx.in(0);
    const ConvDims d = conv_dims(x_in, ctx.in(1), group_, attrs_, false);
    const kernels::WindowShape s = forward_window(attrs_, d.spatial, d.kernel);
    const Tensor x = to_float_tensor(x_in);
    const Tensor w = to_float_tensor(ctx.in(1));
    Tensor b;
    const float* bias = bias_values(ctx, 2, d.out_channels, b);
    std::vector<int64_t> y_dims = {d.batch, d.out_channels};
    y_dims.insert(y_dims.end(), s.out.begin(), s.out.end());
    Tensor y = new_tensor(DType::Float, y_dims);
    const bool depthwise = d.in_channels == d.group && d.group > 1 && !s.pointwise();
    float* py = y.mutable_values<float>();
    const float lo = ctx.fused_clamp ? ctx.fused_lo : -std::numeric_limits<float>::infinity();
    const float hi = ctx.fused_clamp ? ctx.fused_hi : std::numeric_limits<float>::infinity();
    if (y.numel() == 0) {
    } else if (depthwise && d.out_channels == d.group && s.rank() == 2) {
      conv_depthwise_2d(x.values<float>(), w.values<float>(), bias, d, s, py, ctx.pool, lo, hi);
    } else if (strips_fit(s) && !depthwise) {
      conv_strips(x.values<float>(), w.values<float>(), map_panels(d, s, w), bias, *strip_im2col(s), d, s, py, ctx.pool,
                  lo, hi);
    } else if (packed_columns_fit(d, s) && (d.batch == 1 || !batched_gemm_fits(d, s)) &&
               (packed_.empty() || packed_[0].depth_block() == channels_per_block(s.kernel_size()) * s.kernel_size())) {
      // (A batch of small images is one GEMM in conv_gemm_batched, below.)
      conv_packed_columns(x.values<float>(), w.values<float>(), packed_.empty() ? nullptr : &packed_, bias, d, s,
                          *strip_im2col(s), py, ctx.pool);
      kernels::clamp_in_place(py, static_cast<int64_t>(y.numel()), lo, hi);
    } else if (depthwise) {
      conv_depthwise(x.values<float>(), w.values<float>(), bias, d, s, py, ctx.pool);
      kernels::clamp_in_place(py, static_cast<int64_t>(y.numel()), lo, hi);
    } else {
      const PackedWeights* pw = packed_.empty() ? nullptr : &packed_;
      (batched_gemm_fits(d, s) ? conv_gemm_batched : conv_gemm)(x.values<float>(), w.values<float>(), pw, bias, d, s,
                                                                py, ctx.pool);
      kernels::clamp_in_place(py, static_cast<int64_t>(y.numel()), lo, hi);
    }
    ctx.set_out(0, from_float_tensor(y, x_in.dtype));
  }

  bool fuses_clamp() const override { return true; }

 private:
  // The im2col tables of the last input geometry (making them walks every window: on a
  // 224x224 stem that costs as much as the convolution's copy work), shared by the runs
  // that have it; a run with another size replaces them.
  std::shared_ptr<const kernels::StripIm2col> strip_im2col(const kernels::WindowShape& s) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (!cached_ || cached_in_ != s.in || cached_kernel_ != s.kernel) {
      cached_ = std::make_shared<const kernels::StripIm2col>(s);
      cached_in_ = s.in;
      cached_kernel_ = s.kernel;
    }
    return cached_;
  }

  // The weights in map panels for conv_strips' conv_gemm_maps, or nullptr: a constant weight
  // of one group, where the output map has fewer padded positions in rows of 7 than in strips
  // of 16 (7x7: 49 against 64; 14x14: 196 against 208). Packed at the first such run (the map
  // size is known only then); the original's mapped pages are released, as plan-time packing
  // does.
  const float* map_panels(const ConvDims& d, const kernels::WindowShape& s, const Tensor& w) {
    const int64_t P = s.out_size(), R = kernels::kMapPositions, S = kernels::StripIm2col::kStrip;
    if (!maps_ok_ || d.group != 1 || (P + R - 1) / R * R >= (P + S - 1) / S * S) return nullptr;
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (map_panels_.empty()) {
      map_panels_ = kernels::pack_map_panels(w.values<float>(), d.out_channels, product(w.dims, 1));
      PlanContext::release_packed(w);
    }
    return map_panels_.data();
  }

  // A constant weight [M, C/group, k...] packed per group for the GEMM paths, once at plan
  // time (as MatMul packs its B): the convolution then packs only its columns. Not for
  // depthwise convolutions, nor for 2-D ones on AVX + FMA or AVX-512 (conv_strips reads W as
  // it is, or packs map panels on its first run).
  void pack_weights(const ir::Node& n, const PlanContext& pc) {
    const ir::Value* v = n.inputs.size() > 1 ? n.inputs[1] : nullptr;
    if (!v || !v->initializer || group_ < 1) return;
    const std::vector<int64_t>& dims = v->initializer->dims;
    if (dims.size() < 3 || dims[0] % group_ != 0 || (dims[1] == 1 && group_ > 1)) return;
    if (kernels::conv_isa() != kernels::ConvIsa::Portable && dims.size() == 4) {
      // Map panels on AVX-512 only: the AVX+FMA map kernel (6 positions x 16 maps) was faster on
      // hot data but made resnet18 1.06x slower in the model.
      maps_ok_ =
          kernels::conv_isa() == kernels::ConvIsa::Avx512 && group_ == 1 && pc.packable_weight(n, 1, 4) != nullptr;
      return;
    }
    const Tensor* w = pc.packable_weight(n, 1, dims.size());
    if (!w) return;
    const Tensor f = to_float_tensor(*w);
    const int64_t mg = dims[0] / group_, depth = product(dims, 1), ksize = product(dims, 2);
    // Depth blocks of whole channels, as conv_packed_columns writes its columns.
    const int64_t kb = ksize <= kernels::PackedB::kMaxDepthBlock ? channels_per_block(ksize) * ksize : 0;
    packed_.reserve(static_cast<size_t>(group_));
    for (int64_t g = 0; g < group_; ++g)
      packed_.emplace_back(false, mg, depth, f.values<float>() + g * mg * depth, depth, kb);
    PlanContext::release_packed(*w);
  }

  WindowAttrs attrs_;
  int64_t group_;
  PackedWeights packed_;
  bool maps_ok_ = false;  // map_panels may pack the weight
  std::vector<float> map_panels_;
  std::mutex cache_mu_;
  std::vector<int64_t> cached_in_, cached_kernel_;
  std::shared_ptr<const kernels::StripIm2col> cached_;
};

// ---- ConvTranspose -------------------------------------------------------------------------

// The geometry of a transposed convolution, described as the forward convolution it is the
// adjoint of: that convolution's input is Y (s.in) and its output is X (s.out).
kernels::WindowShape transposed_window(const WindowAttrs& a, const std::vector<int64_t>& output_padding_attr,
                                       const std::vector<int64_t>& output_shape_attr, const ConvDims& d) {
  const size_t rank = d.spatial.size();
  kernels::WindowShape s;
  s.out = d.spatial;
  s.kernel = d.kernel;
  s.strides = ones_or(a.strides, rank, "strides");
  s.dilations = ones_or(a.dilations, rank, "dilations");
  s.in.resize(rank);
  s.pad_begin.resize(rank);
  s.pad_end.resize(rank);
  const std::vector<int64_t> pads = pads_or_zeros(a, rank);
  std::vector<int64_t> output_padding = output_padding_attr.empty() ? std::vector<int64_t>(rank, 0) : output_padding_attr;
  if (output_padding.size() != rank) bad_input("output_padding has {} values, expected {}", output_padding.size(), rank);
  // output_shape may list the spatial dims only or the whole shape.
  std::vector<int64_t> output_shape = output_shape_attr;
  if (output_shape.size() == rank + 2) output_shape.erase(output_shape.begin(), output_shape.begin() + 2);
  if (!output_shape.empty() && output_shape.size() != rank)
    bad_input("output_shape has {} values, expected {}", output_shape_attr.size(), rank);

  const bool same = a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER";
  for (size_t i = 0; i < rank; ++i) {
    // Every input element spreads over `extent` outputs, `stride` apart from its neighbour's.
    const int64_t extent = (s.kernel[i] - 1) * s.dilations[i] + 1;
    const int64_t full = s.strides[i] * (s.out[i] - 1) + output_padding[i] + extent;
    if (!output_shape.empty() || same) {
      // The output size is given (or in * stride for SAME); the padding that takes is split
      // with the odd element at the end for SAME_UPPER, at the beginning otherwise. An
      // output larger than `full` (negative padding) gets the extra positions at the end.
      s.in[i] = output_shape.empty() ? s.out[i] * s.strides[i] : output_shape[i];
      const int64_t total = full - s.in[i];
      s.pad_begin[i] = total <= 0 ? 0 : a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      s.pad_end[i] = total - s.pad_begin[i];
    } else {
      const bool valid = a.auto_pad == "VALID";
      s.pad_begin[i] = valid ? 0 : pads[i];
      s.pad_end[i] = valid ? 0 : pads[rank + i];
      s.in[i] = full - s.pad_begin[i] - s.pad_end[i];
    }
    if (s.in[i] < 0) bad_input("the output size along spatial dim {} is negative ({})", i, s.in[i]);
  }
  return s;
}

// For each image n and group g, with W_g [C/group, (M/group) * kernel_size]:
//   Y[n, g's maps] = B + col2im(W_g^T * X[n, g's channels])
// Tiles of X's positions run one after another (their scatters overlap); (n, g) pairs are
// the parallel tasks.
void conv_transpose(const float* x, const float* w, const float* bias, const ConvDims& d,
                    const kernels::WindowShape& s, float* y, ThreadPool* pool) {
  const int64_t cg = d.in_channels / d.group, mg = d.out_channels / d.group;
  const int64_t rows = mg * s.kernel_size();
  const int64_t x_size = s.out_size(), y_size = s.in_size();
  const bool pointwise = s.pointwise();
  const int64_t tile = pointwise ? x_size : tile_cols(rows, x_size);
  run_tasks(pool, d.batch * d.group, [&](int64_t begin, int64_t end, ThreadPool* inner) {
    std::vector<float> col(pointwise ? 0 : rows * tile);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / d.group, g = t % d.group;
      const float* xg = x + (n * d.in_channels + g * cg) * x_size;
      const float* wg = w + g * cg * rows;
      float* yg = y + (n * d.out_channels + g * mg) * y_size;
      init_rows(yg, mg, y_size, y_size, bias ? bias + g * mg : nullptr);
      if (pointwise) {  // col2im is the identity: multiply straight into Y
        kernels::sgemm(true, false, mg, x_size, cg, 1.0f, wg, rows, xg, x_size, 1.0f, yg, y_size, inner);
        continue;
      }
      for (int64_t j0 = 0; j0 < x_size; j0 += tile) {
        const int64_t cols = std::min(tile, x_size - j0);
        kernels::sgemm(true, false, rows, cols, cg, 1.0f, wg, rows, xg + j0, x_size, 0.0f, col.data(), cols, inner);
        parallel_range(inner, mg, std::max<int64_t>(1, kCopyGrain / (s.kernel_size() * cols)),
                       [&](int64_t c0, int64_t c1) { kernels::col2im(col.data(), s, c0, c1, j0, j0 + cols, cols, yg); });
      }
    }
  });
}

class ConvTransposeKernel : public Kernel {
 public:
  explicit ConvTransposeKernel(const ir::Node& n)
      : attrs_(n),
        group_(n.attr_int("group", 1)),
        output_padding_(n.attr_ints("output_padding")),
        output_shape_(n.attr_ints("output_shape")) {}

  void run(OpContext& ctx) override {
    const Tensor& x_in = ctx.in(0);
    const ConvDims d = conv_dims(x_in, ctx.in(1), group_, attrs_, true);
    const kernels::WindowShape s = transposed_window(attrs_, output_padding_, output_shape_, d);
    const Tensor x = to_float_tensor(x_in);
    const Tensor w = to_float_tensor(ctx.in(1));
    Tensor b;
    const float* bias = bias_values(ctx, 2, d.out_channels, b);
    std::vector<int64_t> y_dims = {d.batch, d.out_channels};
    y_dims.insert(y_dims.end(), s.in.begin(), s.in.end());
    Tensor y = new_tensor(DType::Float, y_dims);
    conv_transpose(x.values<float>(), w.values<float>(), bias, d, s, y.mutable_values<float>(), ctx.pool);
    ctx.set_out(0, from_float_tensor(y, x_in.dtype));
  }

 private:
  WindowAttrs attrs_;
  int64_t group_;
  std::vector<int64_t> output_padding_, output_shape_;
};

}  // namespace

void register_conv_ops() {
  register_kernel("", "Conv", 1,
                  [](const ir::Node& n, const PlanContext& pc) { return std::make_unique<ConvKernel>(n, pc); });
  register_kernel("", "ConvTranspose", 1, node_kernel<ConvTransposeKernel>());
}

}  // namespace slmops::runtime::ops
