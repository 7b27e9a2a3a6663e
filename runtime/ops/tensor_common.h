// Helpers shared by the tensor op files (tensor.cpp, tensor_layout.cpp, tensor_cast.cpp).
#pragma once
#include <optional>
#include <vector>

#include "runtime/ops/common.h"

namespace slmops::runtime::ops {

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
