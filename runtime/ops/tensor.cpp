// Tensor ops: constants and generators (Constant, ConstantOfShape, Range, EyeLike), ops
// that only change the shape and share the input's buffer (Identity, Reshape, Flatten,
// Squeeze, Unsqueeze, inference Dropout), Shape, Size and Shrink. The ops that move data
// between layouts are in tensor_layout.cpp, Cast in tensor_cast.cpp.
#include <algorithm>
#include <random>

#include <fmt/ranges.h>

#include "runtime/ops/tensor_common.h"
#include "runtime/ops/tensor_copy.h"

namespace slmops::runtime::ops {
namespace {

Tensor int64_tensor(std::vector<int64_t> dims, const std::vector<int64_t>& values) {
  return Tensor::from_values("", DType::Int64, std::move(dims), values);
}

Tensor string_tensor(std::vector<int64_t> dims, std::vector<std::string> strings) {
  Tensor t = new_tensor(DType::String, dims);
  t.strings = std::move(strings);
  return t;
}

DType dtype_attr(const ir::Attribute& a) {
  if (!ir::is_known_dtype(static_cast<int32_t>(a.i))) bad_input("{} {} is not a known type code", a.name, a.i);
  return static_cast<DType>(a.i);
}

// A kernel that outputs a tensor fixed at plan time.
struct FixedKernel : Kernel {
  explicit FixedKernel(Tensor t) : value(std::move(t)) {}
  void run(OpContext& ctx) override { ctx.set_out(0, value); }
  Tensor value;
};

// ---- Constant / ConstantOfShape / Range / EyeLike ------------------------------------------

// Constant's value: a tensor (value) or a scalar / 1-D list of floats, ints or strings.
Tensor constant_value(const ir::Node& n) {
  for (const ir::Attribute& a : n.attributes) {
    auto length = [](const auto& list) { return static_cast<int64_t>(list.size()); };
    if (a.name == "value") {
      if (!a.t || !a.t->has_data()) bad_input("attribute value has no data");
      return *a.t;
    }
    if (a.name == "value_float") return Tensor::from_values<float>("", DType::Float, {}, {a.f});
    if (a.name == "value_floats") return Tensor::from_values("", DType::Float, {length(a.floats)}, a.floats);
    if (a.name == "value_int") return int64_tensor({}, {a.i});
    if (a.name == "value_ints") return int64_tensor({length(a.ints)}, a.ints);
    if (a.name == "value_string") return string_tensor({}, {a.s});
    if (a.name == "value_strings") return string_tensor({length(a.strings)}, a.strings);
    if (a.name == "sparse_value") bad_input("attribute sparse_value is not supported");
  }
  bad_input("Constant has no value attribute");
}

void reg_constants() {
  register_kernel("", "Constant", 1, [](const ir::Node& n, const PlanContext&) {
    return std::make_unique<FixedKernel>(constant_value(n));
  });

  register_kernel("", "ConstantOfShape", 9, [](const ir::Node& n, const PlanContext&) {
    struct K : Kernel {
      Tensor value;  // one element
      void run(OpContext& ctx) override {
        const auto dims = to_int64s(ctx.in(0));
        for (int64_t d : dims)
          if (d < 0) bad_input("shape [{}] has a negative dimension", fmt::join(dims, ", "));
        fill_with(ctx.set_out(0, new_tensor(value.dtype, dims)), value, ctx.pool);
      }
    };
    auto k = std::make_unique<K>();
    const ir::Attribute* a = n.attr("value");
    k->value = a && a->t ? *a->t : Tensor::from_values<float>("", DType::Float, {}, {0.0f});
    if (k->value.numel() != 1) bad_input("attribute value must have one element, not {}", describe(k->value));
    return k;
  });

  // Range: max(ceil((limit - start) / delta), 0) elements start + i·delta.
  register_kernel("", "Range", 11, simple_kernel([](const ir::Node&, OpContext& ctx) {
    const DType dt = ctx.in(0).dtype;
    if (ctx.in(1).dtype != dt || ctx.in(2).dtype != dt)
      bad_input("start, limit and delta have different types ({}, {}, {})", describe(ctx.in(0)), describe(ctx.in(1)),
                describe(ctx.in(2)));
    for (size_t i = 0; i < 3; ++i)
      if (ctx.in(i).numel() != 1) bad_input("input {} is {}, not a scalar", i, describe(ctx.in(i)));
    dispatch<kFloats | kSigned>(dt, "Range", [&](auto tag) {
      using T = decltype(tag);
      const T start = ctx.in(0).values<T>()[0], limit = ctx.in(1).values<T>()[0], delta = ctx.in(2).values<T>()[0];
      if (delta == T(0)) bad_input("delta must not be 0");
      int64_t count;
      if constexpr (std::is_integral_v<T>) {
        const int64_t span = static_cast<int64_t>(limit) - start, step = delta;
        count = (span + step - (step > 0 ? 1 : -1)) / step;  // ceil(span / step)
      } else {
        count = static_cast<int64_t>(std::ceil((static_cast<double>(limit) - start) / delta));
      }
      T* out = ctx.set_out(0, new_tensor(dt, {std::max<int64_t>(count, 0)})).template mutable_values<T>();
      for (int64_t i = 0; i < count; ++i) out[i] = static_cast<T>(start + static_cast<T>(i) * delta);
    });
  }));

  // EyeLike: zeros of the input's shape (and type, unless dtype says) with ones on the
  // diagonal k: y[i, i + k] = 1.
  register_kernel("", "EyeLike", 9, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    if (x.dims.size() != 2) bad_input("input is {}, not 2-D", describe(x));
    const DType dt = n.attr("dtype") ? dtype_attr(*n.attr("dtype")) : x.dtype;
    const int64_t k = n.attr_int("k", 0), rows = x.dims[0], cols = x.dims[1];
    Tensor& y = ctx.set_out(0, new_zero_tensor(dt, x.dims));
    dispatch(dt, "EyeLike", [&](auto tag) {
      using T = decltype(tag);
      T* out = y.mutable_values<T>();
      for (int64_t i = std::max<int64_t>(0, -k); i < rows && i + k < cols; ++i) out[i * cols + i + k] = cast_value<T>(1);
    });
  }));
}

// ---- Identity / Dropout --------------------------------------------------------------------

// numpy's legacy random_sample(): a double in [0, 1) from two Mersenne Twister outputs,
// (a·2^26 + b) / 2^53 with a, b their top 27 and 26 bits.
double uniform53(std::mt19937& gen) {
  const uint32_t a = gen() >> 5, b = gen() >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

// Inference returns the input (and a mask of ones). Training keeps each element with
// probability 1 - ratio and scales it: y = x · keep / (1 - ratio). The keep mask follows
// ONNX's reference, np.random.seed(seed); keep = np.random.uniform(0, 1, x.shape) >= ratio,
// so seeded runs reproduce its outputs; without a seed the stream is random. `mask_type`
// is the mask's type in inference (training exists from opset 12 on, with a bool mask).
void dropout(const ir::Node& n, OpContext& ctx, double ratio, bool training, DType mask_type) {
  const Tensor& x = ctx.in(0);
  const bool want_mask = ctx.output_count() > 1;
  if (!training || ratio == 0) {
    ctx.set_out(0, x);
    if (want_mask) fill_with(ctx.set_out(1, new_tensor(mask_type, x.dims)), tensor_from_doubles(mask_type, {}, {1}), ctx.pool);
    return;
  }
  if (ratio < 0 || ratio >= 1) bad_input("ratio {} is not in [0, 1)", ratio);
  const int64_t count = static_cast<int64_t>(x.numel());
  Tensor keep = new_tensor(DType::Bool, x.dims);
  bool* k = keep.mutable_values<bool>();
  std::mt19937 gen(n.attr("seed") ? static_cast<uint32_t>(n.attr_int("seed", 0)) : std::random_device{}());
  for (int64_t i = 0; i < count; ++i) k[i] = uniform53(gen) >= ratio;
  const double scale = 1 / (1 - ratio);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kFloats | kHalfs>(x.dtype, "Dropout", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    for (int64_t i = 0; i < count; ++i) out[i] = k[i] ? cast_value<T>(cast_value<double>(in[i]) * scale) : T{};
  });
  if (want_mask) ctx.set_out(1, std::move(keep));
}

void reg_identity_dropout() {
  // Identity passes any value through: tensor, sequence or optional.
  register_kernel("", "Identity", 1, simple_kernel([](const ir::Node&, OpContext& ctx) {
    if (ctx.input_count() < 1 || !ctx.inputs[0]) bad_input("input 0 is missing");
    (*ctx.outputs)[0] = *ctx.inputs[0];
  }));
  // Before opset 12, ratio is an attribute and Dropout runs as in inference (the training
  // mode of Dropout-1/6, is_test = 0, is not supported); the mask has the input's type
  // before opset 10, bool after.
  for (int since : {1, 10})
    register_kernel("", "Dropout", since, simple_kernel([since](const ir::Node& n, OpContext& ctx) {
      dropout(n, ctx, n.attr_float("ratio", 0.5f), false, since >= 10 ? DType::Bool : ctx.in(0).dtype);
    }));
  // Dropout-12: ratio and training_mode are optional inputs.
  register_kernel("", "Dropout", 12, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const double ratio = ctx.has_input(1) ? scalar_as_double(ctx.in(1)) : 0.5;
    const bool training = ctx.has_input(2) && scalar_as_double(ctx.in(2)) != 0;
    dropout(n, ctx, ratio, training, DType::Bool);
  }));
}

// ---- Shape-only ops ------------------------------------------------------------------------

// Reshape's target: 0 copies the input's dimension (unless allowzero), one -1 takes what
// is left so that the element count stays the same.
std::vector<int64_t> reshape_dims(const Tensor& x, std::vector<int64_t> shape, bool allowzero) {
  int64_t inferred = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allowzero) {
      if (i >= x.dims.size()) bad_input("shape [{}] copies dimension {} of {}", fmt::join(shape, ", "), i, describe(x));
      shape[i] = x.dims[i];
    } else if (shape[i] == -1) {
      if (inferred >= 0) bad_input("shape [{}] has more than one -1", fmt::join(shape, ", "));
      inferred = static_cast<int64_t>(i);
      continue;
    } else if (shape[i] < 0) {
      bad_input("shape [{}] has a negative dimension", fmt::join(shape, ", "));
    }
    if (__builtin_mul_overflow(known, shape[i], &known))  // would wrap to a count that "fits"
      bad_input("shape [{}] has more elements than fit in 64 bits", fmt::join(shape, ", "));
  }
  const int64_t count = static_cast<int64_t>(x.numel());
  if (inferred >= 0) {
    if (known == 0 || count % known != 0) bad_input("cannot reshape {} to [{}]", describe(x), fmt::join(shape, ", "));
    shape[inferred] = count / known;
  } else if (known != count) {
    bad_input("cannot reshape {} to [{}]", describe(x), fmt::join(shape, ", "));
  }
  return shape;
}

void reg_reshapes() {
  // Reshape-1 takes the shape as an attribute, Reshape-5 as input 1; allowzero is opset 14.
  for (int since : {1, 5})
    register_kernel("", "Reshape", since, simple_kernel([since](const ir::Node& n, OpContext& ctx) {
      const Tensor& x = ctx.in(0);
      const auto shape = int_list(n, ctx, since >= 5, 1, "shape");
      if (!shape) bad_input("the target shape is missing");
      ctx.set_out(0, reshaped(x, reshape_dims(x, *shape, n.attr_int("allowzero", 0) != 0)));
    }));

  // Flatten: [d_0 · ... · d_{axis-1}, d_axis · ... · d_{rank-1}], axis in [-rank, rank].
  register_kernel("", "Flatten", 1, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const int64_t rank = static_cast<int64_t>(x.dims.size());
    int64_t axis = n.attr_int("axis", 1);
    if (axis < -rank || axis > rank) bad_input("axis {} is out of range for rank {}", axis, rank);
    if (axis < 0) axis += rank;
    ctx.set_out(0, reshaped(x, {product(x.dims, 0, axis), product(x.dims, axis)}));
  }));

  // Squeeze and Unsqueeze take axes as an attribute before opset 13, as input 1 after.
  for (int since : {1, 13}) {
    const bool from_input = since >= 13;
    // Squeeze removes the listed axes (each of length 1), or every axis of length 1.
    register_kernel("", "Squeeze", since, simple_kernel([from_input](const ir::Node& n, OpContext& ctx) {
      const Tensor& x = ctx.in(0);
      const int64_t rank = static_cast<int64_t>(x.dims.size());
      const auto axes = int_list(n, ctx, from_input, 1, "axes");
      std::vector<bool> drop(rank, false);
      if (!axes || axes->empty()) {
        for (int64_t k = 0; k < rank; ++k) drop[k] = x.dims[k] == 1;
      } else {
        for (int64_t a : *axes) {
          const int64_t k = normalize_axis(a, rank);
          if (x.dims[k] != 1) bad_input("cannot squeeze axis {} of {}: its length is not 1", a, describe(x));
          drop[k] = true;
        }
      }
      std::vector<int64_t> dims;
      for (int64_t k = 0; k < rank; ++k)
        if (!drop[k]) dims.push_back(x.dims[k]);
      ctx.set_out(0, reshaped(x, dims));
    }));
    // Unsqueeze inserts axes of length 1 at the listed positions of the output.
    register_kernel("", "Unsqueeze", since, simple_kernel([from_input](const ir::Node& n, OpContext& ctx) {
      const Tensor& x = ctx.in(0);
      const auto axes = int_list(n, ctx, from_input, 1, "axes");
      if (!axes) bad_input("axes is missing");
      const int64_t rank = static_cast<int64_t>(x.dims.size() + axes->size());
      std::vector<bool> inserted(rank, false);
      for (int64_t a : *axes) {
        const int64_t k = normalize_axis(a, rank);
        if (inserted[k]) bad_input("axes [{}] lists axis {} twice", fmt::join(*axes, ", "), k);
        inserted[k] = true;
      }
      std::vector<int64_t> dims;
      auto next = x.dims.begin();
      for (int64_t k = 0; k < rank; ++k) dims.push_back(inserted[k] ? 1 : *next++);
      ctx.set_out(0, reshaped(x, dims));
    }));
  }

  // Shape: the dimensions [start, end) (opset 15; both count from the end when negative
  // and are clamped to [0, rank]).
  register_kernel("", "Shape", 1, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const auto& dims = ctx.in(0).dims;
    const int64_t rank = static_cast<int64_t>(dims.size());
    auto clamp_axis = [rank](int64_t a) { return std::clamp<int64_t>(a < 0 ? a + rank : a, 0, rank); };
    const int64_t start = clamp_axis(n.attr_int("start", 0)), end = std::max(start, clamp_axis(n.attr_int("end", rank)));
    ctx.set_out(0, int64_tensor({end - start}, std::vector<int64_t>(dims.begin() + start, dims.begin() + end)));
  }));
  register_kernel("", "Size", 1, simple_kernel([](const ir::Node&, OpContext& ctx) {
    ctx.set_out(0, int64_tensor({}, {static_cast<int64_t>(ctx.in(0).numel())}));
  }));
}

// ---- Shrink --------------------------------------------------------------------------------

// y = x + bias if x < -lambd, x - bias if x > lambd, else 0.
void reg_shrink() {
  register_kernel("", "Shrink", 9, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const double lambd = n.attr_float("lambd", 0.5f), bias = n.attr_float("bias", 0.0f);
    Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
    dispatch<kNumeric>(x.dtype, "Shrink", [&](auto tag) {
      using T = decltype(tag);
      const T* in = x.values<T>();
      T* out = y.mutable_values<T>();
      ctx.pool->parallel_for(static_cast<int64_t>(x.numel()), 1 << 14, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const double v = cast_value<double>(in[i]);
          out[i] = cast_value<T>(v < -lambd ? v + bias : v > lambd ? v - bias : 0.0);
        }
      });
    });
  }));
}

}  // namespace

void register_tensor_ops() {
  reg_constants();
  reg_identity_dropout();
  reg_reshapes();
  reg_shrink();
  register_tensor_layout_ops();
  register_tensor_cast_ops();
}

}  // namespace slmops::runtime::ops

namespace slmops::runtime {
void register_tensor_ops() { ops::register_tensor_ops(); }
}  // namespace slmops::runtime
