// ONNX test data: TensorProto / SequenceProto / OptionalProto files (`input_0.pb`, ...)
// as found in ONNX's test_data_set_N folders.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace slmops::formats {

struct DataValue {
  enum class Kind { Tensor, Sequence, None } kind = Kind::Tensor;
  bool optional = false;  // read as an OptionalProto
  std::string name;
  ir::Tensor tensor;
  std::vector<ir::Tensor> sequence;
};

// `container` is the declared type's container ("", "sequence", "optional",
// "optional(sequence)") and tells which message the file holds. Throws Error(BadInput) naming
// the file when it does not parse.
DataValue load_data_value(const std::filesystem::path& path, const std::string& container);
ir::Tensor load_tensor_pb(const std::filesystem::path& path);
void save_tensor_pb(const ir::Tensor& t, const std::filesystem::path& path);

}  // namespace slmops::formats
