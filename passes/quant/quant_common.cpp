// What every quantize mode shares: the report, the float-weight check and the
// already-quantized check.
#include <algorithm>
#include <functional>
#include <set>

#include "ir/error.h"
#include "passes/quant/quantize.h"

namespace slmops::passes::quant {

nlohmann::json QuantReport::to_json() const {
  nlohmann::json j = extra;
  nlohmann::json arr = nlohmann::json::array();
  int64_t quantized = 0, before = 0, after = 0;
  for (auto& n : nodes) {
    arr.push_back({{"node", n.node}, {"op_type", n.op_type}, {"how", n.how}, {"bytes_before", n.bytes_before},
                   {"bytes_after", n.bytes_after}});
    if (n.how.rfind("skipped", 0) != 0 && n.how.rfind("kept", 0) != 0) ++quantized;
    before += n.bytes_before;
    after += n.bytes_after;
  }
  j["nodes_quantized"] = quantized;
  j["weight_bytes_before"] = before;
  j["weight_bytes_after"] = after;
  j["nodes"] = std::move(arr);
  return j;
}

const ir::Tensor* float_initializer(const ir::Graph& g, const ir::Value* v) {
  if (!v || v->kind != ir::Value::Kind::Initializer || v->graph != &g || !v->initializer) return nullptr;
  for (auto& i : g.inputs)
    if (i.value == v) return nullptr;  // callers may feed another value at run time
  const ir::Tensor& t = *v->initializer;
  if (t.dtype != ir::DType::Float || !t.has_data() || t.data.size() != t.nbytes()) return nullptr;
  return &t;
}

void release_file_pages(const ir::Tensor& t) { t.data.release_resident_pages(); }

void refuse_quantized(const ir::Model& m) {
  static const std::set<std::string> quantized_ops = {
      "QuantizeLinear",  "DequantizeLinear",      "DynamicQuantizeLinear", "MatMulInteger",
      "ConvInteger",     "QLinearMatMul",         "QLinearConv",           "MatMulNBits",
      "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",            "QAttention",
      "GatherBlockQuantized",  "DynamicQuantizeLSTM", "QLinearAdd",        "QLinearMul"};
  ir::walk_graphs(*m.graph, [&](const ir::Graph& g) {
    for (auto& n : g.nodes())
      if (quantized_ops.count(n->op_type) || n->op_type.rfind("QLinear", 0) == 0)
        bad_input("{}: the model is already quantized (node '{}' is {}); quantize the float model instead",
                  m.path.empty() ? "model" : m.path, n->name, n->op_type);
  });
}

}  // namespace slmops::passes::quant
