// Model IO details: fields newer than our ONNX schema, int4 tensors, typed-field storage,
// atomic writes.
#include <doctest/doctest.h>

#include "formats/onnx_io.h"
#include "formats/sha256.h"
#include "ir/error.h"
#include "test_util.h"

using namespace slmops;
using slmops::test::TempDir;
namespace fs = std::filesystem;

namespace {

// A length-delimited protobuf field: tag = (number << 3) | 2, then a one-byte length.
std::string ld_field(int number, const std::string& payload) {
  std::string s;
  s.push_back(static_cast<char>((number << 3) | 2));
  s.push_back(static_cast<char>(payload.size()));
  return s + payload;
}

ir::Model model_with_new_fields() {
  ir::Model m;
  m.ir_version = 10;  // newer than the schema Debian's libonnx 1.12 knows (8)
  m.opsets = {{"", 21}, {"com.microsoft", 1}};
  m.producer_name = "future-exporter";
  m.graph = std::make_unique<ir::Graph>();
  auto& g = *m.graph;
  g.name = "g";
  auto t = ir::TensorType::of_dims(ir::DType::Float, {ir::Dim{-1, "batch"}, ir::Dim{5, {}}});
  ir::Value* x = g.add_input("x", t);
  // int4 (ONNX 1.16 type 22): five values packed in three bytes, first value in the low nibble.
  const uint8_t packed[] = {0x21, 0x43, 0x05};
  ir::Value* w =
      g.add_initializer(ir::Tensor::make("w4", ir::DType::Int4, {5}, ir::Buffer::copy_of(packed, sizeof packed)));
  ir::Node* dq = g.add_node("DequantizeLinear", {w}, {"w"}, {}, "dq");
  ir::Node* mul = g.add_node("Mul", {x, dq->outputs[0]}, {"y"}, {}, "mul");
  g.add_output(mul->outputs[0]);
  g.outputs[0].value->type = t;
  // Fields from ONNX versions after 1.12: NodeProto.overload (8), ModelProto.configuration
  // (26), TensorProto.metadata_props (16).
  mul->residual = ld_field(8, "ovl");
  m.residual = ld_field(26, ld_field(1, "cfg"));
  w->initializer->residual = ld_field(16, ld_field(1, "k") + ld_field(2, "v"));
  return m;
}

}  // namespace

TEST_CASE("fields newer than the schema and int4 tensors survive load and save") {
  TempDir tmp;
  ir::Model m = model_with_new_fields();
  formats::save_model(m, tmp / "a.onnx");
  const std::string a = formats::canonical_model_bytes(tmp / "a.onnx");
  CHECK(a.find("ovl") != std::string::npos);
  CHECK(a.find("cfg") != std::string::npos);

  ir::Model back = formats::load_model(tmp / "a.onnx");
  CHECK(back.ir_version == 10);
  CHECK(back.opset("com.microsoft") == 1);
  const auto& w = *back.graph->find_value("w4")->initializer;
  CHECK(w.dtype == ir::DType::Int4);
  CHECK(w.storage == ir::Tensor::Storage::Raw);
  REQUIRE(w.data.size() == 3);
  CHECK(ir::element_as_double(w.dtype, w.data.data(), 4) == 5);
  CHECK(back.graph->inputs[0].value->type.dims[0].param == "batch");

  formats::save_model(back, tmp / "b.onnx");
  CHECK(formats::canonical_model_bytes(tmp / "b.onnx") == a);
}

TEST_CASE("typed-field tensors keep their storage form") {
  TempDir tmp;
  ir::Model m = model_with_new_fields();
  std::vector<int64_t> shape = {2, 3};
  auto t = ir::Tensor::from_values("shape", ir::DType::Int64, {2}, shape);
  t.storage = ir::Tensor::Storage::Typed;  // int64_data rather than raw_data
  std::vector<int8_t> small = {-3, 7};
  auto s = ir::Tensor::from_values("small", ir::DType::Int8, {2}, small);
  s.storage = ir::Tensor::Storage::Typed;  // int32_data, sign-extended
  m.graph->add_initializer(std::move(t));
  m.graph->add_initializer(std::move(s));
  formats::save_model(m, tmp / "a.onnx");
  ir::Model back = formats::load_model(tmp / "a.onnx");
  const auto& bt = *back.graph->find_value("shape")->initializer;
  CHECK(bt.storage == ir::Tensor::Storage::Typed);
  CHECK(bt.values<int64_t>()[1] == 3);
  const auto& bs = *back.graph->find_value("small")->initializer;
  CHECK(bs.storage == ir::Tensor::Storage::Typed);
  CHECK(bs.values<int8_t>()[0] == -3);
  formats::save_model(back, tmp / "b.onnx");
  CHECK(formats::canonical_model_bytes(tmp / "a.onnx") == formats::canonical_model_bytes(tmp / "b.onnx"));
}

TEST_CASE("a file that protobuf parses but is not a model is refused") {
  TempDir tmp;
  // A lone TensorProto-like message: field 1 varint. Parses as a ModelProto with ir_version 5
  // but no graph.
  test::write_file(tmp / "t.onnx", std::string("\x08\x05", 2));
  try {
    formats::load_model(tmp / "t.onnx");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::BadInput);
    CHECK(std::string(e.what()).find("no graph") != std::string::npos);
  }
}

TEST_CASE("large embedded weights stay mapped on load and are spliced on save, byte-exact") {
  TempDir tmp;
  ir::Model m = model_with_new_fields();
  std::vector<float> big(5000), small(10);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i) * 0.25f;
  m.graph->add_initializer(ir::Tensor::from_values("big", ir::DType::Float, {50, 100}, big));
  m.graph->add_initializer(ir::Tensor::from_values("small", ir::DType::Float, {10}, small));
  m.graph->add_initializer(ir::Tensor::from_values("big2", ir::DType::Float, {5000}, big));
  formats::save_model(m, tmp / "a.onnx");
  // The streaming writer produces exactly protobuf's own serialization.
  CHECK(test::read_file(tmp / "a.onnx") == formats::canonical_model_bytes(tmp / "a.onnx"));

  ir::Model back = formats::load_model(tmp / "a.onnx");
  const auto& bt = *back.graph->find_value("big")->initializer;
  CHECK(bt.storage == ir::Tensor::Storage::Raw);
  REQUIRE(bt.data.source() != nullptr);  // a view into the mapped model file
  CHECK(test::value_at<float>(bt, 4999) == 4999 * 0.25f);  // mapped: may be misaligned
  CHECK(back.graph->find_value("small")->initializer->data.source() == nullptr);  // small: copied

  formats::save_model(back, tmp / "b.onnx");
  CHECK(test::read_file(tmp / "b.onnx") == test::read_file(tmp / "a.onnx"));
}

TEST_CASE("save_model's sha256 of the data file, hashed as written, equals the file's digest") {
  {
    formats::Sha256Stream s;
    s.add("ab", 2);
    s.add("c", 1);
    CHECK(s.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");  // FIPS 180-2 "abc"
  }
  TempDir tmp;
  ir::Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.graph = std::make_unique<ir::Graph>();
  ir::Value* x = m.graph->add_input("x", ir::TensorType::of(ir::DType::Float, {-1}));
  // Sizes that leave padding between tensors (64-byte and 4 KiB alignment) and one past 1 MiB.
  for (size_t n : {size_t{300}, size_t{1001}, size_t{(1 << 18) + 7}, size_t{5000}}) {
    const std::vector<float> v = slmops::test::random_floats(n, static_cast<uint32_t>(n));
    ir::Value* w = m.graph->add_initializer(
        ir::Tensor::from_values("w" + std::to_string(n), ir::DType::Float, {static_cast<int64_t>(n)}, v));
    x = m.graph
            ->add_node("Concat", {x, w}, {"c" + std::to_string(n)},
                       ir::attribute_list(ir::Attribute::make_int("axis", 0)))
            ->outputs[0];
  }
  m.graph->add_output(x);
  formats::SaveOptions so;
  so.external = formats::ExternalData::Always;
  so.sha256 = true;
  const auto report = formats::save_model(m, tmp / "m.onnx", so);
  REQUIRE(!report.data_file.empty());
  CHECK(report.data_sha256.size() == 64);
  CHECK(report.data_sha256 == formats::sha256_file(report.data_file));
}
