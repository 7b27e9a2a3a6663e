// libonnx's version converter plus checked down-adapters for the opset 14-17 changes it has
// none for (formats-internal: callers outside formats/ use formats::convert_opset).
#pragma once
#include <onnx/onnx_pb.h>

#include <cstdint>

namespace slmops::formats {

// `mp` converted to default-domain opset `target`; throws std::exception (libonnx's assertion
// text, or "failed: node 'X' (Op) has no form in opset N ...") when a node cannot be.
onnx::ModelProto convert_version(const onnx::ModelProto& mp, int64_t target);

}  // namespace slmops::formats
