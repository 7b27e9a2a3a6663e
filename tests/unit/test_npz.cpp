// .npz archives: numpy's own files (the fixtures) and our writer round-trip.
#include <doctest/doctest.h>

#include "formats/npz.h"
#include "ir/error.h"
#include "test_util.h"

using namespace slmops;
namespace fs = std::filesystem;

#ifndef SLMOPS_SOURCE_DIR
#error "SLMOPS_SOURCE_DIR must point at the repository"
#endif

TEST_CASE("reads numpy's .npz (fixture data written by np.savez)") {
  auto a = formats::load_npz(fs::path(SLMOPS_SOURCE_DIR) / "tests/fixtures/cnn_digits_test.npz");
  const auto& x = a.at("input");
  const auto& y = a.at("label");
  CHECK(x.dtype == ir::DType::Float);
  REQUIRE(x.dims.size() == 4);
  CHECK(x.dims[1] == 1);
  CHECK(x.dims[2] == 8);
  CHECK(y.dtype == ir::DType::Int64);
  CHECK(y.dims[0] == x.dims[0]);
  for (uint64_t i = 0; i < y.numel(); ++i) CHECK((y.values<int64_t>()[i] >= 0 && y.values<int64_t>()[i] <= 9));
  CHECK_THROWS_AS(a.at("nope"), Error);
}

TEST_CASE("our .npz round-trips and refuses bad archives") {
  test::TempDir tmp;
  std::vector<float> v = {1.5f, -2.f, 3.25f, 4.f, 5.f, 6.f};
  std::vector<int64_t> ids = {7, 8, 9};
  formats::save_npz(tmp / "a.npz", {{"x", ir::Tensor::from_values("x", ir::DType::Float, {2, 3}, v)},
                                    {"ids", ir::Tensor::from_values("ids", ir::DType::Int64, {3}, ids)}});
  auto a = formats::load_npz(tmp / "a.npz");
  CHECK(a.names == std::vector<std::string>{"x", "ids"});
  CHECK(a.at("x").dims == std::vector<int64_t>{2, 3});
  CHECK(a.at("x").values<float>()[2] == 3.25f);
  CHECK(a.at("ids").values<int64_t>()[2] == 9);
  CHECK(reinterpret_cast<uintptr_t>(a.at("x").data.data()) % 64 == 0);  // data aligned as numpy does

  std::string bytes = test::read_file(tmp / "a.npz");
  test::write_file(tmp / "cut.npz", bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_AS(formats::load_npz(tmp / "cut.npz"), Error);
  test::write_file(tmp / "text.npz", "hello");
  CHECK_THROWS_AS(formats::load_npz(tmp / "text.npz"), Error);
}
