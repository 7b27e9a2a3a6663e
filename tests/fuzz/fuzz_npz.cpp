// Fuzz target: the .npz reader (formats/npz.h) that evaluate and calibration read data with.
// Input: the bytes of an .npz file. The target loads it, reads every byte of every array,
// writes the arrays back with save_npz and loads that copy.
// Findings beyond fuzz_util.h's: an array whose data is shorter than its shape, a written
// archive that does not load or whose arrays differ from the loaded ones.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "formats/npz.h"
#include "tests/fuzz/fuzz_util.h"

using namespace slmops;

namespace {

std::string describe(const formats::NpzArchive& a) {
  std::string s;
  for (auto& n : a.names) {
    s += s.empty() ? "" : ", ";
    s += "'" + n + "'";
    if (auto it = a.arrays.find(n); it != a.arrays.end())
      s += " " + std::string(ir::dtype_name(it->second.dtype)) + "[" + std::to_string(it->second.dims.size()) + "-d]";
  }
  return s;
}

uint64_t touch(const formats::NpzArchive& a) {
  uint64_t acc = 0;
  if (a.names.size() != a.arrays.size())
    fuzz::finding("npz names and arrays disagree (a member name twice?)", a.path + ": " + describe(a));
  for (auto& name : a.names) {
    const ir::Tensor& t = a.at(name);
    acc += t.dims.size() + t.numel();
    if (t.dtype != ir::DType::String && t.data.size() < t.nbytes())
      fuzz::finding("npz array data shorter than its shape", name);
    for (size_t i = 0; i < t.data.size(); ++i) acc += t.data.data()[i];
    for (auto& s : t.strings) acc += s.size();
  }
  return acc;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::Scratch dir("npz");
  const auto file = dir.write("in.npz", data, size);
  fuzz::guarded([&] {
    formats::NpzArchive a = formats::load_npz(file);
    const uint64_t sum = touch(a);
    std::vector<std::pair<std::string, ir::Tensor>> arrays;
    for (auto& name : a.names) arrays.emplace_back(name, a.at(name));
    const auto out = dir.path("out.npz");
    try {
      formats::save_npz(out, arrays);
    } catch (const Error&) {
      return;  // save_npz may refuse what it cannot write (e.g. a dtype .npy has no code for)
    }
    try {
      formats::NpzArchive b = formats::load_npz(out);
      if (b.names != a.names || touch(b) != sum)
        fuzz::finding("npz arrays changed by a save and load", describe(a) + " -> " + describe(b));
      for (auto& name : a.names)
        if (b.at(name).dims != a.at(name).dims || b.at(name).dtype != a.at(name).dtype)
          fuzz::finding("npz array shape or dtype changed by a save and load", name);
    } catch (const Error& e) {
      fuzz::finding("written npz does not load", e.what());
    }
  });
  return 0;
}
