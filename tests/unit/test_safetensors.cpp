// formats/safetensors: checkpoints read as views into the mapped files, and every way a file
// can lie about itself refused with one message naming the file and the tensor.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>

#include "formats/safetensors.h"
#include "ir/dtype.h"

namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("slmops_st_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// A safetensors file from a header and data, as the format lays it out.
void write_file(const fs::path& p, const std::string& header, const std::string& data, int64_t claimed_len = -1) {
  std::string h = header;
  while ((8 + h.size()) % 8) h.push_back(' ');
  const uint64_t n = claimed_len >= 0 ? static_cast<uint64_t>(claimed_len) : h.size();
  std::string bytes(8, '\0');
  for (int k = 0; k < 8; ++k) bytes[static_cast<size_t>(k)] = static_cast<char>((n >> (8 * k)) & 0xff);
  std::ofstream(p, std::ios::binary) << bytes << h << data;
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.begin(), s.size());
  return s;
}

}  // namespace

TEST_CASE("safetensors: tensors are views with their dtype and shape, in offset order") {
  TempDir d;
  const uint16_t bf[2] = {slmops::ir::float_to_bfloat16(1.5f), slmops::ir::float_to_bfloat16(-2.0f)};
  std::string bf_bytes(4, '\0');
  std::memcpy(bf_bytes.data(), bf, 4);
  write_file(d.path / "model.safetensors",
             R"({"b": {"dtype": "BF16", "shape": [2], "data_offsets": [24, 28]},)"
             R"( "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "__metadata__": {"format": "pt"}})",
             floats({1, 2, 3, 4, 5, 6}) + bf_bytes);
  const auto c = slmops::formats::load_checkpoint(d.path);
  REQUIRE(c.names == std::vector<std::string>{"a", "b"});
  const auto& a = c.at("a");
  CHECK(a.dtype == slmops::ir::DType::Float);
  CHECK(a.dims == std::vector<int64_t>{2, 3});
  CHECK(a.data.as<float>()[5] == 6.0f);
  CHECK(a.data.source() != nullptr);  // a view into the mapped file, not a copy
  CHECK(slmops::ir::bfloat16_to_float(c.at("b").data.as<uint16_t>()[1]) == -2.0f);
  CHECK(c.metadata.at("format") == "pt");
  CHECK(c.data_bytes() == 28);
  CHECK_THROWS_WITH(c.at("nope"), doctest::Contains("no tensor 'nope'"));
}

TEST_CASE("safetensors: a file that lies about itself is refused, naming the file and tensor") {
  TempDir d;
  const fs::path f = d.path / "x.safetensors";
  auto refused = [&](const std::string& header, const std::string& data, const char* want, int64_t claimed = -1) {
    write_file(f, header, data, claimed);
    CHECK_THROWS_WITH(slmops::formats::load_checkpoint(f), doctest::Contains(want));
  };
  const std::string one = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  refused(one, floats({1}), "leave the data (4 bytes)");                               // truncated data
  refused(one, floats({1, 2, 3}), "cover 8 bytes of data, the file holds 12");         // bytes no tensor owns
  refused(one, floats({1, 2}), "header says it is 4096 bytes", 4096);                  // header length too long
  refused(one, floats({1, 2}), "larger than the 100000000 bytes allowed", 1LL << 40);  // absurd header length
  refused(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}})", floats({1, 2}), "leave the data");
  refused(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", floats({1, 2}), "needs 12 bytes");
  refused(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", floats({1, 2}), "without holes");
  refused(
      R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
      floats({1, 2}), "without holes or overlaps");
  refused(R"({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}})", floats({1, 2}),
          "dtype C64 is not supported");
  refused(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}})", floats({1, 2}), "non-negative integers");
  refused(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}})", floats({1, 2}),
          "too large");
  refused(R"(["w"])", floats({1, 2}), "must start with '{'");
  refused(R"({"w": )", floats({1, 2}), "not valid JSON");
  std::ofstream(f, std::ios::binary) << "abc";
  CHECK_THROWS_WITH(slmops::formats::load_checkpoint(f), doctest::Contains("not a safetensors file"));
}

TEST_CASE("safetensors: sharded checkpoints follow the index, inside the folder only") {
  TempDir d;
  write_file(d.path / "model-00001-of-00002.safetensors",
             R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", floats({1}));
  write_file(d.path / "model-00002-of-00002.safetensors",
             R"({"b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", floats({2, 3}));
  auto index = [&](const std::string& map) {
    std::ofstream(d.path / "model.safetensors.index.json")
        << R"({"metadata": {"total_size": 12}, "weight_map": )" << map << "}";
  };
  index(R"({"b": "model-00002-of-00002.safetensors", "a": "model-00001-of-00002.safetensors"})");
  const auto c = slmops::formats::load_checkpoint(d.path);
  CHECK(c.names == std::vector<std::string>{"a", "b"});
  CHECK(c.at("b").data.as<float>()[1] == 3.0f);
  CHECK(c.file_of.at("b").find("model-00002-of-00002.safetensors") != std::string::npos);
  index(R"({"a": "model-00002-of-00002.safetensors"})");
  CHECK_THROWS_WITH(slmops::formats::load_checkpoint(d.path), doctest::Contains("tensor 'a' is not in its shard"));
  index(R"({"a": "../model-00001-of-00002.safetensors"})");
  CHECK_THROWS_WITH(slmops::formats::load_checkpoint(d.path), doctest::Contains("inside the checkpoint folder"));
  index(R"({"a": "missing.safetensors"})");
  CHECK_THROWS_WITH(slmops::formats::load_checkpoint(d.path), doctest::Contains("does not exist"));
  fs::create_directories(d.path / "../slmops_st_outside");
  write_file(d.path / "../slmops_st_outside/o.safetensors",
             R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", floats({1}));
  fs::create_symlink(d.path / "../slmops_st_outside/o.safetensors", d.path / "link.safetensors");
  index(R"({"a": "link.safetensors"})");
  CHECK_THROWS_WITH(slmops::formats::load_checkpoint(d.path), doctest::Contains("leaves the checkpoint folder"));
  fs::remove_all(d.path / "../slmops_st_outside");
}
