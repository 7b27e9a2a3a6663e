// Element-wise ops: unary math and activations, binary arithmetic/comparison/logic with
// numpy broadcasting, variadic Sum/Mean/Max/Min, Where, Clip.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "runtime/kernels/conv.h"
#include "runtime/kernels/unary_math.h"
#include "runtime/ops/common.h"

namespace slmops::runtime::ops {
namespace {

// ---- unary ---------------------------------------------------------------------------------

// A float unary op applied to float/double (in their own precision) and float16/bfloat16
// (through float).
template <typename F>
void unary_float(const Tensor& x, Tensor& y, ThreadPool* pool, F f) {
  const int64_t n = static_cast<int64_t>(x.numel());
  dispatch<kFloats | kHalfs>(x.dtype, "this op", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    pool->parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if constexpr (std::is_same_v<T, double>) out[i] = f(in[i]);
        else if constexpr (std::is_same_v<T, float>) out[i] = static_cast<float>(f(in[i]));
        else out[i] = from_f32<T>(static_cast<float>(f(to_f32(in[i]))));
      }
    });
  });
}

using UnaryFn = std::function<double(double)>;

// Elements per parallel chunk of the transcendental float32 kernels (about 1 ns each): large
// enough that a chunk costs far more than waking a thread.
constexpr int64_t kFloatGrain = int64_t{1} << 14;
// Elements per parallel chunk of the memory-bound loops (binary arithmetic, x*x, sqrt: a
// fraction of a ns each). Waking the pool's worker costs tens of microseconds on a busy
// machine, and a second core adds little bandwidth: with 16K-element chunks, the Llama
// fixture at batch 8 ran its 48 Add/Mul/Pow nodes 4x slower on 2 threads than on 1.
constexpr int64_t kStreamGrain = int64_t{1} << 18;

// Registers an op whose output is f(x) element-wise; `make` reads attributes once. With
// `fast`, float32 tensors run on the vectorized kernels::unary_f32 instead (within 2 ulp of
// f, see unary_math.h); the other types keep f in double.
void reg_unary(const char* name, int since, std::function<UnaryFn(const ir::Node&)> make,
               std::optional<kernels::UnaryOp> fast = std::nullopt) {
  register_kernel("", name, since, [make, fast](const ir::Node& n, const PlanContext&) {
    struct K : Kernel {
      UnaryFn f;
      std::optional<kernels::UnaryOp> fast;
      void run(OpContext& ctx) override {
        const Tensor& x = ctx.in(0);
        Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
        if (fast && x.dtype == DType::Float) {
          const float* in = x.values<float>();
          float* out = y.mutable_values<float>();
          const kernels::UnaryOp op = *fast;
          ctx.pool->parallel_for(static_cast<int64_t>(x.numel()), kFloatGrain,
                                 [&](int64_t b, int64_t e) { kernels::unary_f32(op, in + b, out + b, e - b); });
          return;
        }
        unary_float(x, y, ctx.pool, f);
      }
    };
    auto k = std::make_unique<K>();
    k->f = make(n);
    k->fast = fast;
    return k;
  });
}

void reg_unary(const char* name, int since, UnaryFn f, std::optional<kernels::UnaryOp> fast = std::nullopt) {
  reg_unary(name, since, [f](const ir::Node&) { return f; }, fast);
}

// Ops defined for signed/unsigned integers as well as floats.
// `fast`: the vectorized kernel for float32 (the same values as op).
template <typename Op>
void unary_numeric(const char* name, Op op, std::optional<kernels::UnaryOp> fast = std::nullopt) {
  register_kernel("", name, 1, simple_kernel([op, name, fast](const ir::Node&, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
    const int64_t n = static_cast<int64_t>(x.numel());
    if (fast && x.dtype == DType::Float) {
      const float* in = x.values<float>();
      float* out = y.mutable_values<float>();
      ctx.pool->parallel_for(n, kFloatGrain, [&](int64_t b, int64_t e) { kernels::unary_f32(*fast, in + b, out + b, e - b); });
      return;
    }
    dispatch<kNumeric>(x.dtype, name, [&](auto tag) {
      using T = decltype(tag);
      const T* in = x.values<T>();
      T* out = y.mutable_values<T>();
      for (int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
          out[i] = from_f32<T>(static_cast<float>(op(static_cast<double>(to_f32(in[i])))));
        else out[i] = op(in[i]);
      }
    });
  }));
}

double erf_(double x) { return std::erf(x); }
double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }

// ---- binary --------------------------------------------------------------------------------

// A broadcast of a and b to out as runs: out is `runs` consecutive stretches of `inner`
// elements; in each, input a advances by a_inner (0 or 1) per element and starts at
// sum_d i_d * a_stride[d] for the run's index (i_d) over the outer dims (b alike). Adjacent
// dims that both inputs walk alike are merged first, so that [B,S,D] + [D] is B*S runs of D,
// [B,S,D] * [B,S,1] is B*S*D runs with b repeating, and [B,H,S,S] + [1,1,S,S] is B*H runs
// of S*S.
struct BroadcastRuns {
  int64_t inner = 1, a_inner = 1, b_inner = 1;
  std::vector<int64_t> outer, outer_div, a_stride, b_stride;
};

BroadcastRuns broadcast_runs(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                             const std::vector<int64_t>& out) {
  const std::vector<int64_t> sa = broadcast_strides(a, out), sb = broadcast_strides(b, out);
  // Merged dims, innermost first: size and the two strides.
  std::vector<std::array<int64_t, 3>> dims;
  for (size_t d = out.size(); d-- > 0;) {
    if (out[d] == 1) continue;
    if (!dims.empty()) {
      auto& m = dims.back();
      if (sa[d] == m[1] * m[0] && sb[d] == m[2] * m[0]) {
        m[0] *= out[d];
        continue;
      }
    }
    dims.push_back({out[d], sa[d], sb[d]});
  }
  BroadcastRuns r;
  if (dims.empty()) return r;  // one element
  // The innermost merged dim is the run when it has a unit or zero stride on both sides.
  if ((dims[0][1] == 0 || dims[0][1] == 1) && (dims[0][2] == 0 || dims[0][2] == 1)) {
    r.inner = dims[0][0];
    r.a_inner = dims[0][1];
    r.b_inner = dims[0][2];
    dims.erase(dims.begin());
  } else {
    r.a_inner = r.b_inner = 0;  // runs of one element
  }
  int64_t div = 1;
  for (auto& m : dims) {  // innermost first: build outer_div from the inside out
    r.outer.insert(r.outer.begin(), m[0]);
    r.outer_div.insert(r.outer_div.begin(), div);
    r.a_stride.insert(r.a_stride.begin(), m[1]);
    r.b_stride.insert(r.b_stride.begin(), m[2]);
    div *= m[0];
  }
  return r;
}

// Output of `In` type -> `Out` type with broadcasting. fn(a, b) -> Out. `fast`: the op, when it
// is one of kernels::binary_f32's, for float32 (the vector widths of the CPU; the same bits).
template <typename In, typename Out, typename F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& y, ThreadPool* pool, F f,
                 std::optional<kernels::BinaryOp> fast = std::nullopt) {
  const In* pa = a.values<In>();
  const In* pb = b.values<In>();
  Out* py = y.mutable_values<Out>();
  const int64_t n = static_cast<int64_t>(y.numel());
  constexpr bool kFloat = std::is_same_v<In, float> && std::is_same_v<Out, float>;
  if (a.dims == b.dims) {
    pool->parallel_for(n, kStreamGrain, [&](int64_t s, int64_t e) {
      if constexpr (kFloat)
        if (fast) return kernels::binary_f32(*fast, pa + s, 1, pb + s, 1, py + s, e - s);
      for (int64_t i = s; i < e; ++i) py[i] = f(pa[i], pb[i]);
    });
    return;
  }
  if (b.numel() == 1 && a.dims == y.dims) {
    const In bv = pb[0];
    pool->parallel_for(n, kStreamGrain, [&](int64_t s, int64_t e) {
      if constexpr (kFloat)
        if (fast) return kernels::binary_f32(*fast, pa + s, 1, pb, 0, py + s, e - s);
      for (int64_t i = s; i < e; ++i) py[i] = f(pa[i], bv);
    });
    return;
  }
  if (a.numel() == 1 && b.dims == y.dims) {
    const In av = pa[0];
    pool->parallel_for(n, kStreamGrain, [&](int64_t s, int64_t e) {
      if constexpr (kFloat)
        if (fast) return kernels::binary_f32(*fast, pa, 0, pb + s, 1, py + s, e - s);
      for (int64_t i = s; i < e; ++i) py[i] = f(av, pb[i]);
    });
    return;
  }
  if (n == 0) return;
  const BroadcastRuns r = broadcast_runs(a.dims, b.dims, y.dims);
  const int64_t runs = n / r.inner;
  // Each run is a contiguous stretch of y where each input either advances with y or
  // repeats one element: the three loops below vectorize.
  auto run = [&](const In* x, const In* z, Out* out, int64_t len, int64_t sx, int64_t sz) {
    if constexpr (kFloat)
      if (fast) return kernels::binary_f32(*fast, x, sx, z, sz, out, len);
    if (sx && sz)
      for (int64_t i = 0; i < len; ++i) out[i] = f(x[i], z[i]);
    else if (sx)
      for (int64_t i = 0; i < len; ++i) out[i] = f(x[i], z[0]);
    else if (sz)
      for (int64_t i = 0; i < len; ++i) out[i] = f(x[0], z[i]);
    else
      for (int64_t i = 0; i < len; ++i) out[i] = f(x[0], z[0]);
  };
  pool->parallel_for(runs, std::max<int64_t>(1, kStreamGrain / r.inner), [&](int64_t r0, int64_t r1) {
    for (int64_t k = r0; k < r1; ++k) {
      int64_t oa = 0, ob = 0, rest = k;
      for (size_t d = 0; d < r.outer.size(); ++d) {
        const int64_t i = rest / r.outer_div[d];
        rest %= r.outer_div[d];
        oa += i * r.a_stride[d];
        ob += i * r.b_stride[d];
      }
      run(pa + oa, pb + ob, py + k * r.inner, r.inner, r.a_inner, r.b_inner);
    }
  });
}

enum class BinKind { Arith, Compare, Logic };

// Registers a binary op. `F` is a generic lambda over the element type (or float for halfs).
// Before opset 7, binary ops broadcast only with broadcast=1, aligning B at `axis`.
Tensor legacy_broadcast_b(const ir::Node& n, const Tensor& a, const Tensor& b) {
  if (n.attr_int("broadcast", 0) == 0 || !n.attr("axis")) return b;
  int64_t axis = normalize_axis(n.attr_int("axis", 0), static_cast<int64_t>(a.dims.size()));
  std::vector<int64_t> dims = b.dims;
  while (static_cast<int64_t>(dims.size()) + axis < static_cast<int64_t>(a.dims.size())) dims.push_back(1);
  return reshaped(b, dims);
}

// Clamps t to [lo, hi] in place where a bound is finite (OpContext::fused_clamp).
void clamp_output(Tensor& t, float lo, float hi) {
  const int64_t n = static_cast<int64_t>(t.numel());
  const bool use_lo = lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = hi != std::numeric_limits<float>::infinity();
  // As kernels::clamp_in_place: NaN becomes lo.
  auto clamp = [&](double v) {
    if (use_lo) v = v > lo ? v : lo;
    if (use_hi) v = v < hi ? v : hi;
    return v;
  };
  dispatch<kNumeric>(t.dtype, "fused clamp", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.mutable_values<T>();
    if constexpr (std::is_same_v<T, float>) {
      kernels::clamp_in_place(p, n, lo, hi);
    } else if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
      for (int64_t i = 0; i < n; ++i) p[i] = from_f32<T>(static_cast<float>(clamp(to_f32(p[i]))));
    } else if constexpr (std::is_same_v<T, double>) {
      for (int64_t i = 0; i < n; ++i) p[i] = clamp(p[i]);
    } else {  // integers: only Relu's 0 reaches them (a Clip fuses with float32 bounds only)
      const T tlo = static_cast<T>(use_lo ? lo : 0), thi = static_cast<T>(use_hi ? hi : 0);
      for (int64_t i = 0; i < n; ++i) {
        if (use_lo) p[i] = p[i] > tlo ? p[i] : tlo;
        if (use_hi) p[i] = p[i] < thi ? p[i] : thi;
      }
    }
  });
}

// A kernel of `fn` that applies a fused Relu or Clip to its output 0 itself (resnet's
// residual Add -> Relu in one step: the sum is clamped while it is still in cache, and the
// Relu step's pass and output tensor are saved).
class ClampingKernel : public Kernel {
 public:
  ClampingKernel(const ir::Node& n, KernelFn fn) : node_(n), fn_(std::move(fn)) {}
  void run(OpContext& ctx) override {
    fn_(node_, ctx);
    if (ctx.fused_clamp && (*ctx.outputs)[0].is_tensor())
      clamp_output((*ctx.outputs)[0].tensor, ctx.fused_lo, ctx.fused_hi);
  }
  bool fuses_clamp() const override { return true; }

 private:
  const ir::Node& node_;
  KernelFn fn_;
};

template <unsigned Mask, BinKind Kind, typename F>
void reg_binary(const char* name, int since, F f, bool fuses_clamp = false,
                std::optional<kernels::BinaryOp> fast = std::nullopt) {
  KernelFn fn = [f, name, fast](const ir::Node& node, OpContext& ctx) {
    const Tensor& a = ctx.in(0);
    const Tensor b = legacy_broadcast_b(node, a, ctx.in(1));
    if (a.dtype != b.dtype)
      bad_input("{} inputs have different types ({} and {})", name, ir::dtype_name(a.dtype), ir::dtype_name(b.dtype));
    auto shape = broadcast_shapes({a.dims, b.dims});
    DType out_t = Kind == BinKind::Arith ? a.dtype : DType::Bool;
    Tensor& y = ctx.set_out(0, new_tensor(out_t, shape));
    dispatch<Mask>(a.dtype, name, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
        if constexpr (Kind == BinKind::Arith)
          binary_loop<T, T>(a, b, y, ctx.pool, [&](T x, T z) { return from_f32<T>(f(to_f32(x), to_f32(z))); });
        else
          binary_loop<T, bool>(a, b, y, ctx.pool, [&](T x, T z) { return static_cast<bool>(f(to_f32(x), to_f32(z))); });
      } else {
        if constexpr (Kind == BinKind::Arith)
          binary_loop<T, T>(
              a, b, y, ctx.pool, [&](T x, T z) { return static_cast<T>(f(x, z)); }, fast);
        else binary_loop<T, bool>(a, b, y, ctx.pool, [&](T x, T z) { return static_cast<bool>(f(x, z)); });
      }
    });
  };
  if (fuses_clamp)
    register_kernel("", name, since,
                    [fn](const ir::Node& n, const PlanContext&) { return std::make_unique<ClampingKernel>(n, fn); });
  else
    register_kernel("", name, since, simple_kernel(std::move(fn)));
}

// Integer division and modulo follow ONNX: Div truncates; Mod with fmod=0 takes the sign of
// the divisor (Python), with fmod=1 the sign of the dividend (C).
template <typename T>
T int_mod(T a, T b) {
  if (b == 0) return 0;
  T r = static_cast<T>(a % b);
  if constexpr (std::is_signed_v<T>)
    if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
  return r;
}

void reg_mod() {
  register_kernel("", "Mod", 10, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    bool fmod = n.attr_int("fmod", 0) != 0;
    auto shape = broadcast_shapes({a.dims, b.dims});
    Tensor& y = ctx.set_out(0, new_tensor(a.dtype, shape));
    dispatch<kNumeric>(a.dtype, "Mod", [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
        binary_loop<T, T>(a, b, y, ctx.pool, [&](T x, T z) {
          float r = std::fmod(to_f32(x), to_f32(z));
          if (!fmod && r != 0 && ((r < 0) != (to_f32(z) < 0))) r += to_f32(z);
          return from_f32<T>(r);
        });
      } else if constexpr (std::is_floating_point_v<T>) {
        binary_loop<T, T>(a, b, y, ctx.pool, [&](T x, T z) {
          T r = std::fmod(x, z);
          if (!fmod && r != 0 && ((r < 0) != (z < 0))) r += z;
          return r;
        });
      } else {
        binary_loop<T, T>(a, b, y, ctx.pool, [&](T x, T z) {
          if (fmod) return z == 0 ? T(0) : static_cast<T>(x % z);
          return int_mod(x, z);
        });
      }
    });
  }));
}

// Pow of float32 x by one exponent e (RMSNorm's x^2, x^0.5): the same values as the generic
// path (std::pow in double, rounded), faster. x^2 and x^0.5 are exact in double before the
// rounding, so float x*x and the correctly rounded float sqrt give the same bits; sqrt only
// differs from pow at -0 (pow gives +0) and -inf (pow gives +inf).
void pow_scalar_f32(const float* x, double e, float* y, int64_t n, ThreadPool* pool) {
  const bool streaming = e == 2.0 || e == 1.0 || e == 0.5;
  pool->parallel_for(n, streaming ? kStreamGrain : kFloatGrain, [&](int64_t b, int64_t end) {
    if (e == 2.0) return kernels::unary_f32(kernels::UnaryOp::Square, x + b, y + b, end - b);
    if (e == 1.0) return static_cast<void>(std::copy(x + b, x + end, y + b));
    if (e == 0.5) {
      kernels::unary_f32(kernels::UnaryOp::Sqrt, x + b, y + b, end - b);
      for (int64_t i = b; i < end; ++i) {
        if (x[i] == 0.0f) y[i] = 0.0f;
        if (x[i] == -std::numeric_limits<float>::infinity()) y[i] = std::numeric_limits<float>::infinity();
      }
      return;
    }
    for (int64_t i = b; i < end; ++i) y[i] = static_cast<float>(std::pow(static_cast<double>(x[i]), e));
  });
}

// Pow: base and exponent may have different types; the output has the base's type.
void reg_pow() {
  register_kernel("", "Pow", 1, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    auto shape = broadcast_shapes({a.dims, b.dims});
    if (a.dtype == DType::Float && b.numel() == 1 && b.dtype != DType::String && b.dtype != DType::Bool &&
        shape == a.dims) {
      Tensor& y = ctx.set_out(0, new_tensor(a.dtype, shape));
      pow_scalar_f32(a.values<float>(), scalar_as_double(b), y.mutable_values<float>(),
                     static_cast<int64_t>(a.numel()), ctx.pool);
      return;
    }
    Tensor bd = b;
    if (b.dtype != DType::Double) bd = tensor_from_doubles(DType::Double, b.dims, to_doubles(b));
    Tensor& y = ctx.set_out(0, new_tensor(a.dtype, shape));
    dispatch<kNumeric>(a.dtype, "Pow", [&](auto tag) {
      using T = decltype(tag);
      const T* pa = a.values<T>();
      const double* pb = bd.values<double>();
      T* py = y.mutable_values<T>();
      std::array<std::vector<int64_t>, 2> st = {broadcast_strides(a.dims, shape), broadcast_strides(bd.dims, shape)};
      for_each_broadcast<2>(shape, st, [&](int64_t o, const std::array<int64_t, 2>& off) {
        double base = static_cast<double>(to_f32(pa[off[0]]));
        if constexpr (std::is_same_v<T, double> || std::is_integral_v<T>) base = static_cast<double>(pa[off[0]]);
        double r = std::pow(base, pb[off[1]]);
        if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) py[o] = from_f32<T>(static_cast<float>(r));
        else py[o] = static_cast<T>(r);
      });
    });
  }));
}

void reg_bitshift() {
  register_kernel("", "BitShift", 11, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    bool left = n.attr_string("direction", "") == "LEFT";
    Tensor& y = ctx.set_out(0, new_tensor(a.dtype, broadcast_shapes({a.dims, b.dims})));
    dispatch<kUnsigned>(a.dtype, "BitShift", [&](auto tag) {
      using T = decltype(tag);
      binary_loop<T, T>(a, b, y, ctx.pool, [&](T x, T s) {
        if (s >= sizeof(T) * 8) return T(0);
        return left ? static_cast<T>(x << s) : static_cast<T>(x >> s);
      });
    });
  }));
}

// Sum / Mean / Max / Min over any number of inputs, broadcast together.
template <typename F>
void reg_variadic(const char* name, int since, bool mean, F f) {
  register_kernel("", name, since, simple_kernel([name, mean, f](const ir::Node&, OpContext& ctx) {
    std::vector<std::vector<int64_t>> shapes;
    for (size_t i = 0; i < ctx.input_count(); ++i) shapes.push_back(ctx.in(i).dims);
    auto shape = broadcast_shapes(shapes);
    const DType dt = ctx.in(0).dtype;
    Tensor y = new_tensor(dt, shape);
    dispatch<kNumeric>(dt, name, [&](auto tag) {
      using T = decltype(tag);
      using C = std::conditional_t<std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, float, T>;
      const int64_t n = static_cast<int64_t>(y.numel());
      std::vector<C> acc(n);
      for (size_t k = 0; k < ctx.input_count(); ++k) {
        const Tensor& x = ctx.in(k);
        const T* px = x.values<T>();
        std::array<std::vector<int64_t>, 1> st = {broadcast_strides(x.dims, shape)};
        for_each_broadcast<1>(shape, st, [&](int64_t o, const std::array<int64_t, 1>& off) {
          C v;
          if constexpr (std::is_same_v<C, float> && !std::is_same_v<T, float>) v = to_f32(px[off[0]]);
          else v = px[off[0]];
          acc[o] = k == 0 ? v : f(acc[o], v);
        });
      }
      T* py = y.mutable_values<T>();
      for (int64_t i = 0; i < n; ++i) {
        C v = mean ? static_cast<C>(acc[i] / static_cast<C>(ctx.input_count())) : acc[i];
        if constexpr (std::is_same_v<C, float> && !std::is_same_v<T, float>) py[i] = from_f32<T>(v);
        else py[i] = v;
      }
    });
    ctx.set_out(0, std::move(y));
  }));
}

void reg_where() {
  register_kernel("", "Where", 9, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const Tensor& c = ctx.in(0);
    const Tensor& a = ctx.in(1);
    const Tensor& b = ctx.in(2);
    auto shape = broadcast_shapes({c.dims, a.dims, b.dims});
    Tensor& y = ctx.set_out(0, new_tensor(a.dtype, shape));
    if (a.dtype == DType::String) {
      std::array<std::vector<int64_t>, 3> st = {broadcast_strides(c.dims, shape), broadcast_strides(a.dims, shape),
                                                broadcast_strides(b.dims, shape)};
      const bool* pc = c.values<bool>();
      for_each_broadcast<3>(shape, st, [&](int64_t o, const std::array<int64_t, 3>& off) {
        y.strings[o] = pc[off[0]] ? a.strings[off[1]] : b.strings[off[2]];
      });
      return;
    }
    const size_t w = ir::traits(a.dtype).bits / 8;
    const uint8_t* pa = a.data.data();
    const uint8_t* pb = b.data.data();
    const bool* pc = c.values<bool>();
    uint8_t* py = y.data.mutable_data();
    std::array<std::vector<int64_t>, 3> st = {broadcast_strides(c.dims, shape), broadcast_strides(a.dims, shape),
                                              broadcast_strides(b.dims, shape)};
    // Elements moved as unsigned integers of their width (a causal mask over attention scores
    // is millions of them a run; a memcpy call each cost 5x the select), any other width
    // byte-wise.
    auto select = [&](auto tag) {
      using U = decltype(tag);
      const U* ua = reinterpret_cast<const U*>(pa);
      const U* ub = reinterpret_cast<const U*>(pb);
      U* uy = reinterpret_cast<U*>(py);
      for_each_broadcast<3>(shape, st, [&](int64_t o, const std::array<int64_t, 3>& off) {
        uy[o] = pc[off[0]] ? ua[off[1]] : ub[off[2]];
      });
    };
    switch (w) {
      case 1:
        return select(uint8_t{});
      case 2:
        return select(uint16_t{});
      case 4:
        return select(uint32_t{});
      case 8:
        return select(uint64_t{});
      default:
        for_each_broadcast<3>(shape, st, [&](int64_t o, const std::array<int64_t, 3>& off) {
          std::memcpy(py + o * w, pc[off[0]] ? pa + off[1] * w : pb + off[2] * w, w);
        });
    }
  }));
}

// Clip: min/max attributes before opset 11, optional inputs after.
void reg_clip() {
  auto run = [](const ir::Node& n, OpContext& ctx, bool attrs) {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
    const int64_t count = static_cast<int64_t>(x.numel());
    dispatch<kNumeric>(x.dtype, "Clip", [&](auto tag) {
      using T = decltype(tag);
      using C = std::conditional_t<std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, float, T>;
      C lo = std::numeric_limits<C>::lowest(), hi = std::numeric_limits<C>::max();
      if (attrs) {
        lo = static_cast<C>(n.attr_float("min", -3.402823e38f));
        hi = static_cast<C>(n.attr_float("max", 3.402823e38f));
      } else {
        if (ctx.has_input(1)) {
          const T v = ctx.in(1).template values<T>()[0];
          if constexpr (std::is_same_v<C, float> && !std::is_same_v<T, float>) lo = to_f32(v);
          else lo = v;
        }
        if (ctx.has_input(2)) {
          const T v = ctx.in(2).template values<T>()[0];
          if constexpr (std::is_same_v<C, float> && !std::is_same_v<T, float>) hi = to_f32(v);
          else hi = v;
        }
      }
      const T* px = x.values<T>();
      T* py = y.mutable_values<T>();
      for (int64_t i = 0; i < count; ++i) {
        C v;
        if constexpr (std::is_same_v<C, float> && !std::is_same_v<T, float>) v = to_f32(px[i]);
        else v = px[i];
        v = std::min(std::max(v, lo), hi);
        if constexpr (std::is_same_v<C, float> && !std::is_same_v<T, float>) py[i] = from_f32<T>(v);
        else py[i] = v;
      }
    });
  };
  register_kernel("", "Clip", 1, simple_kernel([run](const ir::Node& n, OpContext& c) { run(n, c, true); }));
  register_kernel("", "Clip", 11, simple_kernel([run](const ir::Node& n, OpContext& c) { run(n, c, false); }));
}

// PRelu: before opset 7 a 1-D slope applies along the channel axis (1); from 7 the slope
// broadcasts numpy-style against X.
void reg_prelu() {
  auto run = [](OpContext& ctx, bool legacy) {
    const Tensor& x = ctx.in(0);
    Tensor s = ctx.in(1);
    if (legacy && s.dims.size() == 1 && x.dims.size() > 2 && s.dims[0] == x.dims[1] && s.dims[0] != 1) {
      std::vector<int64_t> dims(x.dims.size() - 1, 1);
      dims[0] = s.dims[0];
      s = reshaped(s, dims);
    }
    auto shape = broadcast_shapes({x.dims, s.dims});
    Tensor& y = ctx.set_out(0, new_tensor(x.dtype, shape));
    dispatch<kNumeric>(x.dtype, "PRelu", [&](auto tag) {
      using T = decltype(tag);
      binary_loop<T, T>(x, s, y, ctx.pool, [](T v, T a) {
        if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
          float f = to_f32(v);
          return f < 0 ? from_f32<T>(f * to_f32(a)) : v;
        } else {
          return v < T(0) ? static_cast<T>(v * a) : v;
        }
      });
    });
  };
  register_kernel("", "PRelu", 1, simple_kernel([run](const ir::Node&, OpContext& ctx) { run(ctx, true); }));
  register_kernel("", "PRelu", 7, simple_kernel([run](const ir::Node&, OpContext& ctx) { run(ctx, false); }));
}

// HannWindow / HammingWindow / BlackmanWindow (opset 17): size N (scalar input), periodic by
// default (denominator N) or symmetric (N - 1); output type from `output_datatype`.
//   hann:     0.5 - 0.5 cos(2 pi n / D)
//   hamming:  25/46 - 21/46 cos(2 pi n / D)
//   blackman: 0.42 - 0.5 cos(2 pi n / D) + 0.08 cos(4 pi n / D)
void reg_windows() {
  struct Win {
    const char* name;
    double a0, a1, a2;
  };
  static const Win wins[] = {{"HannWindow", 0.5, 0.5, 0},
                             {"HammingWindow", 25.0 / 46, 21.0 / 46, 0},
                             {"BlackmanWindow", 0.42, 0.5, 0.08}};
  for (const Win& w : wins)
    register_kernel("", w.name, 17, simple_kernel([w](const ir::Node& n, OpContext& ctx) {
      const int64_t size = static_cast<int64_t>(scalar_as_double(ctx.in(0)));
      if (size < 0) bad_input("window size {} is negative", size);
      const bool periodic = n.attr_int("periodic", 1) != 0;
      const double d = periodic ? static_cast<double>(size) : static_cast<double>(size - 1);
      std::vector<double> v(size);
      for (int64_t i = 0; i < size; ++i) {
        double x = d > 0 ? 2 * M_PI * static_cast<double>(i) / d : 0;
        v[i] = w.a0 - w.a1 * std::cos(x) + w.a2 * std::cos(2 * x);
      }
      auto dt = static_cast<DType>(n.attr_int("output_datatype", static_cast<int64_t>(DType::Float)));
      ctx.set_out(0, tensor_from_doubles(dt, {size}, v));
    }));
}

void reg_predicates() {
  register_kernel("", "IsNaN", 9, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.set_out(0, new_tensor(DType::Bool, x.dims));
    auto v = to_doubles(x);
    bool* p = y.mutable_values<bool>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = std::isnan(v[i]);
  }));
  register_kernel("", "IsInf", 10, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    bool pos = n.attr_int("detect_positive", 1) != 0, neg = n.attr_int("detect_negative", 1) != 0;
    Tensor& y = ctx.set_out(0, new_tensor(DType::Bool, x.dims));
    auto v = to_doubles(x);
    bool* p = y.mutable_values<bool>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = std::isinf(v[i]) && ((v[i] > 0 && pos) || (v[i] < 0 && neg));
  }));
  register_kernel("", "Not", 1, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.set_out(0, new_tensor(DType::Bool, x.dims));
    const bool* px = x.values<bool>();
    bool* p = y.mutable_values<bool>();
    for (uint64_t i = 0; i < x.numel(); ++i) p[i] = !px[i];
  }));
  register_kernel("", "BitwiseNot", 18, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
    dispatch<kSigned | kUnsigned>(x.dtype, "BitwiseNot", [&](auto tag) {
      using T = decltype(tag);
      const T* px = x.values<T>();
      T* p = y.mutable_values<T>();
      for (uint64_t i = 0; i < x.numel(); ++i) p[i] = static_cast<T>(~px[i]);
    });
  }));
}

}  // namespace

void register_elementwise_ops() {
  // Unary math (ONNX defines these on floats).
  reg_unary("Exp", 1, [](double x) { return std::exp(x); }, kernels::UnaryOp::Exp);
  reg_unary("Log", 1, [](double x) { return std::log(x); });
  reg_unary("Sqrt", 1, [](double x) { return std::sqrt(x); }, kernels::UnaryOp::Sqrt);
  reg_unary("Reciprocal", 1, [](double x) { return 1.0 / x; });
  reg_unary("Floor", 1, [](double x) { return std::floor(x); });
  reg_unary("Ceil", 1, [](double x) { return std::ceil(x); });
  reg_unary("Round", 11, [](double x) { return std::nearbyint(x); });  // half to even
  reg_unary("Sin", 7, [](double x) { return std::sin(x); });
  reg_unary("Cos", 7, [](double x) { return std::cos(x); });
  reg_unary("Tan", 7, [](double x) { return std::tan(x); });
  reg_unary("Asin", 7, [](double x) { return std::asin(x); });
  reg_unary("Acos", 7, [](double x) { return std::acos(x); });
  reg_unary("Atan", 7, [](double x) { return std::atan(x); });
  reg_unary("Sinh", 9, [](double x) { return std::sinh(x); });
  reg_unary("Cosh", 9, [](double x) { return std::cosh(x); });
  reg_unary("Tanh", 1, [](double x) { return std::tanh(x); }, kernels::UnaryOp::Tanh);
  reg_unary("Asinh", 9, [](double x) { return std::asinh(x); });
  reg_unary("Acosh", 9, [](double x) { return std::acosh(x); });
  reg_unary("Atanh", 9, [](double x) { return std::atanh(x); });
  reg_unary("Erf", 9, erf_, kernels::UnaryOp::Erf);
  reg_unary("Sigmoid", 1, sigmoid, kernels::UnaryOp::Sigmoid);
  reg_unary("Softplus", 1, [](double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); });
  reg_unary("Softsign", 1, [](double x) { return x / (1 + std::fabs(x)); });
  reg_unary("Mish", 18, [](double x) { return x * std::tanh(x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x))); });
  reg_unary("HardSwish", 14, [](double x) { return x * std::max(0.0, std::min(1.0, x / 6 + 0.5)); });
  reg_unary("LeakyRelu", 1, [](const ir::Node& n) -> UnaryFn {
    double a = n.attr_float("alpha", 0.01f);
    return [a](double x) { return x < 0 ? a * x : x; };
  });
  reg_unary("Elu", 1, [](const ir::Node& n) -> UnaryFn {
    double a = n.attr_float("alpha", 1.0f);
    return [a](double x) { return x < 0 ? a * (std::exp(x) - 1) : x; };
  });
  reg_unary("Celu", 12, [](const ir::Node& n) -> UnaryFn {
    double a = n.attr_float("alpha", 1.0f);
    return [a](double x) { return std::max(0.0, x) + std::min(0.0, a * (std::exp(x / a) - 1)); };
  });
  reg_unary("Selu", 1, [](const ir::Node& n) -> UnaryFn {
    double a = n.attr_float("alpha", 1.67326319217681884765625f);
    double g = n.attr_float("gamma", 1.05070102214813232421875f);
    return [a, g](double x) { return x > 0 ? g * x : g * (a * std::exp(x) - a); };
  });
  reg_unary("HardSigmoid", 1, [](const ir::Node& n) -> UnaryFn {
    double a = n.attr_float("alpha", 0.2f), b = n.attr_float("beta", 0.5f);
    return [a, b](double x) { return std::max(0.0, std::min(1.0, a * x + b)); };
  });
  reg_unary("ThresholdedRelu", 10, [](const ir::Node& n) -> UnaryFn {
    double a = n.attr_float("alpha", 1.0f);
    return [a](double x) { return x > a ? x : 0.0; };
  });
  reg_unary("Gelu", 20, [](const ir::Node& n) -> UnaryFn {
    if (n.attr_string("approximate", "none") == "tanh")
      return [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); };
    return [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); };
  });

  // Defined for integers too.
  unary_numeric("Abs", [](auto x) -> decltype(x) {
    if constexpr (std::is_unsigned_v<decltype(x)>) return x;
    else return x < 0 ? -x : x;
  });
  unary_numeric("Neg", [](auto x) -> decltype(x) { return static_cast<decltype(x)>(-x); });
  unary_numeric("Sign", [](auto x) -> decltype(x) {
    using T = decltype(x);
    return static_cast<T>((T(0) < x) - (x < T(0)));
  });
  unary_numeric("Relu", [](auto x) -> decltype(x) { return x > decltype(x)(0) ? x : decltype(x)(0); },
                kernels::UnaryOp::Relu);

  // Binary arithmetic.
  using kernels::BinaryOp;
  reg_binary<kNumeric, BinKind::Arith>(
      "Add", 1, [](auto a, auto b) { return a + b; }, true, BinaryOp::Add);
  reg_binary<kNumeric, BinKind::Arith>(
      "Sub", 1, [](auto a, auto b) { return a - b; }, false, BinaryOp::Sub);
  reg_binary<kNumeric, BinKind::Arith>(
      "Mul", 1, [](auto a, auto b) { return a * b; }, false, BinaryOp::Mul);
  reg_binary<kNumeric, BinKind::Arith>(
      "Div", 1,
      [](auto a, auto b) {
        using T = decltype(a);
        if constexpr (std::is_integral_v<T>)
          return b == 0 ? T(0) : static_cast<T>(a / b);
        else
          return a / b;
      },
      false, BinaryOp::Div);
  reg_pow();
  reg_mod();
  reg_bitshift();
  reg_binary<kSigned | kUnsigned, BinKind::Arith>("BitwiseAnd", 18, [](auto a, auto b) { return a & b; });
  reg_binary<kSigned | kUnsigned, BinKind::Arith>("BitwiseOr", 18, [](auto a, auto b) { return a | b; });
  reg_binary<kSigned | kUnsigned, BinKind::Arith>("BitwiseXor", 18, [](auto a, auto b) { return a ^ b; });

  // Comparison and logic.
  reg_binary<kAll, BinKind::Compare>("Equal", 1, [](auto a, auto b) { return a == b; });
  reg_binary<kNumeric, BinKind::Compare>("Less", 1, [](auto a, auto b) { return a < b; });
  reg_binary<kNumeric, BinKind::Compare>("Greater", 1, [](auto a, auto b) { return a > b; });
  reg_binary<kNumeric, BinKind::Compare>("LessOrEqual", 12, [](auto a, auto b) { return a <= b; });
  reg_binary<kNumeric, BinKind::Compare>("GreaterOrEqual", 12, [](auto a, auto b) { return a >= b; });
  reg_binary<kBool, BinKind::Compare>("And", 1, [](auto a, auto b) { return a && b; });
  reg_binary<kBool, BinKind::Compare>("Or", 1, [](auto a, auto b) { return a || b; });
  reg_binary<kBool, BinKind::Compare>("Xor", 1, [](auto a, auto b) { return a != b; });

  reg_variadic("Sum", 1, false, [](auto a, auto b) { return a + b; });
  reg_variadic("Mean", 1, true, [](auto a, auto b) { return a + b; });
  reg_variadic("Max", 1, false, [](auto a, auto b) { return (a != a || b != b) ? a + b : std::max(a, b); });
  reg_variadic("Min", 1, false, [](auto a, auto b) { return (a != a || b != b) ? a + b : std::min(a, b); });

  reg_where();
  reg_clip();
  reg_prelu();
  reg_predicates();
  reg_windows();
}

}  // namespace slmops::runtime::ops

namespace slmops::runtime {
void register_elementwise_ops() { ops::register_elementwise_ops(); }
}  // namespace slmops::runtime
