// Fuzz target: the ONNX loader and what `inspect` computes from a model.
// Input: the bytes of an .onnx file. The target loads it (formats::load_model), walks every
// graph as inspect does (types, shapes, attributes, subgraphs, initializer sizes, topological
// order), runs `slmops inspect --json` on it through the CLI core, saves it and loads the saved
// copy again: a model slmops wrote must load (else: finding "saved model does not load").
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/onnx_io.h"
#include "tests/fuzz/fuzz_util.h"
#include "tools/cli.h"

#include <nlohmann/json.hpp>

using namespace slmops;

namespace {

// What inspect reads from every graph, plus the graph's topological order.
uint64_t walk(const ir::Graph& g, int depth) {
  uint64_t acc = 0;
  for (auto* list : {&g.inputs, &g.outputs, &g.value_info})
    for (auto& vi : *list) {
      if (!vi.value) continue;
      const auto& t = vi.value->type;
      acc += t.dims.size() + t.container.size() + static_cast<uint64_t>(t.elem());
      for (auto& d : t.dims) acc += d.known() ? static_cast<uint64_t>(d.value) : d.param.size();
      acc += vi.value->file_name().size();
    }
  for (const ir::Value* v : g.initializers) {
    const ir::Tensor& t = *v->initializer;
    acc += t.numel() + t.dims.size() + (t.has_data() ? t.nbytes() : 0);
    if (t.storage == ir::Tensor::Storage::External && t.data.source()) acc += t.data.source()->path().size();
    // Loaded data covers the tensor's bytes: a shorter view would let kernels read past it.
    if (t.has_data() && t.dtype != ir::DType::String && t.data.size() < t.nbytes())
      fuzz::finding("initializer data shorter than its shape", v->name);
    acc += t.data.empty() ? 0 : t.data.data()[t.data.size() - 1];
  }
  for (auto& n : g.nodes()) {
    acc += n->op_type.size() + n->domain.size() + n->inputs.size() + n->outputs.size();
    for (auto& a : n->attributes) {
      acc += a.ints.size() + a.floats.size() + a.strings.size() + a.s.size();
      if (a.g) acc += walk(*a.g, depth + 1);
      for (auto& sg : a.graphs) acc += walk(*sg, depth + 1);
    }
  }
  acc += g.topological_order().size();
  return acc;
}

bool utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// Finding F11 (docs/reliability.md): `inspect --json` exits 1 when a string it prints is not
// UTF-8. While that is open, such models skip the inspect check so that the target keeps going.
bool all_utf8(const ir::Model& m) {
  bool ok = utf8(m.producer_name) && utf8(m.producer_version);
  for (auto& o : m.opsets) ok = ok && utf8(o.domain);
  std::function<void(const ir::Graph&)> graph = [&](const ir::Graph& g) {
    for (auto* list : {&g.inputs, &g.outputs})
      for (auto& vi : *list) {
        if (!vi.value) continue;
        ok = ok && utf8(vi.value->file_name());
        for (auto& d : vi.value->type.dims) ok = ok && utf8(d.param);
      }
    for (const ir::Value* v : g.initializers) ok = ok && utf8(v->name);
    for (auto& n : g.nodes()) {
      ok = ok && utf8(n->op_type) && utf8(n->domain);
      for (auto& a : n->attributes) {
        if (a.g) graph(*a.g);
        for (auto& sg : a.graphs) graph(*sg);
      }
    }
  };
  graph(*m.graph);
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::Scratch dir("onnx_load");
  dir.clear();
  const auto model = dir.write("model.onnx", data, size);
  bool loaded = false, printable = true;
  fuzz::guarded([&] {
    ir::Model m = formats::load_model(model);
    loaded = true;
    printable = all_utf8(m);
    volatile uint64_t sink = walk(*m.graph, 0);
    (void)sink;
    const auto saved = dir.path("saved.onnx");
    formats::save_model(m, saved);
    try {
      ir::Model again = formats::load_model(saved);
      volatile uint64_t sink2 = walk(*again.graph, 0);
      (void)sink2;
    } catch (const Error& e) {
      fuzz::finding("saved model does not load", e.what());
    }
  });
  if (loaded && printable) {
    // The inspect command itself (its JSON output must be printable for any model that loads).
    std::string path = model.string();
    std::vector<char*> argv = {const_cast<char*>("slmops"), const_cast<char*>("-q"), const_cast<char*>("inspect"),
                               path.data(), const_cast<char*>("--json")};
    int rc = cli::main(static_cast<int>(argv.size()), argv.data());
    if (rc != 0) fuzz::finding("inspect --json of a model that loads: exit code", std::to_string(rc));
  }
  return 0;
}
