// Every model.onnx of ONNX's conformance data survives load -> save -> load: the saved file
// parses to the same ModelProto (compared as protobuf's canonical serialization).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "formats/onnx_io.h"
#include "test_util.h"

using namespace slmops;
using slmops::test::TempDir;
namespace fs = std::filesystem;

TEST_CASE("libonnx-testdata models round-trip losslessly") {
  auto root = test::onnx_testdata();
  REQUIRE_MESSAGE(fs::is_directory(root), "missing ", root.string(), " (apt-get install libonnx-testdata)");
  std::vector<fs::path> models;
  for (auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && e.path().filename() == "model.onnx") models.push_back(e.path());
  std::sort(models.begin(), models.end());
  TempDir tmp;
  std::map<std::string, int> per_suite;
  int passed = 0;
  for (auto& path : models) {
    std::string before = formats::canonical_model_bytes(path);
    ir::Model m = formats::load_model(path);
    auto out = tmp / "roundtrip.onnx";
    formats::save_model(m, out);
    std::string after = formats::canonical_model_bytes(out);
    CHECK_MESSAGE(before == after, path.string());
    if (before == after) {
      ++passed;
      ++per_suite[path.lexically_relative(root).begin()->string()];
    }
    fs::remove(out);
  }
  for (auto& [suite, n] : per_suite) std::printf("round-trip %s: %d models\n", suite.c_str(), n);
  std::printf("round-trip: %d of %zu models identical after load -> save -> load\n", passed, models.size());
  CHECK(models.size() >= 1000);
  CHECK(passed == static_cast<int>(models.size()));
}
