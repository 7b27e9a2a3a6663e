// ONNX's versioning table (onnx/docs/Versioning.md): which IR version came with which
// default-domain opset. Shared by the ir-version and opset passes.
#pragma once
#include <cstdint>

namespace slmops::passes {

// The IR version of the ONNX release that introduced default-domain opset `opset`: a runtime
// of an older IR version cannot know the opset.
inline int64_t ir_for_opset(int64_t opset) {
  if (opset <= 8) return 3;
  if (opset == 9) return 4;
  if (opset == 10) return 5;
  if (opset == 11) return 6;
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

}  // namespace slmops::passes
