// Helpers shared by the tensor op files (tensor.cpp, tensor_layout.cpp, tensor_cast.cpp).
#pragma once
#include <optional>
#include <type_traits>
#include <vector>

#include "runtime/ops/common.h"

namespace slmops::runtime::ops {

template <typename T>
constexpr bool is_16bit_float_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// One value of type From as type To: 16-bit floats go through float, bool is "non-zero".
template <typename To, typename From>
To cast_value(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (is_16bit_float_v<From>) return cast_value<To>(to_f32(v));
  else if constexpr (is_16bit_float_v<To>) return from_f32<To>(static_cast<float>(v));
  else if constexpr (std::is_same_v<To, bool>) return v != From(0);
  else return static_cast<To>(v);
}

// An integer list that older opsets give as attribute `attr` and newer ones as input
// `input` (per `from_input`); nullopt when the node does not give it.
inline std::optional<std::vector<int64_t>> int_list(const ir::Node& n, const OpContext& ctx, bool from_input,
                                                    size_t input, const char* attr) {
  if (from_input) {
    if (!ctx.has_input(input)) return std::nullopt;
    return to_int64s(ctx.in(input));
  }
  if (const ir::Attribute* a = n.attr(attr)) return a->ints;
  return std::nullopt;
}

// The op families of the tensor ops, registered by register_tensor_ops().
void register_tensor_layout_ops();  // tensor_layout.cpp: Transpose, Concat, Split, Slice, ...
void register_tensor_cast_ops();    // tensor_cast.cpp: Cast, CastLike

}  // namespace slmops::runtime::ops
