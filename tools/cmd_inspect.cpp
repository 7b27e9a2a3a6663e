// slmops inspect MODEL [--json] [--values]: versions, interface, op histogram, parameters,
// storage, and the inferred dtype and shape of every value (formats/shape_infer.h).
// slmops inspect CHECKPOINT [--json]: a Hugging Face checkpoint folder (or .safetensors file):
// its architecture from config.json, tensors, parameters and bytes by dtype, files.
#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <unordered_set>

#include "formats/file_util.h"
#include "formats/safetensors.h"
#include "formats/shape_infer.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "ir/size.h"
#include "tools/cli.h"

namespace slmops::cli {
namespace {

std::string shape_text(const ir::TensorType& t) {
  if (!t.is_tensor) return "?";
  if (!t.has_shape) return "[?]";
  std::string s = "[";
  for (size_t i = 0; i < t.dims.size(); ++i) {
    if (i) s += ", ";
    const auto& d = t.dims[i];
    s += d.known() ? std::to_string(d.value) : (d.param.empty() ? "?" : d.param);
  }
  return s + "]";
}

nlohmann::json dims_json(const ir::TensorType& t) {
  nlohmann::json a = nlohmann::json::array();
  for (auto& d : t.dims) {
    if (d.known()) a.push_back(d.value);
    else if (!d.param.empty()) a.push_back(d.param);
    else a.push_back(nullptr);
  }
  return a;
}

std::string dtype_text(int32_t code) {
  return ir::is_known_dtype(code) ? std::string(ir::dtype_name(static_cast<ir::DType>(code)))
                                  : fmt::format("type{}", code);
}

using ir::human_bytes;

// One row per value of `g` and of the graphs nested in it, in the order a reader meets them:
// graph inputs, initializers, node outputs (stored order), graph outputs not yet listed.
// `scope` is empty for the main graph, else the path of node names down to the subgraph.
struct ValueRow {
  const ir::Value* value;
  const char* kind;
  bool graph_output;
  std::string scope;
};

void collect_values(const ir::Graph& g, const std::string& scope, std::vector<ValueRow>& rows) {
  std::unordered_set<const ir::Value*> seen;
  auto add = [&](const ir::Value* v, const char* kind) {
    if (v && seen.insert(v).second) rows.push_back({v, kind, v->is_graph_output(), scope});
  };
  for (auto& vi : g.inputs)
    if (vi.value && !vi.value->initializer) add(vi.value, "input");
  for (const ir::Value* v : g.initializers) add(v, "initializer");
  for (auto& n : g.nodes()) {
    for (const ir::Value* v : n->outputs) add(v, "node_output");
    for (auto& a : n->attributes) {
      std::string inner = (scope.empty() ? "" : scope + "/") + (n->name.empty() ? n->op_type : n->name);
      if (a.g) collect_values(*a.g, inner + "." + a.name, rows);
      for (size_t k = 0; k < a.graphs.size(); ++k)
        collect_values(*a.graphs[k], fmt::format("{}.{}[{}]", inner, a.name, k), rows);
    }
  }
  for (auto& vi : g.outputs) add(vi.value, "output");
}

std::string inferred_dtype(const ir::TensorType& t) { return t.is_tensor ? dtype_text(t.elem_code) : "?"; }

bool is_checkpoint(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return true;
  return std::filesystem::path(path).extension() == ".safetensors";
}

void inspect_checkpoint(const std::string& path, bool json, int top) {
  const formats::Checkpoint c = formats::load_checkpoint(path);
  nlohmann::json j;
  j["checkpoint"] = path;
  std::map<std::string, uint64_t> bytes, params;
  uint64_t total_params = 0;
  for (const auto& [name, t] : c.tensors) {
    const std::string dt(ir::dtype_name(t.dtype));
    bytes[dt] += t.data.size();
    params[dt] += t.numel();
    total_params += t.numel();
  }
  std::set<std::string> files;
  for (const auto& [name, f] : c.file_of) files.insert(f);
  j["files"] = files;
  j["tensors"] = c.tensors.size();
  j["parameters"] = total_params;
  j["bytes"] = c.data_bytes();
  j["bytes_by_dtype"] = bytes;
  j["parameters_by_dtype"] = params;
  j["metadata"] = c.metadata;
  std::error_code ec;
  const std::filesystem::path dir =
      std::filesystem::is_directory(path, ec) ? std::filesystem::path(path) : std::filesystem::path(path).parent_path();
  const std::filesystem::path config = dir / "config.json";
  if (formats::path_exists(config)) {
    nlohmann::json cfg = nlohmann::json::parse(formats::read_text_file(config), nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) bad_input("{}: not valid JSON", config.string());
    nlohmann::json keep = nlohmann::json::object();
    for (const char* k :
         {"architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
          "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "rope_theta", "rope_scaling",
          "tie_word_embeddings", "torch_dtype"})
      if (cfg.contains(k)) keep[k] = cfg[k];
    j["config"] = keep;
  }
  std::vector<const ir::Tensor*> largest;
  for (const auto& [name, t] : c.tensors) largest.push_back(&t);
  std::sort(largest.begin(), largest.end(), [](const ir::Tensor* a, const ir::Tensor* b) {
    return a->data.size() != b->data.size() ? a->data.size() > b->data.size() : a->name < b->name;
  });
  if (static_cast<int>(largest.size()) > top) largest.resize(static_cast<size_t>(top));
  j["largest_tensors"] = nlohmann::json::array();
  for (const ir::Tensor* t : largest)
    j["largest_tensors"].push_back(
        {{"name", t->name}, {"dtype", ir::dtype_name(t->dtype)}, {"shape", t->dims}, {"bytes", t->data.size()}});
  if (json) {
    print_json(j);
    return;
  }
  fmt::print("checkpoint   {} ({} in {} file{})\n", path, human_bytes(c.data_bytes()), files.size(),
             files.size() == 1 ? "" : "s");
  if (j.contains("config")) {
    const auto& cfg = j["config"];
    if (cfg.contains("architectures")) fmt::print("architecture {}\n", cfg["architectures"].dump());
    for (const auto& [k, v] : cfg.items())
      if (k != "architectures") fmt::print("  {:<28} {}\n", k, v.dump());
  }
  fmt::print("parameters   {} in {} tensors\n", total_params, c.tensors.size());
  for (const auto& [dt, b] : bytes) fmt::print("  {:<30} {:<10} {} parameters\n", dt, human_bytes(b), params[dt]);
  if (!largest.empty()) {
    fmt::print("largest tensors\n");
    for (const ir::Tensor* t : largest)
      fmt::print("  {:<48} {:<8} [{}] {}\n", t->name, ir::dtype_name(t->dtype), fmt::join(t->dims, ", "),
                 human_bytes(t->data.size()));
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  static std::string model_path;
  static bool json = false;
  static bool values = false;
  static int top = 10;
  auto* cmd = app.add_subcommand("inspect", "describe a model: versions, inputs/outputs, ops, parameters, storage");
  cmd->add_option("model", model_path, "an .onnx model, or a Hugging Face checkpoint (folder or .safetensors)")
      ->required();
  cmd->add_flag("--json", json, "print the description as JSON on stdout");
  cmd->add_flag("--values", values, "list every value with its inferred dtype and shape (JSON always has them)");
  add_spec_option(cmd,
                  {"top", passes::OptionType::Int, 10, "how many of the largest initializers to list", {}, false,
                   {0, 100000}},
                  [](const nlohmann::json& v) { top = v.get<int>(); });
  cmd->callback([] {
    if (is_checkpoint(model_path)) {
      if (values) bad_input("--values lists an ONNX model's values; {} is a checkpoint", model_path);
      inspect_checkpoint(model_path, json, top);
      return;
    }
    ir::Model m = formats::load_model(model_path);
    formats::ensure_shapes(m);
    const ir::ModelStats s = ir::model_statistics(m);
    std::vector<const ir::Value*> inits;  // the largest, every graph
    ir::walk_graphs(*m.graph, [&](const ir::Graph& g) {
      inits.insert(inits.end(), g.initializers.begin(), g.initializers.end());
    });
    std::sort(inits.begin(), inits.end(), [](const ir::Value* a, const ir::Value* b) {
      auto na = a->initializer->nbytes(), nb = b->initializer->nbytes();
      return na != nb ? na > nb : a->name < b->name;
    });
    if (static_cast<int>(inits.size()) > top) inits.resize(top);
    std::error_code ec;
    uint64_t file_size = std::filesystem::file_size(model_path, ec);

    nlohmann::json j;
    j["path"] = model_path;
    j["file_bytes"] = file_size;
    j["ir_version"] = m.ir_version;
    j["producer"] = {{"name", m.producer_name}, {"version", m.producer_version}};
    j["model_version"] = m.model_version;
    j["opsets"] = nlohmann::json::object();
    for (auto& o : m.opsets) j["opsets"][o.domain.empty() ? "ai.onnx" : o.domain] = o.version;
    auto io = [](const std::vector<ir::ValueInfo>& list, const ir::Graph& g, bool skip_initializers) {
      nlohmann::json a = nlohmann::json::array();
      for (auto& vi : list) {
        if (!vi.value) continue;
        if (skip_initializers && vi.value->initializer) continue;
        const auto& t = vi.value->type;
        a.push_back({{"name", vi.value->file_name()},
                     {"dtype", t.is_tensor ? dtype_text(t.elem_code) : "non-tensor"},
                     {"shape", t.has_shape ? dims_json(t) : nlohmann::json(nullptr)}});
      }
      return a;
    };
    j["inputs"] = io(m.graph->inputs, *m.graph, true);
    j["outputs"] = io(m.graph->outputs, *m.graph, false);
    j["nodes"] = s.nodes;
    j["op_types"] = s.ops;
    j["initializers"] = s.initializers;
    j["parameters"] = s.parameters;
    j["bytes_by_dtype"] = s.bytes_by_dtype;
    j["parameters_by_dtype"] = s.parameters_by_dtype;
    j["external_data"] = nlohmann::json::array();
    for (auto& [f, e] : s.external)
      j["external_data"].push_back({{"file", f}, {"tensors", e.first}, {"bytes", e.second}});
    j["largest_initializers"] = nlohmann::json::array();
    for (auto* v : inits) {
      const auto& t = *v->initializer;
      nlohmann::json dims = t.dims;
      j["largest_initializers"].push_back(
          {{"name", v->name}, {"dtype", dtype_text(t.dtype_code)}, {"shape", dims}, {"bytes", t.nbytes()}});
    }
    // Every value's inferred type: dtype null and shape null when inference could not type
    // it; a dim is a number, a symbolic name, or null when unknown.
    std::vector<ValueRow> rows;
    collect_values(*m.graph, "", rows);
    int64_t typed = 0;
    j["values"] = nlohmann::json::array();
    for (auto& r : rows) {
      const auto& t = r.value->inferred;
      typed += t.is_tensor;
      nlohmann::json e = {{"name", r.value->file_name()},
                          {"kind", r.kind},
                          {"dtype", t.is_tensor ? nlohmann::json(dtype_text(t.elem_code)) : nlohmann::json(nullptr)},
                          {"shape", t.is_tensor && t.has_shape ? dims_json(t) : nlohmann::json(nullptr)}};
      if (r.graph_output) e["graph_output"] = true;
      if (!r.scope.empty()) e["subgraph"] = r.scope;
      j["values"].push_back(std::move(e));
    }
    j["values_typed"] = typed;
    if (json) {
      print_json(j);
      return;
    }
    fmt::print("model        {} ({})\n", model_path, human_bytes(file_size));
    fmt::print("ir_version   {}\n", m.ir_version);
    std::vector<std::string> ops;
    for (auto& o : m.opsets) ops.push_back(fmt::format("{}={}", o.domain.empty() ? "ai.onnx" : o.domain, o.version));
    fmt::print("opsets       {}\n", fmt::join(ops, ", "));
    fmt::print("producer     {} {}\n", m.producer_name, m.producer_version);
    auto print_io = [&](const char* title, const std::vector<ir::ValueInfo>& list, bool skip) {
      fmt::print("{}\n", title);
      for (auto& vi : list) {
        if (!vi.value || (skip && vi.value->initializer)) continue;
        const auto& t = vi.value->type;
        fmt::print("  {:<30} {:<10} {}\n", vi.value->file_name(), t.is_tensor ? dtype_text(t.elem_code) : "non-tensor",
                   shape_text(t));
      }
    };
    print_io("inputs", m.graph->inputs, true);
    print_io("outputs", m.graph->outputs, false);
    fmt::print("nodes        {}\n", s.nodes);
    std::vector<std::pair<std::string, int64_t>> hist(s.ops.begin(), s.ops.end());
    std::sort(hist.begin(), hist.end(), [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
    for (auto& [op, n] : hist) fmt::print("  {:<30} {}\n", op, n);
    fmt::print("parameters   {} in {} initializers\n", s.parameters, s.initializers);
    for (auto& [dt, b] : s.bytes_by_dtype) {
      auto p = s.parameters_by_dtype.find(dt);
      fmt::print("  {:<30} {:<10} {}\n", dt, human_bytes(b),
                 p != s.parameters_by_dtype.end() ? fmt::format("{} parameters", p->second) : std::string());
    }
    for (auto& [dt, n] : s.parameters_by_dtype)
      if (!s.bytes_by_dtype.count(dt)) fmt::print("  {:<30} {:<10} {} parameters\n", dt, "", n);
    if (!s.external.empty()) {
      fmt::print("external data\n");
      for (auto& [f, e] : s.external) fmt::print("  {}  {} tensors, {}\n", f, e.first, human_bytes(e.second));
    }
    fmt::print("types        {} of {} values inferred{}\n", typed, rows.size(), values ? "" : " (--values lists them)");
    if (values) {
      for (auto& r : rows) {
        std::string name = r.scope.empty() ? r.value->file_name() : r.scope + ":" + r.value->file_name();
        fmt::print("  {:<30} {:<11} {:<10} {}\n", name, r.graph_output ? "output" : r.kind,
                   inferred_dtype(r.value->inferred), shape_text(r.value->inferred));
      }
    }
    if (!inits.empty()) {
      fmt::print("largest initializers\n");
      for (auto* v : inits) {
        const auto& t = *v->initializer;
        fmt::print("  {:<30} {:<8} [{}] {}\n", v->name, dtype_text(t.dtype_code), fmt::join(t.dims, ", "),
                   human_bytes(t.nbytes()));
      }
    }
  });
}

}  // namespace slmops::cli
