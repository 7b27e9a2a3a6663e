// A few lines of protobuf wire format, enough for fuzz targets to build small ONNX models
// from fuzz bytes (field numbers from onnx/onnx.proto3). Test code only: formats/ is the one
// place that reads ONNX.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slmops::fuzz::pb {

inline void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline void field_varint(std::string& out, uint32_t number, uint64_t v) {
  varint(out, uint64_t{number} << 3);
  varint(out, v);
}
inline void field_bytes(std::string& out, uint32_t number, std::string_view bytes) {
  varint(out, (uint64_t{number} << 3) | 2);
  varint(out, bytes.size());
  out.append(bytes);
}

// StringStringEntryProto {key = 1, value = 2}
inline std::string entry(std::string_view key, std::string_view value) {
  std::string e;
  field_bytes(e, 1, key);
  field_bytes(e, 2, value);
  return e;
}

// ValueInfoProto {name = 1, type = 2 {tensor_type = 1 {elem_type = 1, shape = 2 {dim = 1 {dim_value = 1}}}}}
inline std::string tensor_value_info(std::string_view name, int32_t elem_type, const std::vector<int64_t>& dims) {
  std::string shape;
  for (int64_t d : dims) {
    std::string dim;
    field_varint(dim, 1, static_cast<uint64_t>(d));
    field_bytes(shape, 1, dim);
  }
  std::string tensor_type;
  field_varint(tensor_type, 1, static_cast<uint64_t>(elem_type));
  field_bytes(tensor_type, 2, shape);
  std::string type;
  field_bytes(type, 1, tensor_type);
  std::string vi;
  field_bytes(vi, 1, name);
  field_bytes(vi, 2, type);
  return vi;
}

// TensorProto {dims = 1, data_type = 2, name = 8, raw_data = 9, external_data = 13, data_location = 14}
struct Initializer {
  std::string name;
  int32_t data_type = 1;
  std::vector<int64_t> dims;
  std::string raw_data;
  std::vector<std::pair<std::string, std::string>> external;  // key, value
  bool external_location = false;                               // data_location = EXTERNAL
};
inline std::string tensor(const Initializer& t) {
  std::string out;
  for (int64_t d : t.dims) field_varint(out, 1, static_cast<uint64_t>(d));
  field_varint(out, 2, static_cast<uint64_t>(t.data_type));
  field_bytes(out, 8, t.name);
  if (!t.raw_data.empty()) field_bytes(out, 9, t.raw_data);
  for (auto& [k, v] : t.external) field_bytes(out, 13, entry(k, v));
  if (t.external_location) field_varint(out, 14, 1);
  return out;
}

// NodeProto {input = 1, output = 2, name = 3, op_type = 4}
inline std::string node(std::string_view op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                        std::string_view name) {
  std::string n;
  for (auto& i : in) field_bytes(n, 1, i);
  for (auto& o : out) field_bytes(n, 2, o);
  field_bytes(n, 3, name);
  field_bytes(n, 4, op);
  return n;
}

// GraphProto {node = 1, name = 2, initializer = 5, input = 11, output = 12}
// ModelProto {ir_version = 1, producer_name = 2, graph = 7, opset_import = 8 {domain = 1, version = 2}}
inline std::string model(const std::vector<std::string>& nodes, const std::vector<std::string>& initializers,
                         const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
                         int64_t opset = 17) {
  std::string g;
  for (auto& n : nodes) field_bytes(g, 1, n);
  field_bytes(g, 2, "fuzz");
  for (auto& t : initializers) field_bytes(g, 5, t);
  for (auto& i : inputs) field_bytes(g, 11, i);
  for (auto& o : outputs) field_bytes(g, 12, o);
  std::string m;
  field_varint(m, 1, 8);
  field_bytes(m, 2, "slmops-fuzz");
  field_bytes(m, 7, g);
  std::string op;
  field_bytes(op, 1, "");
  field_varint(op, 2, static_cast<uint64_t>(opset));
  field_bytes(m, 8, op);
  return m;
}

}  // namespace slmops::fuzz::pb
