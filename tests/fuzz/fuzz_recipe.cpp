// Fuzz target: the recipe parser and validator (tools/recipe.h), what `run --dry-run` does.
// Input: recipe JSON, optionally followed by a line "--set" and then one KEY=VALUE per line
// (the --set arguments). The recipe sits in a folder holding a small model (model.onnx) and
// evaluation data (data.npz), so recipes that name them get past the existence checks.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/npz.h"
#include "formats/onnx_io.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/onnx_builder.h"
#include "tools/recipe.h"

using namespace slmops;
namespace pb = slmops::fuzz::pb;

namespace {

void make_folder(const fuzz::Scratch& dir) {
  // x[1,4] -> Relu -> y, and an archive with 2 samples of x.
  std::string model = pb::model({pb::node("Relu", {"x"}, {"y"}, "relu")}, {},
                                {pb::tensor_value_info("x", 1, {1, 4})}, {pb::tensor_value_info("y", 1, {1, 4})});
  dir.write("model.onnx", model.data(), model.size());
  std::vector<float> x = {0, 1, 2, 3, 4, 5, 6, 7};
  formats::save_npz(dir.path("data.npz"), {{"x", ir::Tensor::from_values("x", ir::DType::Float, {2, 4}, x)}});
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::Scratch dir("recipe");
  static bool ready = (make_folder(dir), true);
  (void)ready;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> sets;
  const std::string_view marker = "\n--set\n";
  if (auto at = text.find(marker); at != std::string_view::npos) {
    std::string_view rest = text.substr(at + marker.size());
    text = text.substr(0, at);
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      sets.emplace_back(rest.substr(0, nl));
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
  }
  const auto file = dir.write("recipe.json", text.data(), text.size());
  fuzz::guarded([&] {
    cli::Recipe r = cli::load_recipe(file, sets);
    cli::validate_recipe(r);
  });
  return 0;
}
