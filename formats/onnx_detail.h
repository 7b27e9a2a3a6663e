// Internal to formats/: conversions between onnx::TensorProto and ir::Tensor shared by the
// model IO and the test-data (.pb) reader. Not for use outside formats/.
#pragma once
#include <onnx/onnx_pb.h>

#include <string>

#include "ir/tensor.h"

namespace slmops::formats::detail {

// Decodes a tensor with inline data (raw or typed fields). `what` names it in errors;
// external data is refused (test data never uses it).
ir::Tensor tensor_from_proto(onnx::TensorProto& p, const std::string& what);
// Encodes as raw_data (strings as string_data).
void tensor_to_proto(const ir::Tensor& t, onnx::TensorProto& p);

}  // namespace slmops::formats::detail
