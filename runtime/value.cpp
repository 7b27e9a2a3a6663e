#include "runtime/value.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace slmops::runtime {

Tensor new_tensor(DType dtype, const std::vector<int64_t>& shape) {
  Tensor t;
  t.dtype = dtype;
  t.dtype_code = static_cast<int32_t>(dtype);
  t.dims = shape;
  if (dtype == DType::String) t.strings.resize(t.numel());
  else t.data = Buffer::allocate(t.nbytes());
  return t;
}

Tensor new_zero_tensor(DType dtype, const std::vector<int64_t>& shape) {
  Tensor t = new_tensor(dtype, shape);
  if (dtype != DType::String) t.data = Buffer::allocate(t.nbytes(), true);
  return t;
}

std::string describe(const Tensor& t) { return fmt::format("{}[{}]", ir::dtype_name(t.dtype), fmt::join(t.dims, ", ")); }

}  // namespace slmops::runtime
