// The ir-version pass: rewrites the model's IR version (ModelProto.ir_version) for runtimes that
// refuse newer files, after checking that nothing in the model needs a newer one.
#include <fmt/format.h>

#include "ir/edit.h"
#include "ir/error.h"
#include "passes/convert/versions.h"
#include "passes/registry.h"

namespace slmops::passes {

namespace {

struct IrVersionOptions {
  int64_t version = 8;
  static const OptionTable<IrVersionOptions>& table() {
    static const OptionTable<IrVersionOptions> t({
        {"version",
         &IrVersionOptions::version,
         "the IR version to write (4 to 11; ONNX 1.4 wrote 4, 1.10-1.13 wrote 8, 1.16 wrote 10)",
         {},
         false,
         {4, 11}},
    });
    return t;
  }
};

// The IR version that introduced an element type: float8 in 9, 4-bit integers in 10, float4 in 11.
int64_t ir_for_dtype(ir::DType t) {
  switch (t) {
    case ir::DType::Float8E4M3FN:
    case ir::DType::Float8E4M3FNUZ:
    case ir::DType::Float8E5M2:
    case ir::DType::Float8E5M2FNUZ:
      return 9;
    case ir::DType::UInt4:
    case ir::DType::Int4:
      return 10;
    case ir::DType::Float4E2M1:
      return 11;
    default:
      return 3;
  }
}

// The newest thing in the model that `version` would be too old for, as text; "" when none.
std::string needs_newer(const ir::Model& m, int64_t version) {
  for (const auto& o : m.opsets)
    if (ir::is_default_domain(o.domain) && ir_for_opset(o.version) > version)
      return fmt::format("its default opset {} came with IR version {}", o.version, ir_for_opset(o.version));
  std::string found;
  ir::walk_graphs(*m.graph, [&](const ir::Graph& g) {
    auto check = [&](const ir::Value* v, ir::DType t) {
      if (found.empty() && ir_for_dtype(t) > version)
        found = fmt::format("'{}' is {}, a type of IR version {}", v->name, ir::dtype_name(t), ir_for_dtype(t));
    };
    for (const ir::Value* v : g.initializers) check(v, v->initializer ? v->initializer->dtype : ir::DType::Undefined);
    for (const auto* list : {&g.inputs, &g.outputs, &g.value_info})
      for (const auto& vi : *list)
        if (vi.value) check(vi.value, vi.value->type.elem());
  });
  return found;
}

}  // namespace

PassInfo ir_version_pass_info() {
  PassInfo p;
  p.name = "ir-version";
  p.summary = "write another IR version, for runtimes that refuse newer files (checked against the opsets and types)";
  p.options = IrVersionOptions::table().specs();
  p.check_model = [](const ir::Model& m, const nlohmann::json& j) {
    if (!j.contains("version")) return;
    const int64_t v = j["version"].get<int64_t>();
    if (std::string why = needs_newer(m, v); !why.empty())
      bad_input("--ir-version {}: the model{} needs a newer one: {}", v, m.path.empty() ? "" : " " + m.path, why);
  };
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    const int64_t v = IrVersionOptions::table().from_json(j).version;
    if (std::string why = needs_newer(m, v); !why.empty())
      bad_input("--ir-version {}: the model{} needs a newer one: {}", v, m.path.empty() ? "" : " " + m.path, why);
    ctx.report = {{"ir_version_before", m.ir_version}, {"ir_version_after", v}};
    m.ir_version = v;
  };
  return p;
}

}  // namespace slmops::passes
