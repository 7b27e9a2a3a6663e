// External data: saved aligned into one <model>.onnx.data file, memory-mapped on load, and
// refused when it points outside the model folder, to a missing file or past a file's end.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "runtime/executor.h"
#include "test_util.h"

using namespace slmops;
using slmops::test::TempDir;
namespace fs = std::filesystem;

namespace {

ir::Model small_model(size_t weight_floats, const std::string& weight_name = "w") {
  ir::Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.producer_name = "slmops-test";
  m.graph = std::make_unique<ir::Graph>();
  auto& g = *m.graph;
  g.name = "g";
  auto t = ir::TensorType::of(ir::DType::Float, {1, static_cast<int64_t>(weight_floats)});
  ir::Value* x = g.add_input("x", t);
  std::vector<float> w(weight_floats);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.5f;
  ir::Value* wv =
      g.add_initializer(ir::Tensor::from_values(weight_name, ir::DType::Float, {1, (int64_t)weight_floats}, w));
  std::vector<float> b = {3.0f};
  ir::Value* bv = g.add_initializer(ir::Tensor::from_values("b", ir::DType::Float, {1}, b));
  ir::Node* mul = g.add_node("Mul", {x, wv}, {"m"});
  ir::Node* add = g.add_node("Add", {mul->outputs[0], bv}, {"y"});
  g.add_output(add->outputs[0]);
  g.outputs[0].value->type = t;
  return m;
}

// Replaces `from` by `to` (same length) in a file's bytes: edits an external-data location.
void patch_file(const fs::path& p, const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  std::string bytes = test::read_file(p);
  auto pos = bytes.find(from);
  REQUIRE(pos != std::string::npos);
  bytes.replace(pos, from.size(), to);
  test::write_file(p, bytes);
}

std::string load_error(const fs::path& p) {
  try {
    formats::load_model(p);
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::BadInput);
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("external data: save, reload, identical bytes, aligned offsets") {
  TempDir tmp;
  ir::Model m = small_model(3000);
  formats::SaveOptions so;
  so.external = formats::ExternalData::Always;
  auto rep = formats::save_model(m, tmp / "m.onnx", so);
  CHECK(rep.external_tensors == 1);  // "b" (4 bytes) stays inside: below the threshold
  CHECK(fs::exists(tmp / "m.onnx.data"));
  CHECK(rep.data_file == (tmp / "m.onnx.data").string());

  ir::Model back = formats::load_model(tmp / "m.onnx");
  ir::Value* w = back.graph->find_value("w");
  REQUIRE(w);
  REQUIRE(w->initializer);
  CHECK(w->initializer->storage == ir::Tensor::Storage::External);
  CHECK(w->initializer->data.source() != nullptr);  // a view into the mapped file, not a copy
  CHECK(w->initializer->data.file_offset() % 64 == 0);
  const auto& orig = *m.graph->find_value("w")->initializer;
  REQUIRE(w->initializer->data.size() == orig.data.size());
  CHECK(std::memcmp(w->initializer->data.data(), orig.data.data(), orig.data.size()) == 0);
  CHECK(back.source_files.size() == 2);

  // Saved again (auto: the input had external data) to another name: a new data file.
  auto rep2 = formats::save_model(back, tmp / "m2.onnx");
  CHECK(rep2.external_tensors == 1);
  CHECK(test::read_file(tmp / "m.onnx.data") == test::read_file(tmp / "m2.onnx.data"));
  // And inline on request.
  formats::SaveOptions inline_opts;
  inline_opts.external = formats::ExternalData::Never;
  auto rep3 = formats::save_model(back, tmp / "m3.onnx", inline_opts);
  CHECK(rep3.external_tensors == 0);
  CHECK_FALSE(fs::exists(tmp / "m3.onnx.data"));
  ir::Model inl = formats::load_model(tmp / "m3.onnx");
  CHECK(inl.graph->find_value("w")->initializer->storage == ir::Tensor::Storage::Raw);
}

TEST_CASE("external data outside the model folder, missing or truncated is refused naming the tensor") {
  TempDir tmp;
  fs::create_directories(tmp / "model");
  ir::Model m = small_model(1000);
  formats::SaveOptions so;
  so.external = formats::ExternalData::Always;
  auto model = tmp / "model" / "m.onnx";
  formats::save_model(m, model, so);
  const std::string good = test::read_file(model);
  test::write_file(tmp / "x.data", test::read_file(tmp / "model" / "m.onnx.data"));

  SUBCASE("parent folder") {
    patch_file(model, "m.onnx.data", "../x.data__");
    fs::copy_file(tmp / "x.data", tmp / "x.data__");
    auto err = load_error(model);
    CHECK(err.find("initializer 'w'") != std::string::npos);
    CHECK(err.find("outside the model folder") != std::string::npos);
  }
  SUBCASE("absolute path") {
    patch_file(model, "m.onnx.data", "/etc/passwd");
    auto err = load_error(model);
    CHECK(err.find("initializer 'w'") != std::string::npos);
    CHECK(err.find("absolute") != std::string::npos);
  }
  SUBCASE("a link that leaves the folder") {
    fs::remove(tmp / "model" / "m.onnx.data");
    fs::create_symlink(tmp / "x.data", tmp / "model" / "m.onnx.data");
    auto err = load_error(model);
    CHECK(err.find("outside the model folder") != std::string::npos);
  }
  SUBCASE("missing file") {
    fs::remove(tmp / "model" / "m.onnx.data");
    auto err = load_error(model);
    CHECK(err.find("initializer 'w'") != std::string::npos);
    CHECK(err.find("does not exist") != std::string::npos);
  }
  SUBCASE("past the end of the file") {
    fs::resize_file(tmp / "model" / "m.onnx.data", 100);
    auto err = load_error(model);
    CHECK(err.find("initializer 'w'") != std::string::npos);
    CHECK(err.find("past the end") != std::string::npos);
  }
  CHECK(test::read_file(model).size() == good.size());
}

TEST_CASE("saving never overwrites the input and leaves nothing behind on failure") {
  TempDir tmp;
  ir::Model m = small_model(100);
  formats::save_model(m, tmp / "m.onnx");
  ir::Model back = formats::load_model(tmp / "m.onnx");
  const std::string before = test::read_file(tmp / "m.onnx");
  CHECK_THROWS_AS(formats::save_model(back, tmp / "m.onnx"), Error);
  CHECK_THROWS_AS(formats::save_model(back, tmp / "missing" / "o.onnx"), Error);
  CHECK(test::read_file(tmp / "m.onnx") == before);
  int files = 0;
  for (auto& e : fs::directory_iterator(tmp.path)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
}

TEST_SUITE("large") {
  TEST_CASE("a model above 2 GiB is saved with external data and loads back with identical bytes") {
    TempDir tmp;
    // The weight is a sparse file (no disk blocks but where we write markers).
    const uint64_t n = (uint64_t{2} << 30) + 4096 * 3;  // just over 2 GiB of uint8
    auto src = tmp / "weights.bin";
    {
      int fd = ::open(src.c_str(), O_RDWR | O_CREAT, 0644);
      REQUIRE(fd >= 0);
      REQUIRE(::ftruncate(fd, static_cast<off_t>(n)) == 0);
      const char a[] = "first", b[] = "middle", c[] = "last!";
      REQUIRE(::pwrite(fd, a, 5, 0) == 5);
      REQUIRE(::pwrite(fd, b, 6, static_cast<off_t>(n / 2)) == 6);
      REQUIRE(::pwrite(fd, c, 5, static_cast<off_t>(n - 5)) == 5);
      ::close(fd);
    }
    auto mapped = formats::MappedFile::open(src);
    ir::Model m;
    m.ir_version = 8;
    m.opsets = {{"", 17}};
    m.graph = std::make_unique<ir::Graph>();
    auto t = ir::TensorType::of(ir::DType::UInt8, {static_cast<int64_t>(n)});
    ir::Value* w = m.graph->add_initializer(
        ir::Tensor::make("big", ir::DType::UInt8, {static_cast<int64_t>(n)}, mapped->view(0, n)));
    ir::Node* id = m.graph->add_node("Identity", {w}, {"y"});
    m.graph->add_output(id->outputs[0]);
    m.graph->outputs[0].value->type = t;

    // Inline is impossible: refused, nothing written.
    formats::SaveOptions never;
    never.external = formats::ExternalData::Never;
    CHECK_THROWS_AS(formats::save_model(m, tmp / "never.onnx", never), Error);
    CHECK_FALSE(fs::exists(tmp / "never.onnx"));

    auto rep = formats::save_model(m, tmp / "big.onnx");  // auto
    CHECK(rep.external_tensors == 1);
    CHECK(fs::file_size(tmp / "big.onnx") < 4096);
    ir::Model back = formats::load_model(tmp / "big.onnx");
    const auto& bt = *back.graph->find_value("big")->initializer;
    REQUIRE(bt.data.size() == n);
    CHECK(std::memcmp(bt.data.data(), mapped->data(), n) == 0);
  }
}

namespace {
// Resident bytes of the mapping of this process that holds address p (/proc/self/smaps), or -1.
int64_t resident_bytes_of_mapping(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find('-')) {
      inside = addr >= lo && addr < hi;
      continue;
    }
    long kb = 0;
    if (inside && std::sscanf(line.c_str(), "Rss: %ld kB", &kb) == 1) return int64_t{kb} * 1024;
  }
  return -1;
}
}  // namespace

// raw_data sits at any offset of the mapped model file; the session reads a misaligned float
// weight through an aligned copy, and then the file's pages that held it leave the resident
// set (else the weight would be in memory twice).
TEST_CASE("a misaligned mapped weight is resident once: its aligned copy's") {
  TempDir tmp;
  formats::SaveOptions inline_opts;
  inline_opts.external = formats::ExternalData::Never;
  const size_t floats = size_t{1} << 20;  // 4 MiB
  // Names of other lengths move the raw_data by a byte: find one that leaves it misaligned.
  ir::Model loaded;
  const ir::Tensor* w = nullptr;
  for (const char* name : {"w", "wx", "wxy", "wxyz"}) {
    formats::save_model(small_model(floats, name), tmp / "m.onnx", inline_opts);
    loaded = formats::load_model(tmp / "m.onnx");
    w = loaded.graph->find_value(name)->initializer.get();
    if (w->data.source() && reinterpret_cast<uintptr_t>(w->data.data()) % sizeof(float) != 0) break;
    w = nullptr;
  }
  REQUIRE(w != nullptr);
  // Loading leaves the weight's pages alone; the session copies it, reading them all.
  runtime::Session s(loaded, 1);
  std::vector<float> x(floats, 1.0f);
  auto out = s.run({runtime::RValue::of(ir::Tensor::from_values("x", ir::DType::Float, {1, (int64_t)floats}, x))});
  REQUIRE(out.size() == 1);
  CHECK(out[0].tensor.values<float>()[floats - 1] == doctest::Approx(static_cast<float>(floats - 1) * 0.5f + 3.0f));
  const int64_t rss = resident_bytes_of_mapping(w->data.data());
  INFO("resident bytes of the model file's mapping: " << rss);
  REQUIRE(rss >= 0);
  CHECK(rss < int64_t(floats * sizeof(float)) / 4);
}
