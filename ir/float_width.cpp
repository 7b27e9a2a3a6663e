#include "ir/float_width.h"

#include <cstring>
#include <vector>

namespace slmops::ir {

Tensor to_float_width(const Tensor& t, DType want) {
  if (t.dtype != DType::Float || (want != DType::Float16 && want != DType::BFloat16)) return t;
  std::vector<uint16_t> low(t.numel());
  for (size_t i = 0; i < low.size(); ++i) {
    float x;
    std::memcpy(&x, t.data.data() + i * sizeof(float), sizeof(float));
    low[i] = want == DType::Float16 ? float_to_half(x) : float_to_bfloat16(x);
  }
  return Tensor::from_values(t.name, want, t.dims, low);
}

}  // namespace slmops::ir
