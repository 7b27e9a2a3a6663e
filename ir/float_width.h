// Float data in a 16-bit float type: the one conversion that evaluation data, test-data
// writers and tests share (the to-float16 pass has its own, with ORT's clamping).
#pragma once
#include "ir/tensor.h"

namespace slmops::ir {

// `t` with its float values in `want` (Float16 or BFloat16, round to nearest even); `t`
// itself when it is not float or `want` is no 16-bit float type. Reads any alignment.
Tensor to_float_width(const Tensor& t, DType want);

}  // namespace slmops::ir
