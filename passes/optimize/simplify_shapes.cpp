// simplify-shapes: shape arithmetic on dims that are known becomes constants.
//
//   Before: x [1,16,64] -> Shape -> s;  Gather(s, 2) -> d;  Unsqueeze(d) -> u;  Concat(..., u)
//   After:  u = initializer [64];  Concat(..., u)            (then fold-constants goes on)
// Shape inference (libonnx, formats/shape_infer) runs first, after --input-shape NAME=DIMS
// fixed the declared dims of graph inputs (onnxsim's --overwrite-input-shape). Then a Shape
// node whose selected dims are all known, a Size node of a fully known shape, and a Gather
// or Slice that reads only known dims of a Shape become initializers. Dims that stay symbolic
// stay computed at run time.
#include <algorithm>
#include <map>

#include "formats/shape_infer.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "ir/size.h"
#include "passes/optimize/optimize.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"

namespace slmops::passes {
namespace {

ir::Tensor int64_tensor(const std::vector<int64_t>& values, std::vector<int64_t> dims) {
  return ir::Tensor::from_values("", ir::DType::Int64, std::move(dims), values);
}

// Clamps a Shape/Slice bound the way ONNX does: negative counts from the end, then [0, n].
int64_t clamp_bound(int64_t b, int64_t n) {
  if (b < 0) b += n;
  return std::clamp<int64_t>(b, 0, n);
}

// The dims a Shape node reads (-1: not a number), or nothing when its input's rank is unknown.
std::optional<std::vector<int64_t>> shape_values(const ir::Node& n, int64_t opset) {
  auto dims = partial_shape(n.inputs.empty() ? nullptr : n.inputs[0]);
  if (!dims) return std::nullopt;
  const auto rank = static_cast<int64_t>(dims->size());
  int64_t start = 0, end = rank;
  if (opset >= 15) {
    start = clamp_bound(n.attr_int("start", 0), rank);
    end = n.attr("end") ? clamp_bound(n.attr_int("end", rank), rank) : rank;
  }
  if (end < start) end = start;
  return std::vector<int64_t>(dims->begin() + start, dims->begin() + end);
}

bool all_known(const std::vector<int64_t>& v) {
  return std::all_of(v.begin(), v.end(), [](int64_t d) { return d >= 0; });
}

// What a node's output 0 holds when it is a selection of known dims of a Shape, or nothing.
std::optional<std::pair<std::vector<int64_t>, std::vector<int64_t>>> known_selection(const ir::Node& n, int64_t opset) {
  if (n.inputs.empty() || !n.inputs[0]) return std::nullopt;
  const ir::Node* shape = producer_of(n.inputs[0], "Shape");
  if (!shape) return std::nullopt;
  auto values = shape_values(*shape, opset);
  if (!values) return std::nullopt;
  const auto len = static_cast<int64_t>(values->size());
  if (n.op_type == "Gather") {
    auto idx = n.inputs.size() > 1 ? const_ints(n.inputs[1]) : std::nullopt;
    if (!idx || n.attr_int("axis", 0) != 0) return std::nullopt;
    std::vector<int64_t> out;
    for (int64_t i : *idx) {
      if (i < -len || i >= len) return std::nullopt;
      out.push_back((*values)[i < 0 ? i + len : i]);
    }
    if (!all_known(out)) return std::nullopt;
    return std::make_pair(out, n.inputs[1]->initializer->dims);
  }
  if (n.op_type == "Slice" && opset >= 10) {
    auto starts = n.inputs.size() > 1 ? const_ints(n.inputs[1]) : std::nullopt;
    auto ends = n.inputs.size() > 2 ? const_ints(n.inputs[2]) : std::nullopt;
    if (!starts || !ends || starts->size() != 1 || ends->size() != 1) return std::nullopt;
    if (n.inputs.size() > 3 && n.inputs[3]) {
      auto axes = const_ints(n.inputs[3]);
      if (!axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1)) return std::nullopt;
    }
    int64_t step = 1;
    if (n.inputs.size() > 4 && n.inputs[4]) {
      auto steps = const_ints(n.inputs[4]);
      if (!steps || steps->size() != 1) return std::nullopt;
      step = (*steps)[0];
    }
    if (step != 1) return std::nullopt;
    const int64_t b = clamp_bound(std::max<int64_t>((*starts)[0], -len - 1), len);
    const int64_t e = clamp_bound(std::max<int64_t>((*ends)[0], -len - 1), len);
    std::vector<int64_t> out(values->begin() + b, values->begin() + std::max(b, e));
    if (!all_known(out)) return std::nullopt;
    return std::make_pair(out, std::vector<int64_t>{static_cast<int64_t>(out.size())});
  }
  return std::nullopt;
}

// The dims a Shape node reads as text, each a number or a symbolic name ("batch,128"); empty
// when one of them is neither (then it equals no other Shape for sure).
std::string dims_key(const ir::Node& shape, int64_t opset) {
  const ir::Value* x = shape.inputs.empty() ? nullptr : shape.inputs[0];
  auto values = shape_values(shape, opset);
  if (!x || !values) return {};
  const ir::TensorType& t = x->inferred.is_tensor && x->inferred.has_shape ? x->inferred : x->type;
  const auto rank = static_cast<int64_t>(t.dims.size());
  int64_t start = 0;
  if (opset >= 15) start = clamp_bound(shape.attr_int("start", 0), rank);
  std::string key;
  for (size_t i = 0; i < values->size(); ++i) {
    const ir::Dim& d = t.dims.at(start + i);
    if (!d.known() && d.param.empty()) return {};
    key += (d.known() ? std::to_string(d.value) : "$" + d.param) + ",";
  }
  return key;
}

void fold_shapes(ir::Model& m, ir::Graph& g, OptimizeStats& st) {
  const int64_t opset = m.opset("");
  // Shape nodes that read the same dims, by number or by symbolic name, give the same value:
  // the later ones read the first one's output (then their Gathers and Unsqueezes merge too).
  std::map<std::string, ir::Value*> same_dims;
  for (ir::Node* n : g.topological_order()) {
    if (n->op_type == "Shape" && ir::is_default_domain(n->domain) && n->outputs.size() == 1 && n->outputs[0] &&
        !n->outputs[0]->is_graph_output()) {
      const std::string key = dims_key(*n, opset);
      if (!key.empty()) {
        auto [it, first] = same_dims.try_emplace(key, n->outputs[0]);
        if (!first) {
          g.replace_all_uses(n->outputs[0], it->second);
          g.remove_node(n);
          ++st.shape_nodes_folded;
          continue;
        }
      }
    }
    if (!ir::is_default_domain(n->domain) || n->outputs.empty() || !n->outputs[0] || n->outputs[0]->is_graph_output() ||
        n->outputs.size() != 1)
      continue;
    std::optional<ir::Tensor> folded;
    if (n->op_type == "Shape") {
      auto values = shape_values(*n, opset);
      if (values && all_known(*values)) folded = int64_tensor(*values, {static_cast<int64_t>(values->size())});
    } else if (n->op_type == "Size") {
      if (auto dims = static_shape(n->inputs.empty() ? nullptr : n->inputs[0]))
        if (auto count = ir::checked_element_count(*dims); count && *count <= static_cast<uint64_t>(INT64_MAX))
          folded = int64_tensor({static_cast<int64_t>(*count)}, {});
    } else if (n->op_type == "Gather" || n->op_type == "Slice") {
      if (auto sel = known_selection(*n, opset)) folded = int64_tensor(sel->first, sel->second);
    }
    if (!folded) continue;
    ir::Value* out = n->outputs[0];
    g.remove_node(n);
    ir::make_initializer(g, out, std::move(*folded));
    ++st.shape_nodes_folded;
  }
}

}  // namespace

std::pair<std::string, std::vector<int64_t>> parse_input_shape(std::string_view text) {
  const auto eq = text.rfind('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size())
    bad_input("--input-shape '{}': expected NAME=D1,D2,... (for example input_ids=1,128)", text);
  std::vector<int64_t> dims;
  std::string_view rest = text.substr(eq + 1);
  while (true) {
    const auto comma = rest.find(',');
    std::string part(rest.substr(0, comma));
    char* end = nullptr;
    errno = 0;
    const long long d = std::strtoll(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0' || errno != 0)
      bad_input("--input-shape '{}': dim '{}' is not an integer", text, part);
    if (d <= 0) bad_input("--input-shape '{}': dim {} must be a positive integer", text, d);
    dims.push_back(d);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return {std::string(text.substr(0, eq)), dims};
}

namespace {

// The graph input that `spec` names, after every check against the model; with its new dims.
std::pair<ir::Value*, std::vector<int64_t>> resolve_input_shape(const ir::Model& m, const std::string& spec) {
  auto [name, dims] = parse_input_shape(spec);
  ir::Value* v = nullptr;
  std::string names;
  for (auto& vi : m.graph->inputs) {
    if (!vi.value) continue;
    if (vi.value->name == name) v = vi.value;
    names += (names.empty() ? "" : ", ") + vi.value->name;
  }
  if (!v)
    bad_input("--input-shape '{}': the model{} has no input '{}' (inputs: {})", spec,
              m.path.empty() ? "" : " " + m.path, name, names.empty() ? "none" : names);
  const ir::TensorType& t = v->type;
  if (!t.is_tensor || !t.container.empty()) bad_input("--input-shape '{}': input '{}' is not a tensor", spec, name);
  if (t.has_shape && t.dims.size() != dims.size())
    bad_input("--input-shape '{}': input '{}' has rank {}, not {}", spec, name, t.dims.size(), dims.size());
  for (size_t i = 0; i < dims.size() && t.has_shape; ++i)
    if (t.dims[i].known() && t.dims[i].value != dims[i])
      bad_input("--input-shape '{}': dim {} of input '{}' is fixed at {}", spec, i, name, t.dims[i].value);
  return {v, std::move(dims)};
}

}  // namespace

void check_input_shapes_in(const ir::Model& m, const std::vector<std::string>& specs) {
  for (const std::string& spec : specs) resolve_input_shape(m, spec);
}

int64_t fix_input_shapes(ir::Model& m, const std::vector<std::string>& specs) {
  int64_t fixed = 0;
  for (const std::string& spec : specs) {
    auto [v, dims] = resolve_input_shape(m, spec);
    ir::TensorType& t = v->type;
    t.has_shape = true;
    t.dims.clear();
    for (int64_t d : dims) t.dims.push_back({d, {}});
    ++fixed;
  }
  if (fixed) m.shapes_inferred = false;
  return fixed;
}

const OptionTable<ShapeOptions>& ShapeOptions::table() {
  static const OptionTable<ShapeOptions> t({
      {"input-shape",
       &ShapeOptions::input_shape,
       "fix a graph input's dims first, NAME=D1,D2,... (repeatable; onnxsim's --overwrite-input-shape)",
       {}},
      {"max-folded-bytes",
       &ShapeOptions::max_folded_bytes,
       "as fold-constants' option, for the folding that follows",
       {},
       false,
       {0, 1e15}},
  });
  return t;
}

OptimizeStats simplify_shapes(ir::Model& m, const ShapeOptions& o) {
  OptimizeStats st;
  st.inputs_frozen = freeze_legacy_initializer_inputs(m);
  st.inputs_fixed = fix_input_shapes(m, o.input_shape);
  formats::refresh_shapes(m);
  for_each_graph(m, [&](ir::Graph& g) { fold_shapes(m, g, st); });
  FoldOptions fo;
  fo.max_folded_bytes = o.max_folded_bytes;
  st.add(fold_constants(m, fo));
  m.shapes_inferred = false;  // the graph changed: whoever reads types next infers again
  return st;
}

PassInfo simplify_shapes_pass_info() {
  PassInfo p;
  p.name = "simplify-shapes";
  p.summary = "infer shapes (fixing dynamic input dims on request) and fold Shape/Size arithmetic on known dims";
  p.options = ShapeOptions::table().specs();
  p.check = [](const nlohmann::json& j, Naming) { return check_input_shapes(j); };
  p.check_model = [](const ir::Model& m, const nlohmann::json& j) {
    if (j.contains("input-shape")) check_input_shapes_in(m, j["input-shape"].get<std::vector<std::string>>());
  };
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    ctx.report = stats_json(simplify_shapes(m, ShapeOptions::table().from_json(j)));
  };
  return p;
}

}  // namespace slmops::passes
