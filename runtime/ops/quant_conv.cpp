// Integer convolutions: ConvInteger (int32 output) and QLinearConv (requantized output), any
// number of spatial dimensions, groups, strides, dilations, explicit pads and auto_pad. Each
// image and group is an im2col (padding with the input zero point, so padded taps contribute
// nothing) followed by the integer GEMM W[M/g, C/g * k] x col[C/g * k, out pixels] with the
// weight zero points per output channel.
#include <algorithm>
#include <cstring>

#include "runtime/kernels/qdq.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/ops/quant_common.h"

namespace slmops::runtime::ops::quant {
namespace {

struct ConvGeom {
  int64_t batch = 1, C = 1, M = 1, group = 1;
  std::vector<int64_t> in, k, out, stride, dil, pad_begin;
  int64_t in_size = 1, out_size = 1, k_size = 1;
  std::vector<int64_t> out_dims;
};

ConvGeom conv_geometry(const ir::Node& n, const char* op, const std::vector<int64_t>& x, const std::vector<int64_t>& w) {
  if (x.size() < 3 || w.size() != x.size()) bad_input("{}: X must be [N, C, ...] and W [M, C/group, ...] of the same rank", op);
  ConvGeom g;
  const size_t r = x.size() - 2;
  g.batch = x[0];
  g.C = x[1];
  g.M = w[0];
  g.group = n.attr_int("group", 1);
  if (g.group <= 0 || g.C % g.group != 0 || g.M % g.group != 0 || w[1] != g.C / g.group)
    bad_input("{}: channels {} / weight {} do not match group {}", op, g.C, w[1], g.group);
  g.in.assign(x.begin() + 2, x.end());
  g.k.assign(w.begin() + 2, w.end());
  if (auto ks = n.attr_ints("kernel_shape"); !ks.empty() && ks != g.k) bad_input("{}: kernel_shape differs from W", op);
  g.stride = n.attr_ints("strides");
  if (g.stride.empty()) g.stride.assign(r, 1);
  g.dil = n.attr_ints("dilations");
  if (g.dil.empty()) g.dil.assign(r, 1);
  std::vector<int64_t> pads = n.attr_ints("pads");
  if (pads.empty()) pads.assign(2 * r, 0);
  if (g.stride.size() != r || g.dil.size() != r || pads.size() != 2 * r) bad_input("{}: attribute ranks differ", op);
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  g.out.resize(r);
  g.pad_begin.resize(r);
  for (size_t d = 0; d < r; ++d) {
    const int64_t ext = (g.k[d] - 1) * g.dil[d] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      g.out[d] = (g.in[d] + g.stride[d] - 1) / g.stride[d];
      const int64_t total = std::max<int64_t>(0, (g.out[d] - 1) * g.stride[d] + ext - g.in[d]);
      g.pad_begin[d] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    } else if (auto_pad == "VALID") {
      g.out[d] = (g.in[d] - ext) / g.stride[d] + 1;
      g.pad_begin[d] = 0;
    } else {
      g.out[d] = (g.in[d] + pads[d] + pads[d + r] - ext) / g.stride[d] + 1;
      g.pad_begin[d] = pads[d];
    }
    if (g.out[d] < 0) g.out[d] = 0;
    g.in_size *= g.in[d];
    g.out_size *= g.out[d];
    g.k_size *= g.k[d];
  }
  g.out_dims = {g.batch, g.M};
  g.out_dims.insert(g.out_dims.end(), g.out.begin(), g.out.end());
  return g;
}

// col[(c * k_size + kk) * ld + p] for the Cg channels starting at x (one image, one group);
// ld >= P (a wider row holds several images side by side).
void im2col(const ConvGeom& g, const uint8_t* x, int64_t channels, uint8_t pad, uint8_t* col, int64_t ld) {
  const size_t r = g.in.size();
  if (r == 2) {
    // 2-D: per output row, the valid span of columns is one range (a copy when the stride is
    // 1), padding on either side; rows outside the input are all padding.
    const int64_t H = g.in[0], Wd = g.in[1], OH = g.out[0], OW = g.out[1];
    const int64_t sh = g.stride[0], sw = g.stride[1], dh = g.dil[0], dw = g.dil[1];
    const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1], KH = g.k[0], KW = g.k[1];
    for (int64_t c = 0; c < channels; ++c) {
      const uint8_t* xc = x + c * H * Wd;
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          uint8_t* dst = col + ((c * KH + kh) * KW + kw) * ld;
          const int64_t off = kw * dw - pw;  // iw = ow * sw + off
          // Valid ow: 0 <= ow * sw + off < Wd.
          const int64_t lo = std::clamp<int64_t>(off >= 0 ? 0 : (-off + sw - 1) / sw, 0, OW);
          const int64_t hi = std::clamp<int64_t>(Wd - off > 0 ? (Wd - off + sw - 1) / sw : 0, lo, OW);
          for (int64_t oh = 0; oh < OH; ++oh, dst += OW) {
            const int64_t ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) {
              std::fill_n(dst, OW, pad);
              continue;
            }
            const uint8_t* xr = xc + ih * Wd;
            std::fill_n(dst, lo, pad);
            if (sw == 1) std::copy_n(xr + lo + off, hi - lo, dst + lo);
            else
              for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = xr[ow * sw + off];
            std::fill_n(dst + hi, OW - hi, pad);
          }
        }
    }
    return;
  }
  const int64_t P = g.out_size;
  std::vector<int64_t> kidx(r), o(r);
  for (int64_t c = 0; c < channels; ++c) {
    const uint8_t* xc = x + c * g.in_size;
    for (int64_t kk = 0; kk < g.k_size; ++kk) {
      for (int64_t t = kk, d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
        kidx[d] = t % g.k[d];
        t /= g.k[d];
      }
      uint8_t* dst = col + (c * g.k_size + kk) * ld;
      std::fill(o.begin(), o.end(), 0);
      const int64_t inner = g.out[r - 1];
      for (int64_t p = 0; p < P; p += inner) {
        // Offset of the row in x and whether the outer coordinates are inside.
        bool inside = true;
        int64_t off = 0;
        for (size_t d = 0; d + 1 < r; ++d) {
          const int64_t i = o[d] * g.stride[d] - g.pad_begin[d] + kidx[d] * g.dil[d];
          if (i < 0 || i >= g.in[d]) inside = false;
          off = off * g.in[d] + i;
        }
        const size_t d = r - 1;
        for (int64_t j = 0; j < inner; ++j) {
          const int64_t i = j * g.stride[d] - g.pad_begin[d] + kidx[d] * g.dil[d];
          dst[p + j] = inside && i >= 0 && i < g.in[d] ? xc[off * g.in[d] + i] : pad;
        }
        for (int dd = static_cast<int>(r) - 2; dd >= 0; --dd) {
          if (++o[dd] < g.out[dd]) break;
          o[dd] = 0;
        }
      }
    }
  }
}

// The int32 convolution (without bias) into acc [batch, M, P].
void conv_integer(OpContext& ctx, const ConvGeom& g, const Tensor& X, const Tensor& W, int32_t x_zp,
                  const std::vector<int32_t>& w_zp, int32_t* acc) {
  const bool xs = X.dtype == DType::Int8, ws = W.dtype == DType::Int8;
  const int64_t cg = g.C / g.group, mg = g.M / g.group, kdim = cg * g.k_size, P = g.out_size;
  const uint8_t* x = X.data.data();
  const uint8_t* w = W.data.data();
  const bool per_channel = w_zp.size() > 1;
  if (per_channel && static_cast<int64_t>(w_zp.size()) != g.M)
    bad_input("weight zero point has {} values for {} output channels", w_zp.size(), g.M);
  kernels::QZeroPoints zb{&x_zp, false};
  if (g.group == 1 && g.batch > 1 && kdim * P * g.batch <= (int64_t{8} << 20)) {
    // All images in one GEMM, N = batch * P: one packing of W's rows and one call instead of
    // batch small products (the CNN fixture: 32 products of 32 x 144 x 64). The result is
    // [M, batch * P]; acc wants [batch, M, P].
    const int64_t NP = g.batch * P;
    Tensor colt = new_tensor(DType::UInt8, {kdim, NP});
    Tensor tmpt = new_tensor(DType::Int32, {g.M, NP});
    uint8_t* cb = colt.mutable_values<uint8_t>();
    int32_t* tmp = tmpt.mutable_values<int32_t>();
    for (int64_t b = 0; b < g.batch; ++b) im2col(g, x + b * g.C * g.in_size, g.C, static_cast<uint8_t>(x_zp), cb + b * P, NP);
    kernels::QZeroPoints za;
    if (!w_zp.empty()) za = {w_zp.data(), per_channel};
    kernels::qgemm(g.M, NP, kdim, w, kdim, ws, za, cb, NP, xs, zb, tmp, NP, ctx.pool);
    for (int64_t b = 0; b < g.batch; ++b)
      for (int64_t m = 0; m < g.M; ++m) std::copy_n(tmp + m * NP + b * P, P, acc + (b * g.M + m) * P);
    return;
  }
  std::vector<uint8_t> col(static_cast<size_t>(kdim * P));
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t gi = 0; gi < g.group; ++gi) {
      const uint8_t* xg = x + (b * g.C + gi * cg) * g.in_size;
      im2col(g, xg, cg, static_cast<uint8_t>(x_zp), col.data(), P);
      kernels::QZeroPoints za;
      if (!w_zp.empty()) za = {w_zp.data() + (per_channel ? gi * mg : 0), per_channel};
      kernels::qgemm(mg, P, kdim, w + gi * mg * kdim, kdim, ws, za, col.data(), P, xs, zb,
                     acc + (b * g.M + gi * mg) * P, P, ctx.pool);
    }
}

bool int8ish(DType t) { return t == DType::UInt8 || t == DType::Int8; }

// ---- Channels-last integer convolution (2-D, one group) -----------------------------------
//
// ONNX Runtime's QLinearConv orientation: the image's pixels are the rows of A (uint8, the
// operand vpdpbusd takes unsigned) and the weight is a B packed once at plan time with its
// column sums, so a run packs nothing per call and the only zero-point correction is the
// input's (x_zp times the precomputed column sums). The NCHW way (weights as A, the im2col
// matrix packed as B on every call, weight row sums and sign shifts per call) spent most of
// an int8 ResNet-18 run outside the multiply: the packing, its memsets and the sums were more
// than the dot products.
//
//   x [C, H, W] --transpose--> [H, W, C] --im2col rows--> A [P, KH * KW * C] (k: kh, kw, c)
//   acc [P, M] = A x W'[KH * KW * C, M]; each finished block requantized per channel and
//   written transposed into y [M, P].

// src [C, HW] -> dst [HW, C], blocks of pixels in parallel.
void to_channels_last(const uint8_t* src, int64_t C, int64_t HW, uint8_t* dst, ThreadPool* pool) {
  constexpr int64_t kBlock = 64;
  pool->parallel_for((HW + kBlock - 1) / kBlock, std::max<int64_t>(1, 8192 / std::max<int64_t>(C * kBlock, 1)),
                     [&](int64_t b, int64_t e) {
                       const int64_t p0 = b * kBlock, p1 = std::min(HW, e * kBlock);
                       kernels::transpose_u8(src + p0, C, p1 - p0, HW, dst + p0 * C, C);
                     });
}

// n bytes without a libc call: the taps of a 3-channel stem are runs of 3 to 21 bytes, and
// 87808 memcpy calls per ResNet-18 stem cost more than their bytes.
inline void copy_bytes(uint8_t* dst, const uint8_t* src, int64_t n) {
  for (; n >= 16; n -= 16, dst += 16, src += 16) __builtin_memcpy(dst, src, 16);
  if (n & 8) __builtin_memcpy(dst, src, 8), dst += 8, src += 8;
  if (n & 4) __builtin_memcpy(dst, src, 4), dst += 4, src += 4;
  if (n & 2) __builtin_memcpy(dst, src, 2), dst += 2, src += 2;
  if (n & 1) *dst = *src;
}

// Rows of the channels-last im2col matrix A [P, KH * KW * C]: row p = (oh, ow) holds, for each
// tap (kh, kw), the C channels of input pixel (oh * sh - ph + kh * dh, ow * sw - pw + kw * dw),
// or `pad` (the input zero point, so padded taps contribute nothing) outside the image. fill()
// writes elements [k0, k0 + n) of a row straight into the integer GEMM's A tile (QRowFill) rather
// than a [P, K] matrix that the GEMM would copy again: taps in runs of C bytes (the first and
// last possibly partial), consecutive in-image taps (dilation 1) merged into one copy.
struct ChannelsLastIm2col {
  int64_t H, Wd, C, KH, KW, dh, dw;
  std::vector<int32_t> ih0, iw0;  // per output pixel: its window's top-left input position
  std::vector<int32_t> tap_kh, tap_kw;

  explicit ChannelsLastIm2col(const ConvGeom& g)
      : H(g.in[0]), Wd(g.in[1]), C(g.C), KH(g.k[0]), KW(g.k[1]), dh(g.dil[0]), dw(g.dil[1]) {
    const int64_t OH = g.out[0], OW = g.out[1];
    ih0.resize(static_cast<size_t>(OH * OW));
    iw0.resize(ih0.size());
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        ih0[oh * OW + ow] = static_cast<int32_t>(oh * g.stride[0] - g.pad_begin[0]);
        iw0[oh * OW + ow] = static_cast<int32_t>(ow * g.stride[1] - g.pad_begin[1]);
      }
    for (int64_t t = 0; t < g.k[0] * KW; ++t) {
      tap_kh.push_back(static_cast<int32_t>(t / KW));
      tap_kw.push_back(static_cast<int32_t>(t % KW));
    }
  }

  void fill(const uint8_t* x, uint8_t pad, int64_t p, int64_t k0, int64_t n, uint8_t* dst) const {
    const int64_t i0 = ih0[p], j0 = iw0[p];
    if (dw == 1 && i0 >= 0 && i0 + (KH - 1) * dh < H && j0 >= 0 && j0 + KW <= Wd) {
      // A window inside the image: each kernel row's taps are KW * C consecutive bytes of the
      // input (a stem's 7 taps of 3 channels: one 21-byte copy, not seven 3-byte ones).
      const int64_t run = KW * C, end = k0 + n;
      for (int64_t kh = k0 / run; kh < KH && kh * run < end; ++kh) {
        const int64_t a = std::max(k0, kh * run), b = std::min(end, (kh + 1) * run);
        copy_bytes(dst + (a - k0), x + ((i0 + kh * dh) * Wd + j0) * C + (a - kh * run), b - a);
      }
      return;
    }
    // The tap (kh, kw) and channel c of element k, advanced with k: one division per call.
    const int64_t t = k0 / C;
    int64_t c = k0 - t * C, kh = tap_kh[t], kw = tap_kw[t];
    for (int64_t k = k0, end = k0 + n; k < end;) {
      const int64_t ih = i0 + kh * dh, iw = j0 + kw * dw;
      int64_t len = std::min(C - c, end - k);
      if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) {
        std::memset(dst, pad, static_cast<size_t>(len));
      } else {
        if (c == 0 && dw == 1) {  // whole taps to the row's end or the image's right edge
          const int64_t taps = std::min(KW - kw, Wd - iw);
          len = std::min(taps * C, end - k);
        }
        copy_bytes(dst, x + (ih * Wd + iw) * C + c, len);
      }
      dst += len;
      k += len;
      c += len;  // past whole taps: carry them into kw, and whole kernel rows into kh
      if (c >= C) {
        kw += c / C;
        c %= C;
        kh += kw / KW;
        kw %= KW;
      }
    }
  }
};

// The weight [M, C, KH, KW] as the B of the channels-last product, packed: W'[k, m] with k
// ordered (kh, kw, c).
std::unique_ptr<kernels::QPackedB> pack_channels_last_weight(const Tensor& w) {
  const int64_t M = w.dims[0], C = w.dims[1], KH = w.dims[2], KW = w.dims[3], K = C * KH * KW;
  std::vector<uint8_t> wr(static_cast<size_t>(M * K));
  const uint8_t* src = w.data.data();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < KH * KW; ++t) wr[m * K + t * C + c] = src[(m * C + c) * KH * KW + t];
  return std::make_unique<kernels::QPackedB>(K, M, wr.data(), K, w.dtype == DType::Int8, /*trans_b=*/true);
}

void conv_integer_op(const ir::Node& n, OpContext& ctx) {
  const Tensor& X = ctx.in(0);
  const Tensor& W = ctx.in(1);
  if (!int8ish(X.dtype) || !int8ish(W.dtype)) bad_input("ConvInteger supports uint8/int8 inputs");
  const ConvGeom g = conv_geometry(n, "ConvInteger", X.dims, W.dims);
  const int32_t x_zp = ctx.has_input(2) ? int_values(ctx.in(2))[0] : 0;
  const std::vector<int32_t> w_zp = ctx.has_input(3) ? int_values(ctx.in(3)) : std::vector<int32_t>{};
  Tensor& y = ctx.set_out(0, new_tensor(DType::Int32, g.out_dims));
  conv_integer(ctx, g, X, W, x_zp, w_zp, y.mutable_values<int32_t>());
}

void qlinear_conv_op(const ir::Node& n, OpContext& ctx) {
  const Tensor& X = ctx.in(0);
  const Tensor& W = ctx.in(3);
  if (!int8ish(X.dtype) || !int8ish(W.dtype)) bad_input("QLinearConv supports uint8/int8 inputs");
  const ConvGeom g = conv_geometry(n, "QLinearConv", X.dims, W.dims);
  const float x_scale = float_values(ctx.in(1))[0];
  const int32_t x_zp = int_values(ctx.in(2))[0];
  const auto w_scale = float_values(ctx.in(4));
  const std::vector<int32_t> w_zp = int_values(ctx.in(5));
  const float y_scale = float_values(ctx.in(6))[0];
  const Tensor& yzp_t = ctx.in(7);
  if (!int8ish(yzp_t.dtype)) unsupported_type(yzp_t.dtype, "QLinearConv output");
  const int32_t y_zp = int_values(yzp_t)[0];
  if (w_scale.size() != 1 && static_cast<int64_t>(w_scale.size()) != g.M)
    bad_input("QLinearConv: w_scale has {} values for {} output channels", w_scale.size(), g.M);
  std::vector<float> scale(w_scale.size());
  for (size_t i = 0; i < w_scale.size(); ++i) scale[i] = x_scale * w_scale[i] / y_scale;
  std::vector<int32_t> bias;
  if (ctx.has_input(8)) bias = int_values(ctx.in(8));
  const int64_t P = g.out_size;
  std::vector<int32_t> acc(static_cast<size_t>(g.batch * g.M * P));
  conv_integer(ctx, g, X, W, x_zp, w_zp, acc.data());
  Tensor& y = ctx.set_out(0, new_tensor(yzp_t.dtype, g.out_dims));
  uint8_t* out = y.mutable_values<uint8_t>();
  const QRange r = qrange(yzp_t.dtype);
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t m = 0; m < g.M; ++m) {
      const float s = scale[scale.size() == 1 ? 0 : m];
      const uint32_t bm = bias.empty() ? 0 : static_cast<uint32_t>(bias[m]);
      const int64_t base = (b * g.M + m) * P;
      for (int64_t p = 0; p < P; ++p) {
        const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(acc[base + p]) + bm);
        out[base + p] = static_cast<uint8_t>(requantize_value(v, s, y_zp, r));
      }
    }
}

// DequantizeLinear(x) -> Conv(., DequantizeLinear(W), DequantizeLinear(int32 bias)) ->
// QuantizeLinear, as ONNX Runtime makes it QLinearConv: the integer convolution, the bias
// added in int32, requantized per output channel with x_scale * w_scale[m] / y_scale.
struct QdqConvKernel : Kernel {
  const ir::Node* node = nullptr;
  int32_t x_zp = 0, y_zp = 0;
  DType x_type = DType::UInt8, w_type = DType::Int8, y_type = DType::UInt8;
  std::vector<int32_t> w_zp;  // 1 or M
  std::vector<float> scale;   // 1 or M: x_scale * w_scale[m] / y_scale
  std::vector<int32_t> bias;  // M values or empty
  std::vector<float> offset;  // a float bias: M values of bias / y_scale, or empty
  // The channels-last path (2-D, one group, constant weight): the packed weight and the
  // requantization parameters expanded to one per output channel.
  std::unique_ptr<kernels::QPackedB> packed;
  const Tensor* packed_from = nullptr;
  std::vector<int32_t> bias_m;
  std::vector<float> scale_m, offset_m;
  bool folded_zp = false;  // bias_m holds the input zero point's correction

  void prepare_channels_last(const Tensor& w) {
    const int64_t M = w.dims[0];
    packed = pack_channels_last_weight(w);
    packed_from = &w;
    bias_m = bias.empty() ? std::vector<int32_t>(static_cast<size_t>(M), 0) : bias;
    offset_m = offset.empty() ? std::vector<float>(static_cast<size_t>(M), 0.f) : offset;
    scale_m.resize(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) scale_m[m] = scale[scale.size() == 1 ? 0 : m];
    // The input zero point's correction, -(x_zp + shift) * colsum[m] in the kernel's canonical
    // (shifted) values, is the same for every pixel: it goes into the bias once here instead of
    // a pass over the int32 product per call. Only with a signed weight without zero points
    // (the kernel's B needs no shift and no row sums then); the sums wrap as the kernel's do.
    if (w_type == DType::Int8 && w_zp.empty()) {
      const uint32_t za = static_cast<uint32_t>(x_zp + (x_type == DType::Int8 ? 128 : 0));
      const int32_t* colsum = packed->col_sums();
      for (int64_t m = 0; m < M; ++m)
        bias_m[m] = static_cast<int32_t>(static_cast<uint32_t>(bias_m[m]) - za * static_cast<uint32_t>(colsum[m]));
      folded_zp = true;
    }
  }

  void run_channels_last(OpContext& ctx, const ConvGeom& g, const Tensor& X, uint8_t* out) const {
    const int64_t C = g.C, HW = g.in_size, P = g.out_size, M = g.M, K = packed->rows();
    const bool pointwise = g.k[0] == 1 && g.k[1] == 1 && g.stride[0] == 1 && g.stride[1] == 1 && g.pad_begin[0] == 0 &&
                           g.pad_begin[1] == 0 && P == HW;
    Tensor xt = new_tensor(DType::UInt8, {HW * C});
    Tensor acc_t = new_tensor(DType::Int32, {P * M});
    uint8_t* xl = xt.mutable_values<uint8_t>();
    int32_t* acc = acc_t.mutable_values<int32_t>();
    const int32_t* zbv = w_zp.empty() ? nullptr : w_zp.data();
    // With the input's zero point folded into bias_m (prepare_channels_last), the product is
    // asked for with the zero point that needs no correction: 0 for uint8, -128 for int8 (whose
    // values the kernel shifts by +128).
    const int32_t no_correction = x_type == DType::Int8 ? -128 : 0;
    const kernels::QZeroPoints za{folded_zp ? &no_correction : &x_zp, false}, zb{zbv, w_zp.size() > 1};
    const ChannelsLastIm2col im2col(g);
    for (int64_t b = 0; b < g.batch; ++b) {
      to_channels_last(X.data.data() + b * C * HW, C, HW, xl, ctx.pool);
      uint8_t* yb = out + b * M * P;
      // A finished block of pixels [p0, p1) x channels [m0, m1): requantized along the
      // channels into a tile, then written transposed (y is [M, P]).
      const kernels::QBlockDone done = [&](int64_t p0, int64_t p1, int64_t m0, int64_t m1) {
        const int64_t w = m1 - m0;
        thread_local std::vector<uint8_t> tile;
        tile.resize(static_cast<size_t>((p1 - p0) * w));
        for (int64_t p = p0; p < p1; ++p) {
          uint8_t* t = tile.data() + (p - p0) * w;
          if (y_type == DType::UInt8)
            kernels::requantize_s32_u8_per_element(acc + p * M + m0, w, bias_m.data() + m0, scale_m.data() + m0,
                                                   offset_m.data() + m0, y_zp, t);
          else
            kernels::requantize_s32_s8_per_element(acc + p * M + m0, w, bias_m.data() + m0, scale_m.data() + m0,
                                                   offset_m.data() + m0, y_zp, reinterpret_cast<int8_t*>(t));
        }
        kernels::transpose_u8(tile.data(), p1 - p0, w, w, yb + m0 * P + p0, P);
      };
      // A pointwise convolution's A is the transposed image itself; others make their im2col
      // rows into the GEMM's tiles.
      const kernels::QRowFill fill = [&](int64_t p, int64_t k0, int64_t n, uint8_t* dst) {
        im2col.fill(xl, static_cast<uint8_t>(x_zp), p, k0, n, dst);
      };
      kernels::qgemm_packed(P, xl, K, x_type == DType::Int8, za, *packed, zb, acc, M, ctx.pool, &done,
                            pointwise ? nullptr : &fill);
    }
  }

  void run(OpContext& ctx) override {
    const Tensor& X = ctx.in(0);
    const Tensor& W = ctx.in(1);
    if (X.dtype != x_type || W.dtype != w_type)
      bad_input("quantized inputs are {} and {}, the plan expected {} and {}", ir::dtype_name(X.dtype),
                ir::dtype_name(W.dtype), ir::dtype_name(x_type), ir::dtype_name(w_type));
    const ConvGeom g = conv_geometry(*node, "Conv", X.dims, W.dims);
    if ((scale.size() != 1 && static_cast<int64_t>(scale.size()) != g.M) ||
        (!bias.empty() && static_cast<int64_t>(bias.size()) != g.M))
      bad_input("the weight's scales or bias do not have {} output channels", g.M);
    const int64_t P = g.out_size;
    if (packed && g.group == 1 && g.in.size() == 2 && W.data.data() == packed_from->data.data() &&
        W.dims == packed_from->dims) {
      Tensor& y = ctx.set_out(0, new_tensor(y_type, g.out_dims));
      run_channels_last(ctx, g, X, y.mutable_values<uint8_t>());
      return;
    }
    Tensor acc_t = new_tensor(DType::Int32, {g.batch * g.M * P});
    int32_t* acc = acc_t.mutable_values<int32_t>();
    conv_integer(ctx, g, X, W, x_zp, w_zp, acc);
    Tensor& y = ctx.set_out(0, new_tensor(y_type, g.out_dims));
    uint8_t* out = y.mutable_values<uint8_t>();
    ctx.pool->parallel_for(
        g.batch * g.M, std::max<int64_t>(1, 8192 / std::max<int64_t>(P, 1)), [&](int64_t b, int64_t e) {
          for (int64_t row = b; row < e; ++row) {
            const int64_t m = row % g.M;
            const float sc = scale[scale.size() == 1 ? 0 : m];
            const int32_t bm = bias.empty() ? 0 : bias[m];
            const float off = offset.empty() ? 0.f : offset[m];
            if (y_type == DType::UInt8)
              kernels::requantize_s32_u8(acc + row * P, P, bm, sc, off, y_zp, out + row * P);
            else
              kernels::requantize_s32_s8(acc + row * P, P, bm, sc, off, y_zp, reinterpret_cast<int8_t*>(out) + row * P);
          }
        });
  }
};

std::unique_ptr<Kernel> qdq_conv_factory(const QdqGroup& g, const PlanContext& pc) {
  const ir::Node& n = *g.node;
  if (n.inputs.size() < 2 || !g.dq[0] || !g.dq[1] || !g.q) return nullptr;
  QdqConstants x, w, y;
  if (!qdq_constants(*g.dq[0], pc, x) || !x.per_tensor() || !int8ish(x.type)) return nullptr;
  if (!qdq_constants(*g.dq[1], pc, w) || !int8ish(w.type)) return nullptr;
  if (!qdq_constants(*g.q, pc, y) || !y.per_tensor() || !int8ish(y.type)) return nullptr;
  const Tensor* wt = constant_input(*g.dq[1], 0, pc);
  if (!wt || wt->dims.size() < 3 || wt->dtype != w.type) return nullptr;
  const int64_t M = wt->dims[0];
  if (!w.per_tensor() && (w.axis != 0 || static_cast<int64_t>(w.scale.size()) != M)) return nullptr;
  auto k = std::make_unique<QdqConvKernel>();
  k->node = &n;
  k->x_zp = x.zp[0], k->x_type = x.type, k->w_type = w.type, k->y_zp = y.zp[0], k->y_type = y.type;
  k->w_zp = w.zp;
  bool zero = true;
  for (int32_t z : w.zp) zero &= z == 0;
  if (zero) k->w_zp.clear();
  for (float ws : w.scale) k->scale.push_back(x.scale[0] * ws / y.scale[0]);
  if (n.inputs.size() > 2 && n.inputs[2]) {
    if (g.dq.size() > 2 && g.dq[2]) {
      if (!qdq_int32_bias(g, 2, pc, x.scale[0], w.scale, M, k->bias)) return nullptr;
    } else {
      // A float bias (one the quantizer left float): y = acc * x_scale * w_scale + bias, so
      // requantized as acc * scale + bias / y_scale.
      const Tensor* b = g.constant.size() > 2 ? g.constant[2] : nullptr;
      if (!b || b->dtype != DType::Float || b->numel() != static_cast<size_t>(M)) return nullptr;
      for (float v : float_values(*b)) k->offset.push_back(v / y.scale[0]);
    }
  }
  if (wt->dims.size() == 4 && n.attr_int("group", 1) == 1) k->prepare_channels_last(*wt);
  return k;
}

}  // namespace

void register_quant_conv_ops() {
  register_kernel("", "ConvInteger", 10, simple_kernel(conv_integer_op));
  register_kernel("", "QLinearConv", 10, simple_kernel(qlinear_conv_op));
  register_qdq_kernel("Conv", qdq_conv_factory);
}

}  // namespace slmops::runtime::ops::quant
