#include "runtime/kernels/conv.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/depthwise_impl.h"

namespace slmops::runtime::kernels {
namespace {

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t d : v) p *= d;
  return p;
}

// One run of output positions along the last spatial dim that share their leading
// coordinates, for one kernel offset. Position t of the run (t in [0, n)) is column j + t and
// reads input element base + i0 + t * stride of a channel plane; only t in [lo, hi) lies
// inside the input (lo == hi when the leading coordinates already fall in the padding).
struct Line {
  int64_t j, n;
  int64_t base, i0, stride;
  int64_t lo, hi;
};

// Calls visit(line) for the columns [j_begin, j_end) of kernel offset `k` (row-major index
// over the kernel dims).
template <typename Visit>
void for_each_line(const WindowShape& s, int64_t k, int64_t j_begin, int64_t j_end, Visit&& visit) {
  const size_t last = s.rank() - 1;
  // The kernel offset and the first output position as multi-indices (on the stack for the
  // usual ranks: this runs once per channel and kernel offset, thousands of times a Conv).
  constexpr size_t kStackRank = 8;
  int64_t stack[2 * kStackRank];
  std::vector<int64_t> heap;
  int64_t* koff = stack;
  if (s.rank() > kStackRank) {
    heap.resize(2 * s.rank());
    koff = heap.data();
  }
  int64_t* o = koff + std::max(s.rank(), kStackRank);
  int64_t rest_k = k, rest_j = j_begin;
  for (size_t d = s.rank(); d-- > 0;) {
    koff[d] = rest_k % s.kernel[d];
    rest_k /= s.kernel[d];
    o[d] = rest_j % s.out[d];
    rest_j /= s.out[d];
  }
  auto input_at = [&](size_t d) { return o[d] * s.strides[d] - s.pad_begin[d] + koff[d] * s.dilations[d]; };

  for (int64_t j = j_begin; j < j_end;) {
    Line line{j, std::min(s.out[last] - o[last], j_end - j), 0, input_at(last), s.strides[last], 0, 0};
    bool inside = true;
    for (size_t d = 0; d < last && inside; ++d) {
      const int64_t i = input_at(d);
      inside = i >= 0 && i < s.in[d];
      line.base = line.base * s.in[d] + i;
    }
    if (inside) {
      // t in [lo, hi) <=> 0 <= i0 + t * stride < in.
      const int64_t in = s.in[last];
      line.base *= in;
      line.lo = line.i0 >= 0 ? 0 : (-line.i0 + line.stride - 1) / line.stride;
      line.hi = line.i0 >= in ? 0 : (in - 1 - line.i0) / line.stride + 1;
      line.lo = std::min(line.lo, line.n);
      line.hi = std::clamp(line.hi, line.lo, line.n);
    }
    visit(line);
    // Next run: advance the output multi-index by the run length (to the next line).
    j += line.n;
    o[last] += line.n;
    for (size_t d = last; d > 0 && o[d] == s.out[d]; --d) {
      o[d] = 0;
      ++o[d - 1];
    }
  }
}

}  // namespace

int64_t WindowShape::in_size() const { return product(in); }
int64_t WindowShape::out_size() const { return product(out); }
int64_t WindowShape::kernel_size() const { return product(kernel); }

bool WindowShape::pointwise() const {
  for (size_t d = 0; d < rank(); ++d)
    if (kernel[d] != 1 || strides[d] != 1 || pad_begin[d] != 0 || in[d] != out[d]) return false;
  return true;
}

// im2col of whole 2-D planes (the usual case), without the per-line bookkeeping of
// for_each_line: for kernel offset (ky, kx), output (oy, ox) reads input
//   (oy * sh - ph + ky * dh,  ox * sw - pw + kx * dw),
// and the ox where that column is inside the input form one range [lo, hi) per offset.
static void im2col_2d_planes(const float* x, const WindowShape& s, int64_t c_begin, int64_t c_end, float* col,
                      int64_t ldcol) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1];
  const int64_t KH = s.kernel[0], KW = s.kernel[1];
  const int64_t sh = s.strides[0], sw = s.strides[1], dh = s.dilations[0], dw = s.dilations[1];
  const int64_t ph = s.pad_begin[0], pw = s.pad_begin[1];
  for (int64_t c = c_begin; c < c_end; ++c) {
    const float* src = x + c * H * W;
    for (int64_t ky = 0; ky < KH; ++ky)
      for (int64_t kx = 0; kx < KW; ++kx) {
        float* row = col + ((c * KH + ky) * KW + kx) * ldcol;
        const int64_t x0 = kx * dw - pw;  // input column of ox = 0
        // 0 <= x0 + ox * sw < W  <=>  lo <= ox < hi
        const int64_t lo = std::min(OW, x0 >= 0 ? int64_t{0} : (-x0 + sw - 1) / sw);
        const int64_t hi = std::clamp(x0 >= W ? int64_t{0} : (W - 1 - x0) / sw + 1, lo, OW);
        if (sh == 1 && sw == 1 && OW == W) {
          // Stride 1 and rows as wide as the input ("same" padding): output position j reads
          // input element j + delta, one shift for the whole plane. Copy the span from the
          // first to the last valid element at once, then zero what lies in the padding (the
          // columns outside [lo, hi), which the span filled from the neighbouring rows, and
          // the rows outside [oy_lo, oy_hi)).
          const int64_t y0 = ky * dh - ph;  // input row of oy = 0
          const int64_t oy_lo = std::clamp(-y0, int64_t{0}, OH), oy_hi = std::clamp(H - y0, oy_lo, OH);
          std::fill(row, row + oy_lo * OW, 0.0f);
          std::fill(row + oy_hi * OW, row + OH * OW, 0.0f);
          if (oy_lo == oy_hi || lo == hi) {
            std::fill(row + oy_lo * OW, row + oy_hi * OW, 0.0f);
            continue;
          }
          const int64_t first = oy_lo * OW + lo, end = (oy_hi - 1) * OW + hi, delta = y0 * W + x0;
          std::copy(src + first + delta, src + end + delta, row + first);
          if (lo > 0 || hi < OW)
            for (int64_t oy = oy_lo; oy < oy_hi; ++oy) {
              float* r = row + oy * OW;
              for (int64_t ox = 0; ox < lo; ++ox) r[ox] = 0.0f;
              for (int64_t ox = hi; ox < OW; ++ox) r[ox] = 0.0f;
            }
          continue;
        }
        for (int64_t oy = 0; oy < OH; ++oy) {
          float* dst = row + oy * OW;
          const int64_t iy = oy * sh - ph + ky * dh;
          if (iy < 0 || iy >= H) {
            for (int64_t ox = 0; ox < OW; ++ox) dst[ox] = 0.0f;
            continue;
          }
          const float* in = src + iy * W;
          for (int64_t ox = 0; ox < lo; ++ox) dst[ox] = 0.0f;
          if (sw == 1) {
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = in[x0 + ox];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = in[x0 + ox * sw];
          }
          for (int64_t ox = hi; ox < OW; ++ox) dst[ox] = 0.0f;
        }
      }
  }
}

void im2col(const float* x, const WindowShape& s, int64_t c_begin, int64_t c_end, int64_t j_begin, int64_t j_end,
            float* col, int64_t ldcol) {
  const int64_t ksize = s.kernel_size();
  const int64_t plane = s.in_size();
  if (s.rank() == 2 && j_begin == 0 && j_end == s.out_size()) return im2col_2d_planes(x, s, c_begin, c_end, col, ldcol);
  for (int64_t c = c_begin; c < c_end; ++c) {
    const float* src = x + c * plane;
    for (int64_t k = 0; k < ksize; ++k) {
      float* row = col + (c * ksize + k) * ldcol;
      for_each_line(s, k, j_begin, j_end, [&](const Line& l) {
        float* dst = row + (l.j - j_begin);
        std::fill(dst, dst + l.lo, 0.0f);
        if (l.stride == 1) {
          const float* first = src + l.base + l.i0 + l.lo;
          std::copy(first, first + (l.hi - l.lo), dst + l.lo);
        } else {
          for (int64_t t = l.lo; t < l.hi; ++t) dst[t] = src[l.base + l.i0 + t * l.stride];
        }
        std::fill(dst + l.hi, dst + l.n, 0.0f);
      });
    }
  }
}

bool Im2colStrips::supported(const WindowShape& s) {
  return s.rank() == 2 && s.strides[0] == 1 && s.strides[1] == 1 && s.out[1] == s.in[1] && s.out_size() > 0 &&
         s.out_size() % 16 == 0;
}

Im2colStrips::Im2colStrips(const WindowShape& s) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0];
  const int64_t KH = s.kernel[0], KW = s.kernel[1];
  ksize_ = KH * KW;
  plane_ = s.in_size();
  strips_ = OH * W / 16;
  delta_.resize(ksize_);
  mask_.assign(ksize_ * strips_, 0);
  for (int64_t ky = 0; ky < KH; ++ky)
    for (int64_t kx = 0; kx < KW; ++kx) {
      const int64_t k = ky * KW + kx, dy = ky * s.dilations[0] - s.pad_begin[0], dx = kx * s.dilations[1] - s.pad_begin[1];
      delta_[k] = dy * W + dx;
      for (int64_t j = 0; j < OH * W; ++j) {
        const int64_t iy = j / W + dy, ix = j % W + dx;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) mask_[(j / 16) * ksize_ + k] |= uint16_t(1u << (j % 16));
      }
    }
}

namespace {

void im2col_strips_portable(const float* x, const int64_t* delta, const uint16_t* mask, int64_t strips,
                            int64_t channels, int64_t ksize, int64_t plane, float* col, int64_t strip_rows) {
  for (int64_t t = 0; t < strips; ++t) {
    float* dst = col + t * strip_rows * 16;
    const uint16_t* masks = mask + t * ksize;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t k = 0; k < ksize; ++k, dst += 16) {
        const int64_t first = c * plane + t * 16 + delta[k];
        for (int i = 0; i < 16; ++i) dst[i] = (masks[k] >> i) & 1 ? x[first + i] : 0.0f;
      }
  }
}

__attribute__((target("avx512f"))) void im2col_strips_avx512(const float* x, const int64_t* delta,
                                                              const uint16_t* mask, int64_t strips, int64_t channels,
                                                              int64_t ksize, int64_t plane, float* col,
                                                              int64_t strip_rows) {
  for (int64_t t = 0; t < strips; ++t) {
    float* dst = col + t * strip_rows * 16;
    const uint16_t* masks = mask + t * ksize;
    for (int64_t c = 0; c < channels; ++c) {
      const float* src = detail::element_at(x, c * plane + t * 16);
      for (int64_t k = 0; k < ksize; ++k, dst += 16) {
        // Masked-off lanes are not read (no fault even past the plane's ends) and load as 0.
        _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(masks[k], detail::element_at(src, delta[k])));
      }
    }
  }
}

}  // namespace

void Im2colStrips::run(const float* x, int64_t channels, float* col, int64_t strip_rows, bool allow_avx512) const {
  if (strip_rows == 0) strip_rows = channels * ksize_;
  const bool avx512 = cpu().avx512f;
  // Plain pointers: through the members, every store to col would make the compiler reload them.
  const int64_t* delta = delta_.data();
  const uint16_t* mask = mask_.data();
  if (avx512 && allow_avx512) im2col_strips_avx512(x, delta, mask, strips_, channels, ksize_, plane_, col, strip_rows);
  else im2col_strips_portable(x, delta, mask, strips_, channels, ksize_, plane_, col, strip_rows);
}

namespace {
// y = min(max(v, lo), hi) where the bound is applied: NaN becomes lo (Relu's x > 0 ? x : 0).
inline float clamp_value(float v, float lo, float hi, bool use_lo, bool use_hi) {
  if (use_lo) v = v > lo ? v : lo;
  if (use_hi) v = v < hi ? v : hi;
  return v;
}
}  // namespace

ConvIsa conv_isa() {
  const CpuFeatures& f = cpu();
  return f.avx512f ? ConvIsa::Avx512 : f.fma ? ConvIsa::Fma : ConvIsa::Portable;
}

// ---- StripIm2col ---------------------------------------------------------------------------

bool StripIm2col::supported(const WindowShape& s) {
  if (s.rank() != 2 || s.out_size() <= 0) return false;
  // Offsets run from -(pad + ...) to in_size + extent: bounded by a few planes.
  const int64_t limit = std::numeric_limits<int32_t>::max() / 4;
  return s.in_size() < limit && s.out_size() < limit && s.kernel_size() < limit &&
         (s.kernel[0] * s.dilations[0] + s.pad_begin[0] + s.strides[0]) * s.in[1] < limit &&
         s.kernel[1] * s.dilations[1] + s.pad_begin[1] + s.strides[1] < limit;
}

StripIm2col::StripIm2col(const WindowShape& s) {
  const int64_t H = s.in[0], W = s.in[1], OW = s.out[1], P = s.out_size();
  const int64_t KH = s.kernel[0], KW = s.kernel[1];
  ksize_ = KH * KW;
  plane_ = s.in_size();
  strips_ = (P + kStrip - 1) / kStrip;
  delta_.resize(ksize_);
  for (int64_t ky = 0; ky < KH; ++ky)
    for (int64_t kx = 0; kx < KW; ++kx)
      delta_[ky * KW + kx] = static_cast<int32_t>(ky * s.dilations[0] * W + kx * s.dilations[1]);
  origin_.resize(strips_ * kStrip);
  shifted_.assign(strips_, 0);
  mask_.assign(strips_ * ksize_, 0);
  for (int64_t t = 0; t < strips_; ++t) {
    int32_t* org = origin_.data() + t * kStrip;
    bool step1 = true, step2 = true;  // windows 1 or 2 elements apart
    for (int64_t i = 0; i < kStrip; ++i) {
      const int64_t j = t * kStrip + i;
      if (j >= P) {  // past the plane: no lane reads
        org[i] = org[0] + static_cast<int32_t>(i);
        continue;
      }
      const int64_t y0 = j / OW * s.strides[0] - s.pad_begin[0], x0 = j % OW * s.strides[1] - s.pad_begin[1];
      org[i] = static_cast<int32_t>(y0 * W + x0);
      step1 = step1 && org[i] == org[0] + i;
      step2 = step2 && org[i] == org[0] + 2 * i;
      for (int64_t ky = 0; ky < KH; ++ky)
        for (int64_t kx = 0; kx < KW; ++kx) {
          const int64_t iy = y0 + ky * s.dilations[0], ix = x0 + kx * s.dilations[1];
          if (iy >= 0 && iy < H && ix >= 0 && ix < W) mask_[t * ksize_ + ky * KW + kx] |= uint16_t(1u << i);
        }
    }
    shifted_[t] = step1 ? 1 : step2 ? 2 : 0;
  }
}

void StripIm2col::run_at(ConvIsa isa, const float* x, int64_t c0, int64_t c1, int64_t t0, int64_t t1, float* col,
                         int64_t strip_rows) const {
  const detail::StripTables tables{ksize_, plane_, delta_.data(), origin_.data(), shifted_.data(), mask_.data()};
  if (isa == ConvIsa::Avx512 && cpu().avx512f)
    return detail::strip_im2col_avx512(tables, x, c0, c1, t0, t1, col, strip_rows);
  if (isa == ConvIsa::Fma && cpu().fma) return detail::strip_im2col_fma(tables, x, c0, c1, t0, t1, col, strip_rows);
  for (int64_t t = t0; t < t1; ++t) {
    float* dst = col + (t - t0) * strip_rows * kStrip;
    const int32_t* org = origin_.data() + t * kStrip;
    const uint16_t* masks = mask_.data() + t * ksize_;
    // Windows 1 or 2 elements apart: a row with every lane inside the input is a copy (or a
    // copy of every other element), which the compiler vectorizes; the others go lane by lane.
    const int64_t step = shifted_[t];
    for (int64_t c = c0; c < c1; ++c) {
      const float* plane = x + c * plane_;
      for (int64_t k = 0; k < ksize_; ++k, dst += kStrip) {
        if (step == 1 && masks[k] == 0xffff) {
          std::memcpy(dst, plane + (int64_t{org[0]} + delta_[k]), kStrip * sizeof(float));
        } else if (step == 2 && masks[k] == 0xffff) {
          const float* p = plane + (int64_t{org[0]} + delta_[k]);
          for (int64_t i = 0; i < kStrip; ++i) dst[i] = p[2 * i];
        } else {
          for (int64_t i = 0; i < kStrip; ++i) dst[i] = (masks[k] >> i) & 1 ? plane[int64_t{org[i]} + delta_[k]] : 0.0f;
        }
      }
    }
  }
}

// ---- GEMM on strips --------------------------------------------------------------------------

void conv_gemm_strips_at(ConvIsa isa, int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda, const float* B,
                         int64_t ldb, int64_t sstride, const float* bias, bool first, bool last, float lo, float hi,
                         float* C, int64_t ldc) {
  if (M <= 0 || width <= 0) return;
  if (isa == ConvIsa::Avx512 && cpu().avx512f)
    return detail::conv_gemm_strips_avx512(M, kc, width, A, lda, B, ldb, sstride, bias, first, last, lo, hi, C, ldc);
  if (isa == ConvIsa::Fma && cpu().fma)
    return detail::conv_gemm_strips_fma(M, kc, width, A, lda, B, ldb, sstride, bias, first, last, lo, hi, C, ldc);
  const bool use_lo = last && lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = last && hi != std::numeric_limits<float>::infinity();
  constexpr int64_t S = StripIm2col::kStrip;
  for (int64_t j0 = 0; j0 < width; j0 += S) {
    const float* strip = B + (j0 / S) * sstride;
    const int64_t n = std::min(S, width - j0);
    for (int64_t m = 0; m < M; ++m) {
      float acc[S];
      for (int64_t i = 0; i < S; ++i) acc[i] = first || i >= n ? 0.0f : C[m * ldc + j0 + i];
      const float* a = A + m * lda;
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t i = 0; i < n; ++i) acc[i] += a[k] * strip[k * ldb + i];
      if (first && bias)
        for (int64_t i = 0; i < S; ++i) acc[i] += bias[m];
      for (int64_t i = 0; i < n; ++i) C[m * ldc + j0 + i] = clamp_value(acc[i], lo, hi, use_lo, use_hi);
    }
  }
}

void conv_gemm_strips(int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda, const float* B, int64_t ldb,
                      int64_t sstride, const float* bias, bool first, bool last, float lo, float hi, float* C,
                      int64_t ldc) {
  conv_gemm_strips_at(conv_isa(), M, kc, width, A, lda, B, ldb, sstride, bias, first, last, lo, hi, C, ldc);
}

std::vector<float> pack_map_panels(const float* w, int64_t M, int64_t K) {
  const int64_t panels = (M + kMapPanel - 1) / kMapPanel;
  std::vector<float> out(static_cast<size_t>(panels * K * kMapPanel), 0.0f);
  for (int64_t m = 0; m < M; ++m) {
    float* dst = out.data() + (m / kMapPanel) * K * kMapPanel + m % kMapPanel;
    const float* src = w + m * K;
    for (int64_t k = 0; k < K; ++k) dst[k * kMapPanel] = src[k];
  }
  return out;
}

void conv_gemm_maps_at(ConvIsa isa, int64_t panels, int64_t kc, int64_t width, const float* wt, int64_t wt_pstride,
                       const float* B, int64_t ldb, int64_t sstride, bool first, float* ct, int64_t ct_pstride) {
  if (panels <= 0 || width <= 0) return;
  if (isa == ConvIsa::Avx512 && cpu().avx512f)
    return detail::conv_gemm_maps_avx512(panels, kc, width, wt, wt_pstride, B, ldb, sstride, first, ct, ct_pstride);
  constexpr int64_t S = StripIm2col::kStrip;
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t j = 0; j < width; ++j) {
      const float* b = B + (j / S) * sstride + j % S;
      float* c = ct + p * ct_pstride + j * kMapPanel;
      float acc[kMapPanel];
      for (int64_t i = 0; i < kMapPanel; ++i) acc[i] = first ? 0.0f : c[i];
      for (int64_t k = 0; k < kc; ++k) {
        const float bk = b[k * ldb];
        const float* w = wt + p * wt_pstride + k * kMapPanel;
        for (int64_t i = 0; i < kMapPanel; ++i) acc[i] += w[i] * bk;
      }
      for (int64_t i = 0; i < kMapPanel; ++i) c[i] = acc[i];
    }
}

void maps_to_rows_at(ConvIsa isa, const float* ct, int64_t width, int64_t rows, const float* bias, float lo, float hi,
                     float* y, int64_t ldy) {
  if (width <= 0 || rows <= 0) return;
  if (isa == ConvIsa::Avx512 && cpu().avx512f)
    return detail::maps_to_rows_avx512(ct, width, rows, bias, lo, hi, y, ldy);
  const bool use_lo = lo != -std::numeric_limits<float>::infinity(),
             use_hi = hi != std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < rows; ++i) {
    const float* src = ct + (i / kMapPanel) * width * kMapPanel + i % kMapPanel;
    const float b = bias ? bias[i] : 0.0f;
    float* dst = y + i * ldy;
    for (int64_t j = 0; j < width; ++j) {
      float v = src[j * kMapPanel] + b;
      if (use_lo) v = v > lo ? v : lo;
      if (use_hi) v = v < hi ? v : hi;
      dst[j] = v;
    }
  }
}

void maps_to_rows(const float* ct, int64_t width, int64_t rows, const float* bias, float lo, float hi, float* y,
                  int64_t ldy) {
  maps_to_rows_at(conv_isa(), ct, width, rows, bias, lo, hi, y, ldy);
}

void conv_gemm_maps(int64_t panels, int64_t kc, int64_t width, const float* wt, int64_t wt_pstride, const float* B,
                    int64_t ldb, int64_t sstride, bool first, float* ct, int64_t ct_pstride) {
  conv_gemm_maps_at(conv_isa(), panels, kc, width, wt, wt_pstride, B, ldb, sstride, first, ct, ct_pstride);
}

// ---- depthwise ------------------------------------------------------------------------------

bool depthwise_vectorized(const WindowShape& s) {
  return s.rank() == 2 && (s.strides[1] == 1 || s.strides[1] == 2) && s.kernel[1] <= 8 && s.out_size() > 0;
}

namespace {

// One plane of depthwise_conv2d in plain loops (any 2-D window).
void depthwise_plane_portable(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                              float* y) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1], KH = s.kernel[0], KW = s.kernel[1];
  const bool use_lo = lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = hi != std::numeric_limits<float>::infinity();
  for (int64_t oy = 0; oy < OH; ++oy) {
    float* out = y + oy * OW;
    std::fill(out, out + OW, bias);
    for (int64_t ky = 0; ky < KH; ++ky) {
      const int64_t iy = oy * s.strides[0] - s.pad_begin[0] + ky * s.dilations[0];
      if (iy < 0 || iy >= H) continue;
      const float* row = x + iy * W;
      for (int64_t kx = 0; kx < KW; ++kx) {
        const float wk = w[ky * KW + kx];
        const int64_t x0 = kx * s.dilations[1] - s.pad_begin[1], sw = s.strides[1];
        // 0 <= x0 + ox * sw < W  <=>  lo_x <= ox < hi_x
        const int64_t lo_x = std::min(OW, x0 >= 0 ? int64_t{0} : (-x0 + sw - 1) / sw);
        const int64_t hi_x = std::clamp(x0 >= W ? int64_t{0} : (W - 1 - x0) / sw + 1, lo_x, OW);
        for (int64_t ox = lo_x; ox < hi_x; ++ox) out[ox] += wk * row[x0 + ox * sw];
      }
    }
    if (use_lo || use_hi)
      for (int64_t ox = 0; ox < OW; ++ox) out[ox] = clamp_value(out[ox], lo, hi, use_lo, use_hi);
  }
}

}  // namespace

void depthwise_conv2d_at(ConvIsa isa, const float* x, const WindowShape& s, const float* w, const float* bias,
                         int64_t c0, int64_t c1, float lo, float hi, float* y) {
  const int64_t in_size = s.in_size(), out_size = s.out_size(), ksize = s.kernel_size();
  const bool avx512 = isa == ConvIsa::Avx512 && cpu().avx512f && depthwise_vectorized(s);
  const bool fma = isa == ConvIsa::Fma && cpu().fma && depthwise3x3_rows_fit(s);
  const bool rows = !avx512 && !fma && depthwise3x3_rows_fit(s);
  for (int64_t c = c0; c < c1; ++c) {
    const float b = bias ? bias[c] : 0.0f;
    const float* xc = x + c * in_size;
    float* yc = y + c * out_size;
    if (avx512)
      detail::depthwise_plane_avx512(xc, s, w + c * ksize, b, lo, hi, yc);
    else if (fma)
      detail::depthwise3x3_plane_fma(xc, s, w + c * ksize, b, lo, hi, yc);
    else if (rows)
      depthwise3x3_plane_rows(xc, s, w + c * ksize, b, lo, hi, yc);
    else
      depthwise_plane_portable(xc, s, w + c * ksize, b, lo, hi, yc);
  }
}

void depthwise_conv2d(const float* x, const WindowShape& s, const float* w, const float* bias, int64_t c0, int64_t c1,
                      float lo, float hi, float* y) {
  depthwise_conv2d_at(conv_isa(), x, s, w, bias, c0, c1, lo, hi, y);
}

void clamp_in_place(float* y, int64_t n, float lo, float hi) {
  const bool use_lo = lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = hi != std::numeric_limits<float>::infinity();
  if (!use_lo && !use_hi) return;
  for (int64_t i = 0; i < n; ++i) y[i] = clamp_value(y[i], lo, hi, use_lo, use_hi);
}

void col2im(const float* col, const WindowShape& s, int64_t c_begin, int64_t c_end, int64_t j_begin, int64_t j_end,
            int64_t ldcol, float* y) {
  const int64_t ksize = s.kernel_size();
  const int64_t plane = s.in_size();
  for (int64_t c = c_begin; c < c_end; ++c) {
    float* dst = y + c * plane;
    for (int64_t k = 0; k < ksize; ++k) {
      const float* row = col + (c * ksize + k) * ldcol;
      for_each_line(s, k, j_begin, j_end, [&](const Line& l) {
        const float* src = row + (l.j - j_begin);
        for (int64_t t = l.lo; t < l.hi; ++t) dst[l.base + l.i0 + t * l.stride] += src[t];
      });
    }
  }
}

void depthwise_accumulate(const float* x, const WindowShape& s, const float* w, float* y) {
  const int64_t ksize = s.kernel_size();
  for (int64_t k = 0; k < ksize; ++k) {
    const float wk = w[k];
    for_each_line(s, k, 0, s.out_size(), [&](const Line& l) {
      if (l.lo >= l.hi) return;
      const float* src = x + l.base + l.i0 + l.lo * l.stride;
      float* dst = y + l.j + l.lo;
      const int64_t n = l.hi - l.lo;
      if (l.stride == 1) {
        for (int64_t t = 0; t < n; ++t) dst[t] += wk * src[t];
      } else {
        for (int64_t t = 0; t < n; ++t) dst[t] += wk * src[t * l.stride];
      }
    });
  }
}

}  // namespace slmops::runtime::kernels
