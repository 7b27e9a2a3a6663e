// Fuzz target: external-data resolution. Each input becomes a folder m/ holding model.onnx
// and a data file w.bin, next to a file outside the folder (secret.bin) and a link in the
// folder that points out (m/link.bin -> ../secret.bin). The model is loaded, its weights read,
// saved with external data and loaded again.
// Findings beyond fuzz_util.h's: a loaded tensor whose bytes come from a file outside m/, a
// tensor whose data is shorter than its shape, a saved model that does not load or whose
// weights differ from the loaded ones.
//
// Input, first byte even ("built" mode): a model with one or two initializers built here from
//   u8 data_type, u8 rank, rank x u8 dim (255: -1, 254: 2^40), u8 location choice
//   (see kLocations; >= its size: a location string u8 length + bytes from the input),
//   u8 flags (1 offset, 2 length, 4 offset/length as strings from the input, 8 data_location
//   EXTERNAL, 16 a second initializer on the same file, 32 raw_data as well),
//   offset/length (u32 each, or u8 length + text), then the rest: the bytes of w.bin.
// First byte odd ("raw" mode): u32 n, n bytes of model.onnx, the rest: w.bin.
#include <cstdint>
#include <string>
#include <vector>

#include "formats/onnx_io.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/onnx_builder.h"

using namespace slmops;
namespace pb = slmops::fuzz::pb;
namespace fs = std::filesystem;

namespace {

const char* const kLocations[] = {"w.bin", "../secret.bin", "<abs>", "link.bin", "sub/../w.bin", "missing.bin",
                                  ".", "sub", "", "model.onnx", "./w.bin", "sub/../../secret.bin", "w.bin/"};
constexpr size_t kLocationCount = sizeof(kLocations) / sizeof(kLocations[0]);

std::string built_model(fuzz::Reader& in, const fuzz::Scratch& dir) {
  pb::Initializer t;
  t.name = "w";
  t.data_type = in.u8() % 17;
  const int rank = in.u8() % 5;
  for (int i = 0; i < rank; ++i) {
    uint8_t d = in.u8();
    t.dims.push_back(d == 255 ? -1 : d == 254 ? (int64_t{1} << 40) : d);
  }
  uint8_t choice = in.u8();
  std::string location;
  if (choice < kLocationCount) {
    location = kLocations[choice];
    if (location == "<abs>") location = dir.path("secret.bin").string();
  } else {
    location = std::string(in.bytes(in.u8()));
  }
  const uint8_t flags = in.u8();
  t.external.emplace_back("location", location);
  auto number = [&](int bit) {
    if (!(flags & bit)) return;
    std::string v = (flags & 4) ? std::string(in.bytes(in.u8())) : std::to_string(in.u32());
    t.external.emplace_back(bit == 1 ? "offset" : "length", v);
  };
  number(1);
  number(2);
  t.external_location = (flags & 8) != 0;
  if (flags & 32) t.raw_data = "abcd";
  std::vector<std::string> inits = {pb::tensor(t)};
  std::vector<std::string> nodes = {pb::node("Identity", {"w"}, {"y"}, "n0")};
  std::vector<std::string> outputs = {pb::tensor_value_info("y", t.data_type, t.dims)};
  if (flags & 16) {
    pb::Initializer t2 = t;
    t2.name = "w2";
    inits.push_back(pb::tensor(t2));
    nodes.push_back(pb::node("Identity", {"w2"}, {"y2"}, "n1"));
    outputs.push_back(pb::tensor_value_info("y2", t.data_type, t.dims));
  }
  return pb::model(nodes, inits, {}, outputs);
}

bool inside(const fs::path& file, const fs::path& folder) {
  std::error_code ec;
  fs::path real = fs::canonical(file, ec);
  if (ec) return false;
  auto rel = real.lexically_relative(folder);
  return !rel.empty() && *rel.begin() != "..";
}

// Sum of every weight byte (reads each one: a view outside its mapping faults here).
uint64_t touch(const ir::Graph& g, const fs::path& folder) {
  uint64_t acc = 0;
  for (const ir::Value* v : g.initializers) {
    const ir::Tensor& t = *v->initializer;
    if (t.storage == ir::Tensor::Storage::External) {
      if (!t.data.source()) fuzz::finding("external tensor without a source file", v->name);
      if (!inside(t.data.source()->path(), folder))
        fuzz::finding("external data read from outside the model folder", t.data.source()->path());
    }
    if (t.has_data() && t.dtype != ir::DType::String && t.data.size() < t.nbytes())
      fuzz::finding("initializer data shorter than its shape", v->name);
    for (size_t i = 0; i < t.data.size(); ++i) acc += t.data.data()[i];
  }
  return acc;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::Scratch dir("external_data");
  dir.clear();
  fuzz::Reader in(data, size);
  const uint8_t mode = in.u8();
  std::string model;
  if (mode & 1) {
    model = std::string(in.bytes(in.u32()));
  } else {
    model = built_model(in, dir);
  }
  std::string_view weights = in.rest();
  const fs::path folder = dir.path("m");
  std::error_code ec;
  fs::create_directories(folder / "sub", ec);
  dir.write("m/model.onnx", model.data(), model.size());
  dir.write("m/w.bin", weights.data(), weights.size());
  dir.write("secret.bin", weights.data(), weights.size());
  fs::create_symlink("../secret.bin", folder / "link.bin", ec);
  const fs::path real_folder = fs::canonical(folder, ec);

  fuzz::guarded([&] {
    ir::Model m = formats::load_model(folder / "model.onnx");
    const uint64_t sum = touch(*m.graph, real_folder);
    fs::create_directories(dir.path("out"), ec);
    formats::SaveOptions opts;
    opts.external = formats::ExternalData::Always;
    opts.external_threshold = 0;
    const fs::path saved = dir.path("out/o.onnx");
    formats::save_model(m, saved, opts);
    try {
      ir::Model again = formats::load_model(saved);
      if (touch(*again.graph, fs::canonical(dir.path("out"))) != sum)
        fuzz::finding("weights changed by a save and load", saved.string());
    } catch (const Error& e) {
      fuzz::finding("saved model does not load", e.what());
    }
  });
  return 0;
}
