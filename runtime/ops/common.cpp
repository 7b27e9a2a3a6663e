#include "runtime/ops/common.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace slmops::runtime::ops {

std::vector<int64_t> broadcast_shapes(const std::vector<std::vector<int64_t>>& shapes) {
  size_t rank = 0;
  for (auto& s : shapes) rank = std::max(rank, s.size());
  std::vector<int64_t> out(rank, 1);
  for (auto& s : shapes) {
    size_t off = rank - s.size();
    for (size_t i = 0; i < s.size(); ++i) {
      int64_t d = s[i];
      int64_t& o = out[off + i];
      if (d == o || d == 1) continue;
      if (o == 1) {
        o = d;
        continue;
      }
      std::vector<std::string> all;
      for (auto& t : shapes) all.push_back(fmt::format("[{}]", fmt::join(t, ", ")));
      bad_input("shapes {} do not broadcast", fmt::join(all, " and "));
    }
  }
  return out;
}

std::vector<int64_t> strides_of(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& out) {
  std::vector<int64_t> st(out.size(), 0);
  auto own = strides_of(shape);
  size_t off = out.size() - shape.size();
  for (size_t i = 0; i < shape.size(); ++i) st[off + i] = shape[i] == 1 ? 0 : own[i];
  return st;
}

std::vector<int64_t> to_int64s(const Tensor& t) {
  std::vector<int64_t> v(t.numel());
  dispatch<kSigned | kUnsigned | kBool>(t.dtype, "integer input", [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.values<T>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(p[i]);
  });
  return v;
}

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> v(t.numel());
  dispatch(t.dtype, "numeric input", [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.values<T>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(to_f32(p[i]));
    if constexpr (std::is_same_v<T, double> || std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t> ||
                  std::is_same_v<T, int32_t> || std::is_same_v<T, uint32_t>)
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(p[i]);
  });
  return v;
}

double scalar_as_double(const Tensor& t) {
  if (t.numel() < 1) bad_input("expected a scalar, got an empty tensor");
  auto v = to_doubles(t);
  return v[0];
}

int64_t normalize_axis(int64_t axis, int64_t rank, const char* what) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) bad_input("{} {} is out of range for rank {}", what, axis, rank);
  return axis < 0 ? axis + rank : axis;
}

Tensor to_float_tensor(const Tensor& t) {
  if (t.dtype == DType::Float) return t;
  Tensor f = new_tensor(DType::Float, t.dims);
  float* out = f.mutable_values<float>();
  const int64_t n = static_cast<int64_t>(t.numel());
  dispatch<kNumeric>(t.dtype, "float conversion", [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.values<T>();
    for (int64_t i = 0; i < n; ++i) out[i] = to_f32(p[i]);
  });
  return f;
}

Tensor from_float_tensor(const Tensor& f, DType dt) {
  if (dt == DType::Float) return f;
  Tensor t = new_tensor(dt, f.dims);
  const float* in = f.values<float>();
  const int64_t n = static_cast<int64_t>(f.numel());
  dispatch<kNumeric>(dt, "float conversion", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.mutable_values<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = from_f32<T>(in[i]);
  });
  return t;
}

Tensor tensor_from_doubles(DType dt, const std::vector<int64_t>& shape, const std::vector<double>& v) {
  Tensor t = new_tensor(dt, shape);
  dispatch(dt, "tensor", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.mutable_values<T>();
    for (size_t i = 0; i < v.size(); ++i) {
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) p[i] = from_f32<T>(static_cast<float>(v[i]));
      else p[i] = static_cast<T>(v[i]);
    }
  });
  return t;
}

Tensor reshaped(const Tensor& t, std::vector<int64_t> shape) {
  Tensor r;
  r.dtype = t.dtype;
  r.dtype_code = t.dtype_code;
  r.dims = std::move(shape);
  r.data = t.data;
  r.strings = t.strings;
  return r;
}

}  // namespace slmops::runtime::ops
