// Opset upgrades a pass needs before it writes newer ops (per-axis DequantizeLinear needs 13,
// 16-bit and blocked QDQ need 21).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "ir/graph.h"

namespace slmops::passes {

// Makes sure the model imports `domain` at `version` or later. For the default domain this
// upgrades the graph where opset semantics changed (Reduce* axes attribute -> input at 18,
// Split num_outputs at 18, GridSample modes at 20); a default opset older than 13 is refused
// with a message that says what the upgrade was for (`purpose`, e.g. "quantizing").
void require_opset(ir::Model& m, const std::string& domain, int64_t version, std::string_view purpose = "quantizing");

}  // namespace slmops::passes
