// Fuzz target: the safetensors reader (formats/safetensors.h) that `convert HF_DIR` and
// `inspect` read checkpoints with. Input: the bytes of one .safetensors file. The target
// loads it and reads every byte of every tensor.
// Findings beyond fuzz_util.h's: a tensor whose bytes are not its shape times its element
// size, a view outside the file, tensors that overlap or leave a hole, names and tensors
// that disagree.
#include <cstdint>
#include <string>

#include "formats/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

using namespace slmops;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::Scratch dir("safetensors");
  const auto file = dir.write("model.safetensors", data, size);
  fuzz::guarded([&] {
    const formats::Checkpoint c = formats::load_checkpoint(file);
    if (c.names.size() != c.tensors.size()) fuzz::finding("safetensors names and tensors disagree", c.path);
    uint64_t covered = 0, acc = 0;
    for (const auto& name : c.names) {
      const ir::Tensor& t = c.at(name);
      if (t.data.size() != t.nbytes()) fuzz::finding("safetensors tensor bytes differ from its shape", name);
      covered += t.data.size();
      for (size_t i = 0; i < t.data.size(); ++i) acc += t.data.data()[i];  // every byte readable
    }
    if (covered > size) fuzz::finding("safetensors tensors cover more bytes than the file holds", c.path);
    if (c.data_bytes() != covered) fuzz::finding("safetensors data_bytes disagrees with its tensors", c.path);
    (void)acc;
  });
  return 0;
}
