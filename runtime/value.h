// What flows along graph edges at run time: a tensor, a sequence of tensors, or nothing
// (an empty optional).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace slmops::runtime {

using ir::Buffer;
using ir::DType;
using ir::Tensor;

struct RValue {
  enum class Kind : uint8_t { Tensor, Sequence, None } kind = Kind::None;
  Tensor tensor;
  std::vector<Tensor> sequence;
  // Set for optional-typed values (Optional/OptionalGetElement); None is an empty optional.
  bool optional = false;

  static RValue of(Tensor t) {
    RValue v;
    v.kind = Kind::Tensor;
    v.tensor = std::move(t);
    return v;
  }
  static RValue of_sequence(std::vector<Tensor> s) {
    RValue v;
    v.kind = Kind::Sequence;
    v.sequence = std::move(s);
    return v;
  }
  bool is_tensor() const { return kind == Kind::Tensor; }
};

// A new tensor of the given type and shape with uninitialized storage.
Tensor new_tensor(DType dtype, const std::vector<int64_t>& shape);
// A new tensor filled with zero bytes.
Tensor new_zero_tensor(DType dtype, const std::vector<int64_t>& shape);

// Human-readable "float[2, 3]".
std::string describe(const Tensor& t);

}  // namespace slmops::runtime
