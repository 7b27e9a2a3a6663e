// The opset pass: converts the model to another default-domain opset with libonnx's version
// converter (formats::convert_opset), then raises the IR version to the one the opset came
// with when it is older (a pytorch-converted IR 3 model at opset 13 becomes IR 7).
#include <algorithm>

#include "formats/onnx_io.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "passes/convert/versions.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"

namespace slmops::passes {

namespace {

struct OpsetOptions {
  int64_t version = 17;
  static const OptionTable<OpsetOptions>& table() {
    static const OptionTable<OpsetOptions> t({
        {"version",
         &OpsetOptions::version,
         "the default-domain opset to convert to (7 to 17: what Debian's libonnx 1.12 version converter knows)",
         {},
         false,
         {7, 17}},
    });
    return t;
  }
};

}  // namespace

PassInfo opset_pass_info() {
  PassInfo p;
  p.name = "opset";
  p.summary = "convert to another default-domain opset, up or down (libonnx's version converter)";
  p.options = OpsetOptions::table().specs();
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    const int64_t target = OpsetOptions::table().from_json(j).version;
    const int64_t before = m.opset("");
    const size_t nodes_before = m.graph->node_count();
    ir::Model out = formats::convert_opset(m, target);
    // Leaving IR 3, whose files must list every initializer as a graph input, the weights
    // become plain initializers (constants, as ONNX Runtime treats them), as a file of the new
    // IR version would have them.
    const int64_t frozen = ir_for_opset(target) >= 4 ? freeze_legacy_initializer_inputs(out) : 0;
    out.ir_version = std::max(out.ir_version, ir_for_opset(target));
    ctx.report = {{"opset_before", before},
                  {"opset_after", out.opset("")},
                  {"nodes_before", nodes_before},
                  {"nodes_after", out.graph->node_count()},
                  {"ir_version_after", out.ir_version},
                  {"legacy_initializer_inputs_frozen", frozen}};
    m = std::move(out);
  };
  return p;
}

}  // namespace slmops::passes
