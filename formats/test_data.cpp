#include "formats/test_data.h"

#include <onnx/onnx-data_pb.h>

#include "formats/file_util.h"
#include "formats/onnx_detail.h"
#include "ir/error.h"

namespace slmops::formats {

namespace {

template <typename Msg>
Msg parse_file(const std::filesystem::path& path, const char* kind) {
  std::string bytes = read_text_file(path);
  Msg m;
  if (!m.ParseFromString(bytes)) bad_input("{}: not a valid {} file", path.string(), kind);
  return m;
}

DataValue from_sequence(onnx::SequenceProto& s, const std::string& what) {
  DataValue v;
  v.kind = DataValue::Kind::Sequence;
  v.name = s.name();
  if (s.elem_type() != onnx::SequenceProto::TENSOR && s.elem_type() != onnx::SequenceProto::UNDEFINED)
    bad_input("{}: only sequences of tensors are supported", what);
  for (auto& t : *s.mutable_tensor_values()) v.sequence.push_back(detail::tensor_from_proto(t, what));
  return v;
}

}  // namespace

DataValue load_data_value(const std::filesystem::path& path, const std::string& container) {
  const std::string what = path.string();
  if (container.rfind("optional", 0) == 0) {
    auto o = parse_file<onnx::OptionalProto>(path, "OptionalProto");
    DataValue v;
    v.optional = true;
    v.name = o.name();
    if (o.has_tensor_value()) {
      v.tensor = detail::tensor_from_proto(*o.mutable_tensor_value(), what);
    } else if (o.has_sequence_value()) {
      v = from_sequence(*o.mutable_sequence_value(), what);
      v.optional = true;
    } else {
      v.kind = DataValue::Kind::None;
    }
    return v;
  }
  if (container == "sequence") {
    auto s = parse_file<onnx::SequenceProto>(path, "SequenceProto");
    return from_sequence(s, what);
  }
  if (!container.empty()) bad_input("{}: values of type {} are not supported", what, container);
  DataValue v;
  v.tensor = load_tensor_pb(path);
  v.name = v.tensor.name;
  return v;
}

ir::Tensor load_tensor_pb(const std::filesystem::path& path) {
  auto p = parse_file<onnx::TensorProto>(path, "TensorProto");
  return detail::tensor_from_proto(p, path.string());
}

void save_tensor_pb(const ir::Tensor& t, const std::filesystem::path& path) {
  onnx::TensorProto p;
  detail::tensor_to_proto(t, p);
  AtomicFile f(path);
  f.write(p.SerializeAsString());
  f.commit();
}

}  // namespace slmops::formats
