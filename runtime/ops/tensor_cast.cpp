// Cast and CastLike between all numeric types, bool and string.
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "runtime/ops/tensor_common.h"

namespace slmops::runtime::ops {
namespace {

// ---- number -> string (numpy's str() of a scalar) -------------------------------------------

// The shortest "d.ddde±XX" that reads back as v: to_chars for float and double; for 16-bit
// floats the fewest digits that convert back to the same bits (8 decimals always do).
template <typename T>
std::string shortest_scientific(T v) {
  char buf[64];
  if constexpr (is_16bit_float_v<T>) {
    const float f = to_f32(v);
    for (int precision = 0;; ++precision) {
      const auto end = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific, precision).ptr;
      float back = 0;
      std::from_chars(buf, end, back);
      if (from_f32<T>(back).bits == v.bits) return std::string(buf, end);
    }
  } else {
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific).ptr);
  }
}

// numpy's spelling of a float: the shortest round-trip digits, positional for
// 1e-4 <= |v| < 1e16 and zero ("0.5", "100.0"), scientific otherwise ("1e-05", "1.5e+16").
template <typename T>
std::string float_text(T v) {
  const double d = cast_value<double>(v);
  const double a = std::fabs(d);
  if (std::isnan(a)) return "nan";
  if (std::isinf(a)) return d > 0 ? "inf" : "-inf";
  const std::string sci = shortest_scientific(v);
  if (a != 0 && (a < 1e-4 || a >= 1e16)) return sci;
  // sci is [-]d[.ddd]e±XX: the digits d.ddd times 10^exponent.
  const size_t e = sci.find('e');
  const bool negative = sci[0] == '-';
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string digits;
  for (size_t i = negative; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out = negative ? "-" : "";
  if (exponent < 0) return out + "0." + std::string(-exponent - 1, '0') + digits;
  const size_t int_digits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= int_digits) return out + digits + std::string(int_digits - digits.size(), '0') + ".0";
  return out + digits.substr(0, int_digits) + "." + digits.substr(int_digits);
}

template <typename T>
std::string to_text(T v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "True" : "False";
  else if constexpr (std::is_integral_v<T>) return std::to_string(v);
  else return float_text(v);
}

// ---- string -> number ----------------------------------------------------------------------

bool equals_ignoring_case(const std::string& a, const char* b) {
  size_t i = 0;
  for (; i < a.size() && b[i]; ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  return i == a.size() && !b[i];
}

// Reads a number as C's strtod does ("1.5", "-INF", "NaN", "1e-3"); integers are read
// exactly when they are written as integers; bools also read "true"/"false".
template <typename T>
T from_text(const std::string& s) {
  if constexpr (std::is_same_v<T, bool>) {
    if (equals_ignoring_case(s, "true")) return true;
    if (equals_ignoring_case(s, "false")) return false;
  }
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    const char* begin = s.data() + (!s.empty() && s[0] == '+');
    T v{};
    const auto [end, err] = std::from_chars(begin, s.data() + s.size(), v);
    if (err == std::errc() && end == s.data() + s.size()) return v;
  }
  const char* begin = s.c_str();
  char* end = nullptr;
  const double v = std::is_same_v<T, float> ? std::strtof(begin, &end) : std::strtod(begin, &end);
  while (end && std::isspace(static_cast<unsigned char>(*end))) ++end;
  if (end == begin || *end != '\0') bad_input("cannot read \"{}\" as a number", s);
  return cast_value<T>(v);
}

// ---- Cast ----------------------------------------------------------------------------------

Tensor cast(const Tensor& x, DType to, ThreadPool* pool) {
  if (x.dtype == to) return x;
  Tensor y = new_tensor(to, x.dims);
  const int64_t n = static_cast<int64_t>(x.numel());
  if (x.dtype == DType::String) {
    dispatch(to, "Cast", [&](auto to_tag) {
      using To = decltype(to_tag);
      To* out = y.mutable_values<To>();
      for (int64_t i = 0; i < n; ++i) out[i] = from_text<To>(x.strings[i]);
    });
  } else if (to == DType::String) {
    dispatch(x.dtype, "Cast", [&](auto from_tag) {
      using From = decltype(from_tag);
      const From* in = x.values<From>();
      for (int64_t i = 0; i < n; ++i) y.strings[i] = to_text(in[i]);
    });
  } else {
    dispatch(x.dtype, "Cast", [&](auto from_tag) {
      using From = decltype(from_tag);
      dispatch(to, "Cast", [&](auto to_tag) {
        using To = decltype(to_tag);
        const From* in = x.values<From>();
        To* out = y.mutable_values<To>();
        pool->parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) out[i] = cast_value<To>(in[i]);
        });
      });
    });
  }
  return y;
}

// The target type: an int code from opset 6, the type's name ("FLOAT") in Cast-1.
DType cast_target(const ir::Node& n) {
  const ir::Attribute* a = n.attr("to");
  if (!a) bad_input("attribute to is missing");
  if (a->type == ir::AttrType::String) {
    std::string name = a->s;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto dt = ir::dtype_from_name(name)) return *dt;
    bad_input("to '{}' is not a known type", a->s);
  }
  if (!ir::is_known_dtype(static_cast<int32_t>(a->i))) bad_input("to {} is not a known type code", a->i);
  return static_cast<DType>(a->i);
}

}  // namespace

void register_tensor_cast_ops() {
  register_kernel("", "Cast", 1, [](const ir::Node& n, const PlanContext&) {
    struct K : Kernel {
      DType to;
      void run(OpContext& ctx) override { ctx.set_out(0, cast(ctx.in(0), to, ctx.pool)); }
    };
    auto k = std::make_unique<K>();
    k->to = cast_target(n);
    return k;
  });
  register_kernel("", "CastLike", 15, simple_kernel([](const ir::Node&, OpContext& ctx) {
    ctx.set_out(0, cast(ctx.in(0), ctx.in(1).dtype, ctx.pool));
  }));
}

}  // namespace slmops::runtime::ops
