// Fuzz target: `evaluate --random` input planning (eval/data.h). For a fuzzed model,
// decides the random feeds' shapes from the declared inputs (and --shape options) and builds
// the first batches. Nothing runs the graph. The memory limit is kFuzzMemoryLimit, so a model
// that declares huge or overflowing dims must be refused with an Error, not allocated.
// Input: u8 batch size (1 + b % 8), u8 samples (b % 4), u8 n, n x (u8 length + --shape text),
// then the rest: the bytes of model.onnx.
// Findings beyond fuzz_util.h's: a feed whose shape disagrees with a known declared dim or
// whose data is shorter than its shape.
#include <cstdint>
#include <string>
#include <vector>

#include "eval/data.h"
#include "formats/onnx_io.h"
#include "tests/fuzz/fuzz_util.h"

using namespace slmops;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::Scratch dir("random_feeds");
  fuzz::Reader in(data, size);
  eval::DataOptions opts;
  opts.random = true;
  opts.batch_size = 1 + in.u8() % 8;
  opts.random_samples = in.u8() % 4;
  std::vector<std::string> shape_texts;
  for (int n = in.u8() % 4; n > 0; --n) shape_texts.emplace_back(in.bytes(in.u8()));
  std::string_view model = in.rest();
  const auto file = dir.write("model.onnx", model.data(), model.size());
  fuzz::guarded([&] {
    for (auto& s : shape_texts) opts.shapes.push_back(eval::parse_shape_option(s));
    ir::Model m = formats::load_model(file);
    auto source = eval::open_data("", m, opts);
    const int64_t n = std::min<int64_t>(source->samples(), 2);
    for (const eval::Batch& b : source->batches(0, n)) {
      size_t i = 0;
      for (auto& vi : m.graph->inputs) {
        if (!vi.value) continue;
        if (i >= b.feeds.size()) fuzz::finding("fewer random feeds than model inputs", vi.value->name);
        const runtime::RValue& f = b.feeds[i++];
        if (!f.is_tensor()) continue;
        const ir::Tensor& t = f.tensor;
        if (t.dtype != ir::DType::String && t.data.size() < t.nbytes())
          fuzz::finding("random feed data shorter than its shape", vi.value->name);
        const auto& ty = vi.value->type;
        bool shaped = false;
        for (auto& [name, dims] : opts.shapes) shaped = shaped || name == vi.value->name;
        if (!shaped && ty.has_shape) {
          if (t.dims.size() != ty.dims.size()) fuzz::finding("random feed rank differs from the declared one", vi.value->name);
          for (size_t k = 1; k < ty.dims.size(); ++k)
            if (ty.dims[k].known() && ty.dims[k].value != t.dims[k])
              fuzz::finding("random feed dim differs from the declared one", vi.value->name);
        }
      }
    }
  });
  return 0;
}
