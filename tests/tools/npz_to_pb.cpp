// Test helper: writes arrays of an .npz as an ONNX test_data_set folder (input_K.pb), in the
// order of a model's inputs, optionally the first N samples only. Float arrays become float16 /
// bfloat16 where the model's input has that type.
//   slmops_npz_to_pb MODEL.onnx DATA.npz OUT_DIR [--samples N]
#include <cstdio>
#include <filesystem>
#include <string>

#include "formats/npz.h"
#include "formats/onnx_io.h"
#include "formats/test_data.h"
#include "ir/error.h"
#include "ir/float_width.h"

using namespace slmops;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: slmops_npz_to_pb MODEL.onnx DATA.npz OUT_DIR [--samples N]\n");
    return 2;
  }
  int64_t samples = -1;
  if (argc >= 6 && std::string(argv[4]) == "--samples") samples = std::stoll(argv[5]);
  try {
    ir::Model m = formats::load_model(argv[1]);
    auto npz = formats::load_npz(argv[2]);
    std::filesystem::create_directories(argv[3]);
    int k = 0;
    for (auto& vi : m.graph->inputs) {
      if (!vi.value || vi.value->initializer) continue;
      ir::Tensor t = npz.at(vi.value->name);
      if (samples > 0 && !t.dims.empty() && t.dims[0] > samples) {
        size_t row = t.nbytes() / static_cast<size_t>(t.dims[0]);
        t.dims[0] = samples;
        t.data = ir::Buffer::copy_of(t.data.data(), row * static_cast<size_t>(samples));
      }
      // A model converted to 16-bit floats (convert --to) reads the same data in its own type.
      t = ir::to_float_width(t, vi.value->type.elem());
      t.name = vi.value->name;
      formats::save_tensor_pb(t, std::filesystem::path(argv[3]) / ("input_" + std::to_string(k++) + ".pb"));
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "slmops_npz_to_pb: %s\n", e.what());
    return 2;
  }
  return 0;
}
