#include "formats/onnx_io.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "formats/file_util.h"
#include "formats/onnx_detail.h"
#include "formats/opset_adapters.h"
#include "formats/proto_wire.h"
#include "formats/sha256.h"
#include "ir/error.h"
#include "ir/size.h"

namespace slmops::formats {
namespace {

namespace pb = google::protobuf;
using ir::DType;
using ir::Tensor;

constexpr uint64_t kProtobufLimit = (uint64_t{1} << 31) - 1;
constexpr uint64_t kAutoExternalAbove = kProtobufLimit - (uint64_t{64} << 20);  // leave room for the graph

// ---------------------------------------------------------------------------------------------
// Loading

struct LoadCtx {
  fs::path model_path;
  fs::path model_dir;
  fs::path model_dir_real;
  std::map<std::string, std::shared_ptr<MappedFile>> mapped;  // by canonical path
  std::vector<std::string> sources;
  // raw_data of the top-level graph's initializers, left in the mapped model file (by
  // initializer index; empty buffer = the payload is in the TensorProto as usual).
  std::vector<ir::Buffer> raw_views;
};

std::string where(const LoadCtx& ctx) { return ctx.model_path.string(); }

// A typed field that holds the values of tensors of these types (ONNX TensorProto docs).
enum class Typed { None, Float, Int32, Int64, Double, UInt64, String };

Typed typed_field_for(int32_t code) {
  switch (static_cast<DType>(code)) {
    case DType::Float:
    case DType::Complex64: return Typed::Float;
    case DType::Int32:
    case DType::Int16:
    case DType::Int8:
    case DType::UInt16:
    case DType::UInt8:
    case DType::Bool:
    case DType::Float16:
    case DType::BFloat16:
    case DType::Float8E4M3FN:
    case DType::Float8E4M3FNUZ:
    case DType::Float8E5M2:
    case DType::Float8E5M2FNUZ: return Typed::Int32;
    case DType::Int64: return Typed::Int64;
    case DType::Double:
    case DType::Complex128: return Typed::Double;
    case DType::UInt32:
    case DType::UInt64: return Typed::UInt64;
    case DType::String: return Typed::String;
    default: return Typed::None;
  }
}

bool has_typed_data(const onnx::TensorProto& p) {
  return p.float_data_size() || p.int32_data_size() || p.int64_data_size() || p.double_data_size() ||
         p.uint64_data_size() || p.string_data_size();
}

void clear_typed_data(onnx::TensorProto& p) {
  p.clear_float_data();
  p.clear_int32_data();
  p.clear_int64_data();
  p.clear_double_data();
  p.clear_uint64_data();
  p.clear_string_data();
}

// Decodes the typed field into little-endian element bytes. False when the field does not
// match the data type (then the tensor stays opaque and round-trips untouched).
bool decode_typed(const onnx::TensorProto& p, Tensor& t) {
  const uint64_t n = t.numel();
  const DType dt = t.dtype;
  const size_t width = ir::traits(dt).bits / 8;
  auto sizes_only = [&](int count) {
    int present = (p.float_data_size() > 0) + (p.int32_data_size() > 0) + (p.int64_data_size() > 0) +
                  (p.double_data_size() > 0) + (p.uint64_data_size() > 0) + (p.string_data_size() > 0);
    return present <= 1 && static_cast<uint64_t>(count) == n * ((dt == DType::Complex64 || dt == DType::Complex128) ? 2 : 1);
  };
  std::vector<uint8_t> out;
  switch (typed_field_for(t.dtype_code)) {
    case Typed::Float:
      if (!sizes_only(p.float_data_size())) return false;
      out.resize(p.float_data_size() * 4);
      if (!out.empty()) std::memcpy(out.data(), p.float_data().data(), out.size());
      break;
    case Typed::Double:
      if (!sizes_only(p.double_data_size())) return false;
      out.resize(p.double_data_size() * 8);
      if (!out.empty()) std::memcpy(out.data(), p.double_data().data(), out.size());
      break;
    case Typed::Int64:
      if (!sizes_only(p.int64_data_size())) return false;
      out.resize(p.int64_data_size() * 8);
      if (!out.empty()) std::memcpy(out.data(), p.int64_data().data(), out.size());
      break;
    case Typed::UInt64:
      if (!sizes_only(p.uint64_data_size())) return false;
      out.resize(n * width);
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t v = p.uint64_data(static_cast<int>(i));
        if (dt == DType::UInt32) {
          if (v > 0xffffffffull) return false;
          uint32_t w = static_cast<uint32_t>(v);
          std::memcpy(out.data() + i * 4, &w, 4);
        } else {
          std::memcpy(out.data() + i * 8, &v, 8);
        }
      }
      break;
    case Typed::Int32:
      if (!sizes_only(p.int32_data_size())) return false;
      out.resize(n * width);
      for (uint64_t i = 0; i < n; ++i) {
        int32_t v = p.int32_data(static_cast<int>(i));
        // Only values that re-encode to the same int32 are accepted (lossless round trip).
        switch (width) {
          case 1: {
            bool is_signed = dt == DType::Int8;
            if (is_signed ? (v < -128 || v > 127) : (v < 0 || v > 255)) return false;
            if (dt == DType::Bool && v > 1) return false;
            out[i] = static_cast<uint8_t>(v);
            break;
          }
          case 2: {
            bool is_signed = dt == DType::Int16;
            if (is_signed ? (v < -32768 || v > 32767) : (v < 0 || v > 65535)) return false;
            uint16_t w = static_cast<uint16_t>(v);
            std::memcpy(out.data() + i * 2, &w, 2);
            break;
          }
          case 4: std::memcpy(out.data() + i * 4, &v, 4); break;
          default: return false;
        }
      }
      break;
    case Typed::String:
      if (!sizes_only(p.string_data_size())) return false;
      t.strings.assign(p.string_data().begin(), p.string_data().end());
      return true;
    case Typed::None: return false;
  }
  t.data = ir::Buffer::from_vector(std::move(out));
  return true;
}

void encode_typed(const Tensor& t, onnx::TensorProto& p) {
  const uint64_t n = t.numel();
  const uint8_t* d = t.data.data();
  switch (typed_field_for(t.dtype_code)) {
    case Typed::Float: {
      auto* f = p.mutable_float_data();
      f->Resize(static_cast<int>(t.data.size() / 4), 0.f);
      if (!t.data.empty()) std::memcpy(f->mutable_data(), d, t.data.size());
      break;
    }
    case Typed::Double: {
      auto* f = p.mutable_double_data();
      f->Resize(static_cast<int>(t.data.size() / 8), 0.0);
      if (!t.data.empty()) std::memcpy(f->mutable_data(), d, t.data.size());
      break;
    }
    case Typed::Int64: {
      auto* f = p.mutable_int64_data();
      f->Resize(static_cast<int>(t.data.size() / 8), 0);
      if (!t.data.empty()) std::memcpy(f->mutable_data(), d, t.data.size());
      break;
    }
    case Typed::UInt64: {
      auto* f = p.mutable_uint64_data();
      for (uint64_t i = 0; i < n; ++i) {
        if (t.dtype == DType::UInt32) {
          uint32_t w;
          std::memcpy(&w, d + i * 4, 4);
          f->Add(w);
        } else {
          uint64_t w;
          std::memcpy(&w, d + i * 8, 8);
          f->Add(w);
        }
      }
      break;
    }
    case Typed::Int32: {
      auto* f = p.mutable_int32_data();
      const size_t width = ir::traits(t.dtype).bits / 8;
      for (uint64_t i = 0; i < n; ++i) {
        int32_t v = 0;
        if (width == 1) {
          v = t.dtype == DType::Int8 ? static_cast<int8_t>(d[i]) : d[i];
        } else if (width == 2) {
          uint16_t w;
          std::memcpy(&w, d + i * 2, 2);
          v = t.dtype == DType::Int16 ? static_cast<int16_t>(w) : w;
        } else {
          std::memcpy(&v, d + i * 4, 4);
        }
        f->Add(v);
      }
      break;
    }
    case Typed::String:
      for (auto& s : t.strings) p.add_string_data(s);
      break;
    case Typed::None: break;
  }
}

// Resolves an external-data location against the model folder, refusing anything that
// leaves it (absolute paths, "..", symlinks that point out).
fs::path resolve_external(LoadCtx& ctx, const std::string& what, const std::string& location) {
  if (location.empty()) bad_input("{}: {} has external data with no location", where(ctx), what);
  fs::path loc(location);
  if (loc.is_absolute())
    bad_input("{}: {} points to external data '{}', an absolute path; only paths inside the model folder are allowed",
              where(ctx), what, location);
  int depth = 0;
  for (auto& part : loc.lexically_normal()) {
    if (part == "..") --depth;
    else if (part != "." && !part.empty()) ++depth;
    if (depth < 0)
      bad_input("{}: {} points to external data '{}' outside the model folder", where(ctx), what, location);
  }
  fs::path full = ctx.model_dir / loc;
  std::error_code ec;
  if (!fs::exists(full, ec))
    bad_input("{}: {} points to external data '{}', which does not exist", where(ctx), what, location);
  fs::path real = fs::canonical(full, ec);
  if (ec) bad_input("{}: {} points to external data '{}', which cannot be resolved: {}", where(ctx), what, location, ec.message());
  auto rel = real.lexically_relative(ctx.model_dir_real);
  if (rel.empty() || *rel.begin() == "..")
    bad_input("{}: {} points to external data '{}' outside the model folder (through a link)", where(ctx), what,
              location);
  return real;
}

void load_external(LoadCtx& ctx, const std::string& what, onnx::TensorProto& p, Tensor& t) {
  std::string location;
  uint64_t offset = 0, length = 0;
  bool has_length = false;
  for (auto& kv : p.external_data()) {
    auto parse_u64 = [&](const std::string& s) {
      try {
        size_t used = 0;
        unsigned long long v = std::stoull(s, &used);
        if (used != s.size()) throw std::invalid_argument(s);
        return static_cast<uint64_t>(v);
      } catch (const std::exception&) {
        bad_input("{}: {} has external data {} '{}', expected a whole number", where(ctx), what, kv.key(), s);
      }
    };
    if (kv.key() == "location") location = kv.value();
    else if (kv.key() == "offset") offset = parse_u64(kv.value());
    else if (kv.key() == "length") {
      length = parse_u64(kv.value());
      has_length = true;
    }
  }
  if (!ir::is_known_dtype(t.dtype_code) || t.dtype == DType::String)
    bad_input("{}: {} has external data of data type {}, which slmops cannot read", where(ctx), what, t.dtype_code);
  const uint64_t expected = *ir::checked_storage_bytes(t.dtype, *ir::checked_element_count(t.dims));
  if (!has_length) length = expected;
  if (length != expected)
    bad_input("{}: {} has external data length {} but its type and shape need {} bytes", where(ctx), what, length,
              expected);
  fs::path real = resolve_external(ctx, what, location);
  auto& mf = ctx.mapped[real.string()];
  if (!mf) {
    mf = MappedFile::open(real);
    ctx.sources.push_back(real.string());
  }
  if (offset > mf->size() || length > mf->size() - offset)
    bad_input("{}: {} reads bytes {}..{} of '{}', past the end of that file ({} bytes)", where(ctx), what, offset,
              offset + length, location, mf->size());
  t.data = mf->view(offset, length);
  t.storage = Tensor::Storage::External;
}

// A tensor of a known fixed-width type must store exactly the bytes its type and shape declare
// (raw_data, typed field or external data), as ONNX Runtime checks at session creation: a
// shape that promises more than is stored would send kernels reading past the data.
void check_declared_size(LoadCtx& ctx, const onnx::TensorProto& p, const Tensor& t, const std::string& what,
                         const ir::Buffer* raw_view) {
  if (t.dtype == DType::Undefined || t.dtype == DType::String) return;
  for (auto d : t.dims)
    if (d < 0) bad_input("{}: {} has a negative dimension in shape [{}]", where(ctx), what, fmt::join(t.dims, ", "));
  auto count = ir::checked_element_count(t.dims);
  auto bytes = count ? ir::checked_storage_bytes(t.dtype, *count) : std::nullopt;
  if (!bytes)
    bad_input("{}: {} has shape [{}], whose size does not fit in 64 bits", where(ctx), what, fmt::join(t.dims, ", "));
  if (p.data_location() == onnx::TensorProto::EXTERNAL) return;  // checked against its file in load_external
  uint64_t stored = 0;
  const char* form = "raw_data";
  if (raw_view && !raw_view->empty()) stored = raw_view->size();
  else if (p.has_raw_data()) stored = p.raw_data().size();
  else if (has_typed_data(p)) {
    if (ir::traits(t.dtype).bits < 8) return;  // packed sub-byte typed data: decode_typed decides
    uint64_t entries = static_cast<uint64_t>(p.float_data_size()) + p.int32_data_size() + p.int64_data_size() +
                       p.double_data_size() + p.uint64_data_size() + p.string_data_size();
    const bool complex = t.dtype == DType::Complex64 || t.dtype == DType::Complex128;
    if (entries != *count * (complex ? 2 : 1))
      bad_input("{}: {} declares {} elements (shape [{}]) but stores {} typed values", where(ctx), what, *count,
                fmt::join(t.dims, ", "), entries);
    return;
  } else {
    form = "data";
  }
  if (stored != *bytes)
    bad_input("{}: {} declares a size of {} bytes ({} [{}]) but stores {} bytes of {}", where(ctx), what, *bytes,
              ir::dtype_name(t.dtype), fmt::join(t.dims, ", "), stored, form);
}

// `raw_view`, when given, is the tensor's raw_data still in the mapped model file.
Tensor tensor_from_proto(LoadCtx& ctx, onnx::TensorProto& p, const std::string& what,
                         const ir::Buffer* raw_view = nullptr) {
  Tensor t;
  t.name = p.name();
  t.dtype_code = p.data_type();
  t.dtype = ir::is_known_dtype(t.dtype_code) ? static_cast<DType>(t.dtype_code) : DType::Undefined;
  t.dims.assign(p.dims().begin(), p.dims().end());
  bool dims_ok = true;
  for (auto d : t.dims) dims_ok = dims_ok && d >= 0;
  check_declared_size(ctx, p, t, what, raw_view);

  if (raw_view && !raw_view->empty()) {
    if (!has_typed_data(p) && t.dtype != DType::Undefined && t.dtype != DType::String && dims_ok &&
        raw_view->size() == t.nbytes() && p.data_location() != onnx::TensorProto::EXTERNAL) {
      t.data = *raw_view;
      t.storage = Tensor::Storage::Raw;
      p.SerializeToString(&t.residual);
      return t;
    }
    p.set_raw_data(raw_view->data(), raw_view->size());  // unusual tensor: the general path below
  }
  if (p.data_location() == onnx::TensorProto::EXTERNAL) {
    if (!dims_ok) bad_input("{}: {} has a negative dimension", where(ctx), what);
    load_external(ctx, what, p, t);
    p.clear_external_data();
    p.clear_data_location();
  } else if (p.has_raw_data() && !has_typed_data(p) && t.dtype != DType::Undefined && t.dtype != DType::String &&
             dims_ok && p.raw_data().size() == t.nbytes()) {
    t.data = ir::Buffer::from_string(std::move(*p.mutable_raw_data()));
    p.clear_raw_data();
    t.storage = Tensor::Storage::Raw;
  } else if (!p.has_raw_data() && t.dtype != DType::Undefined && dims_ok && decode_typed(p, t)) {
    clear_typed_data(p);
    t.storage = Tensor::Storage::Typed;
  } else {
    t.storage = Tensor::Storage::Opaque;  // kept byte for byte in the residual
  }
  p.SerializeToString(&t.residual);
  return t;
}

ir::TensorType type_from_proto(const onnx::TypeProto& tp) {
  ir::TensorType t;
  const onnx::TypeProto* inner = &tp;
  std::string container;
  while (!inner->has_tensor_type()) {
    const char* kind = nullptr;
    const onnx::TypeProto* next = nullptr;
    if (inner->has_sequence_type()) {
      kind = "sequence";
      next = &inner->sequence_type().elem_type();
    } else if (inner->has_optional_type()) {
      kind = "optional";
      next = &inner->optional_type().elem_type();
    } else if (inner->has_map_type()) {
      kind = "map";
    } else if (inner->has_sparse_tensor_type()) {
      kind = "sparse_tensor";
    } else if (inner->value_case() != onnx::TypeProto::VALUE_NOT_SET) {
      kind = "other";
    }
    if (!kind) return t;
    container = container.empty() ? kind : container + "(" + kind;
    if (!next) break;
    inner = next;
  }
  if (!container.empty()) {
    size_t opens = std::count(container.begin(), container.end(), '(');
    t.container = container + std::string(opens, ')');
  }
  if (!inner->has_tensor_type()) return t;
  t.is_tensor = container.empty();
  t.elem_code = inner->tensor_type().elem_type();
  if (inner->tensor_type().has_shape()) {
    t.has_shape = true;
    for (auto& d : inner->tensor_type().shape().dim()) {
      ir::Dim dim;
      if (d.has_dim_value()) dim.value = d.dim_value();
      else if (d.has_dim_param()) dim.param = d.dim_param();
      t.dims.push_back(dim);
    }
  }
  return t;
}

void build_graph(LoadCtx& ctx, onnx::GraphProto& gp, ir::Graph& g);

// A name this graph reads but does not define: an outer-scope value (captured) or a
// dangling reference that is kept as written.
ir::Value* resolve_name(ir::Graph& g, const std::string& name, bool capture = true) {
  if (name.empty()) return nullptr;
  if (ir::Value* v = g.find_value(name)) return v;
  if (capture && g.parent()) {
    ir::Value* outer = resolve_name(*g.parent(), name, true);
    if (outer && outer->kind != ir::Value::Kind::Undefined) {
      ir::Value* v = g.new_value(name, ir::Value::Kind::Captured);
      v->outer = outer;
      ir::Node* owner = g.owner();
      owner->implicit_inputs.push_back(outer);
      outer->consumers.push_back(owner);
      return v;
    }
  }
  return g.new_value(name, ir::Value::Kind::Undefined);
}

void build_attribute(LoadCtx& ctx, onnx::AttributeProto& ap, ir::Attribute& a, ir::Graph& g, ir::Node* n) {
  a.name = ap.name();
  a.type = static_cast<ir::AttrType>(ap.type());
  a.f = ap.f();
  a.i = ap.i();
  a.s = ap.s();
  a.floats.assign(ap.floats().begin(), ap.floats().end());
  a.ints.assign(ap.ints().begin(), ap.ints().end());
  a.strings.assign(ap.strings().begin(), ap.strings().end());
  std::string what = fmt::format("attribute '{}' of node '{}'", a.name, n->name);
  if (ap.has_t()) {
    a.t = std::make_shared<Tensor>(tensor_from_proto(ctx, *ap.mutable_t(), "tensor in " + what));
    ap.clear_t();
  }
  for (auto& tp : *ap.mutable_tensors()) a.tensors.push_back(tensor_from_proto(ctx, tp, "tensor in " + what));
  ap.clear_tensors();
  if (ap.has_g()) {
    a.g = std::make_unique<ir::Graph>(&g, n);
    build_graph(ctx, *ap.mutable_g(), *a.g);
    ap.clear_g();
  }
  for (auto& sg : *ap.mutable_graphs()) {
    a.graphs.push_back(std::make_unique<ir::Graph>(&g, n));
    build_graph(ctx, sg, *a.graphs.back());
  }
  ap.clear_graphs();
  ap.SerializeToString(&a.residual);
}

ir::ValueInfo value_info_from_proto(ir::Graph& g, const onnx::ValueInfoProto& vp, bool capture) {
  ir::ValueInfo vi;
  vi.value = resolve_name(g, vp.name(), capture);
  vi.loaded = type_from_proto(vp.type());
  vp.SerializeToString(&vi.proto);
  if (vi.value && !vi.value->type.is_tensor) vi.value->type = vi.loaded;
  return vi;
}

void build_graph(LoadCtx& ctx, onnx::GraphProto& gp, ir::Graph& g) {
  pb::RepeatedPtrField<onnx::NodeProto> nodes;
  pb::RepeatedPtrField<onnx::TensorProto> inits;
  pb::RepeatedPtrField<onnx::ValueInfoProto> inputs, outputs, infos;
  nodes.Swap(gp.mutable_node());
  inits.Swap(gp.mutable_initializer());
  inputs.Swap(gp.mutable_input());
  outputs.Swap(gp.mutable_output());
  infos.Swap(gp.mutable_value_info());
  g.name = gp.name();
  gp.SerializeToString(&g.residual);

  const bool top_level = g.parent() == nullptr;
  for (int k = 0; k < inits.size(); ++k) {
    auto& tp = inits[k];
    std::string what = fmt::format("initializer '{}'", tp.name());
    const ir::Buffer* view =
        top_level && static_cast<size_t>(k) < ctx.raw_views.size() ? &ctx.raw_views[k] : nullptr;
    if (!tp.name().empty() && g.find_value(tp.name()))
      bad_input("{}: graph '{}' has two initializers named '{}'", where(ctx), gp.name(), tp.name());
    ir::Value* v = g.add_initializer(tensor_from_proto(ctx, tp, what, view));
    v->type = {};  // declared types come from input/value_info entries only
  }
  std::unordered_set<std::string> input_names;
  for (auto& vp : inputs) {
    if (!vp.name().empty() && !input_names.insert(vp.name()).second)
      bad_input("{}: graph '{}' lists input '{}' twice", where(ctx), gp.name(), vp.name());
    ir::Value* v = g.find_value(vp.name());
    if (!v && !vp.name().empty()) v = g.new_value(vp.name(), ir::Value::Kind::Input);
    ir::ValueInfo vi;
    vi.value = v;
    vi.loaded = type_from_proto(vp.type());
    vp.SerializeToString(&vi.proto);
    if (v) v->type = vi.loaded;
    g.inputs.push_back(std::move(vi));
  }
  // Nodes: outputs first, so that inputs can be bound in any file order.
  std::vector<ir::Node*> created;
  created.reserve(nodes.size());
  for (auto& np : nodes) {
    std::vector<std::string> outs(np.output().begin(), np.output().end());
    // ONNX graphs are single-assignment: a second definition of a name would leave readers
    // bound to one definition and the executor's slots to another.
    for (size_t i = 0; i < outs.size(); ++i)
      if (const auto& o = outs[i]; !o.empty() && (g.find_value(o) || std::count(outs.begin(), outs.begin() + i, o)))
        bad_input("{}: node '{}' ({}) writes '{}', which the graph already defines (names must be assigned once)",
                  where(ctx), np.name(), np.op_type(), o);
    ir::Node* n = g.add_node(np.op_type(), {}, outs, {}, np.name(), np.domain());
    created.push_back(n);
  }
  for (int k = 0; k < nodes.size(); ++k) {
    auto& np = nodes[k];
    ir::Node* n = created[k];
    for (auto& name : np.input()) {
      ir::Value* v = resolve_name(g, name);
      n->inputs.push_back(v);
      if (v) v->consumers.push_back(n);
    }
    n->attributes.resize(np.attribute_size());
    for (int a = 0; a < np.attribute_size(); ++a) build_attribute(ctx, *np.mutable_attribute(a), n->attributes[a], g, n);
    np.clear_input();
    np.clear_output();
    np.clear_attribute();
    np.SerializeToString(&n->residual);
  }
  for (auto& vp : outputs) g.outputs.push_back(value_info_from_proto(g, vp, true));
  for (auto& vp : infos) g.value_info.push_back(value_info_from_proto(g, vp, false));
}

// Copies a serialized ModelProto without the raw_data payloads (>= kViewAbove bytes) of its
// top-level graph's initializers; `views` gets those payloads as buffers on the mapped file,
// by initializer index. False when the bytes are not in the expected shape (then the caller
// parses the whole file with protobuf, which also reports corruption).
constexpr uint64_t kViewAbove = 4096;

bool strip_raw_data(const MappedFile& mf, std::string& out, std::vector<ir::Buffer>& views) {
  const uint8_t* d = mf.data();
  const size_t size = mf.size();
  size_t pos = 0;
  wire::Field f;
  bool seen_graph = false;
  out.clear();
  views.clear();
  while (pos < size) {
    if (!wire::next_field(d, size, pos, f)) return false;
    if (f.number != 7 || f.type != wire::kLen) {
      out.append(reinterpret_cast<const char*>(d + f.begin), f.end - f.begin);
      continue;
    }
    if (seen_graph) return false;  // a repeated graph field merges: leave that to protobuf
    seen_graph = true;
    std::string graph;
    size_t gpos = f.payload;
    const size_t gend = f.end;
    wire::Field gf;
    while (gpos < gend) {
      if (!wire::next_field(d, gend, gpos, gf)) return false;
      if (gf.number != 5 || gf.type != wire::kLen) {
        graph.append(reinterpret_cast<const char*>(d + gf.begin), gf.end - gf.begin);
        continue;
      }
      std::string tensor;
      ir::Buffer view;
      int raw_fields = 0;
      size_t tpos = gf.payload;
      wire::Field tf;
      while (tpos < gf.end) {
        if (!wire::next_field(d, gf.end, tpos, tf)) return false;
        if (tf.number == 9 && tf.type == wire::kLen) {
          if (++raw_fields > 1) return false;
          if (tf.length >= kViewAbove) {
            view = mf.view(tf.payload, tf.length);
            continue;
          }
        }
        tensor.append(reinterpret_cast<const char*>(d + tf.begin), tf.end - tf.begin);
      }
      graph += wire::len_prefix(5, tensor.size());
      graph += tensor;
      views.push_back(std::move(view));
    }
    out += wire::len_prefix(7, graph.size());
    out += graph;
  }
  return true;
}

// Other formats users hand us by mistake, told apart by their first bytes.
void sniff_not_onnx(const fs::path& path, const uint8_t* p, uint64_t n) {
  auto starts = [&](std::string_view m) { return n >= m.size() && std::memcmp(p, m.data(), m.size()) == 0; };
  std::string f = path.string();
  if (starts("PK\x03\x04"))
    bad_input("{}: this is a zip archive (a PyTorch .pt/.pth checkpoint?), not an ONNX model; export it to ONNX first", f);
  if (starts("GGUF")) bad_input("{}: this is a GGUF file (llama.cpp), not an ONNX model", f);
  if (starts("\x93NUMPY")) bad_input("{}: this is a NumPy .npy array, not an ONNX model", f);
  if (starts("\x89HDF")) bad_input("{}: this is an HDF5 file (Keras?), not an ONNX model", f);
  if (n >= 1 && p[0] == 0x80 && n >= 2 && p[1] <= 5)
    bad_input("{}: this is a Python pickle (a PyTorch checkpoint?), not an ONNX model", f);
  if (n >= 10 && p[8] == '{') {
    uint64_t hdr;
    std::memcpy(&hdr, p, 8);
    if (hdr > 0 && hdr < n) bad_input("{}: this is a safetensors file, not an ONNX model", f);
  }
  size_t i = 0;
  while (i < n && i < 64 && std::isspace(p[i])) ++i;
  if (i < n && (p[i] == '{' || p[i] == '['))
    bad_input("{}: this is a JSON file, not an ONNX model (a recipe? use 'slmops run')", f);
  if (i < n && p[i] == '<') bad_input("{}: this is a text/XML/HTML file, not an ONNX model", f);
}

// ---------------------------------------------------------------------------------------------
// Saving

struct Placement {
  const Tensor* tensor;
  uint64_t offset;
};

struct SaveCtx {
  const SaveOptions* opts;
  bool external = false;
  std::string data_location;
  uint64_t cursor = 0;
  std::vector<Placement> plan;
  // Top-level initializers whose raw_data is written straight from their buffer rather than
  // copied into the ModelProto (by initializer index; nullptr: inside the proto).
  std::vector<const Tensor*> spliced;
};

bool eligible_for_external(const Tensor& t) {
  return t.storage != Tensor::Storage::Opaque && t.dtype != DType::String && t.dtype != DType::Undefined;
}

template <typename Field, typename Vec>
bool same_repeated(const Field& f, const Vec& v) {
  if (static_cast<size_t>(f.size()) != v.size()) return false;
  for (size_t i = 0; i < v.size(); ++i)
    if (!(f.Get(static_cast<int>(i)) == v[i])) return false;
  return true;
}

// Sets a proto2 string field when the IR's value differs from what the residual holds.
template <typename Has, typename Get, typename Set>
void sync_string(Has has, Get get, Set set, const std::string& value) {
  if (get() != value || (!has() && !value.empty())) set(value);
}

// `splice_index` >= 0 for the top-level graph's initializers (their index).
void tensor_to_proto(SaveCtx& ctx, const Tensor& t, const std::string& name, onnx::TensorProto& p,
                     bool may_go_external, int splice_index = -1) {
  if (!t.residual.empty()) p.ParseFromString(t.residual);
  sync_string([&] { return p.has_name(); }, [&] { return p.name(); }, [&](auto& v) { p.set_name(v); }, name);
  if (p.data_type() != t.dtype_code || (!p.has_data_type() && t.dtype_code != 0)) p.set_data_type(t.dtype_code);
  if (!same_repeated(p.dims(), t.dims)) {
    p.clear_dims();
    for (auto d : t.dims) p.add_dims(d);
  }
  if (t.storage == Tensor::Storage::Opaque) return;
  if (may_go_external && ctx.external && eligible_for_external(t) && t.nbytes() >= ctx.opts->external_threshold) {
    uint64_t align = t.nbytes() >= ctx.opts->page_align_above ? 4096 : ctx.opts->align;
    uint64_t off = (ctx.cursor + align - 1) / align * align;
    ctx.plan.push_back({&t, off});
    ctx.cursor = off + t.nbytes();
    p.clear_external_data();  // entries a tensor stored inline may carry, which readers would also see
    auto add = [&](const char* k, const std::string& v) {
      auto* e = p.add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", ctx.data_location);
    add("offset", std::to_string(off));
    add("length", std::to_string(t.nbytes()));
    p.set_data_location(onnx::TensorProto::EXTERNAL);
    return;
  }
  if (t.storage == Tensor::Storage::Typed) {
    encode_typed(t, p);
  } else if (splice_index >= 0 && t.data.size() >= kViewAbove) {
    ctx.spliced[splice_index] = &t;
  } else {
    p.set_raw_data(t.data.data(), t.data.size());
  }
}

void type_to_proto(const ir::TensorType& t, onnx::TypeProto& tp) {
  tp.Clear();
  if (!t.is_tensor) return;
  auto* tt = tp.mutable_tensor_type();
  tt->set_elem_type(t.elem_code);
  if (t.has_shape) {
    auto* shape = tt->mutable_shape();
    for (auto& d : t.dims) {
      auto* dp = shape->add_dim();
      if (d.known()) dp->set_dim_value(d.value);
      else if (!d.param.empty()) dp->set_dim_param(d.param);
    }
  }
}

void value_info_to_proto(const ir::ValueInfo& vi, onnx::ValueInfoProto& vp) {
  if (!vi.proto.empty()) vp.ParseFromString(vi.proto);
  const std::string& name = vi.value ? vi.value->file_name() : vp.name();
  sync_string([&] { return vp.has_name(); }, [&] { return vp.name(); }, [&](auto& v) { vp.set_name(v); }, name);
  const ir::TensorType& now = vi.value ? vi.value->type : vi.loaded;
  if (vi.proto.empty() || !(now == vi.loaded)) {
    if (now.is_tensor) type_to_proto(now, *vp.mutable_type());
  }
}

void graph_to_proto(SaveCtx& ctx, const ir::Graph& g, onnx::GraphProto& gp, bool top_level = false);

void attribute_to_proto(SaveCtx& ctx, const ir::Attribute& a, onnx::AttributeProto& ap) {
  bool fresh = a.residual.empty();
  if (!fresh) ap.ParseFromString(a.residual);
  sync_string([&] { return ap.has_name(); }, [&] { return ap.name(); }, [&](auto& v) { ap.set_name(v); }, a.name);
  auto type = static_cast<onnx::AttributeProto::AttributeType>(a.type);
  if (ap.type() != type || (!ap.has_type() && a.type != ir::AttrType::Undefined)) ap.set_type(type);
  if (ap.f() != a.f || (fresh && a.type == ir::AttrType::Float)) ap.set_f(a.f);
  if (ap.i() != a.i || (fresh && a.type == ir::AttrType::Int)) ap.set_i(a.i);
  if (ap.s() != a.s || (fresh && a.type == ir::AttrType::String)) ap.set_s(a.s);
  if (!same_repeated(ap.floats(), a.floats)) {
    ap.clear_floats();
    for (float f : a.floats) ap.add_floats(f);
  }
  if (!same_repeated(ap.ints(), a.ints)) {
    ap.clear_ints();
    for (auto i : a.ints) ap.add_ints(i);
  }
  if (!same_repeated(ap.strings(), a.strings)) {
    ap.clear_strings();
    for (auto& s : a.strings) ap.add_strings(s);
  }
  if (a.t) tensor_to_proto(ctx, *a.t, a.t->name, *ap.mutable_t(), false);
  for (auto& t : a.tensors) tensor_to_proto(ctx, t, t.name, *ap.add_tensors(), false);
  if (a.g) graph_to_proto(ctx, *a.g, *ap.mutable_g());
  for (auto& g : a.graphs) graph_to_proto(ctx, *g, *ap.add_graphs());
}

void node_to_proto(SaveCtx& ctx, const ir::Node& n, onnx::NodeProto& np) {
  if (!n.residual.empty()) np.ParseFromString(n.residual);
  for (ir::Value* v : n.inputs) np.add_input(v ? v->file_name() : std::string());
  for (ir::Value* v : n.outputs) np.add_output(v ? v->file_name() : std::string());
  sync_string([&] { return np.has_name(); }, [&] { return np.name(); }, [&](auto& v) { np.set_name(v); }, n.name);
  sync_string([&] { return np.has_op_type(); }, [&] { return np.op_type(); }, [&](auto& v) { np.set_op_type(v); },
              n.op_type);
  sync_string([&] { return np.has_domain(); }, [&] { return np.domain(); }, [&](auto& v) { np.set_domain(v); },
              n.domain);
  for (auto& a : n.attributes) attribute_to_proto(ctx, a, *np.add_attribute());
}

void graph_to_proto(SaveCtx& ctx, const ir::Graph& g, onnx::GraphProto& gp, bool top_level) {
  if (!g.residual.empty()) gp.ParseFromString(g.residual);
  sync_string([&] { return gp.has_name(); }, [&] { return gp.name(); }, [&](auto& v) { gp.set_name(v); }, g.name);
  for (auto& n : g.nodes()) node_to_proto(ctx, *n, *gp.add_node());
  if (top_level) ctx.spliced.assign(g.initializers.size(), nullptr);
  for (size_t k = 0; k < g.initializers.size(); ++k) {
    const ir::Value* v = g.initializers[k];
    tensor_to_proto(ctx, *v->initializer, v->file_name(), *gp.add_initializer(), true,
                    top_level ? static_cast<int>(k) : -1);
  }
  for (auto& vi : g.inputs) value_info_to_proto(vi, *gp.add_input());
  for (auto& vi : g.outputs) value_info_to_proto(vi, *gp.add_output());
  for (auto& vi : g.value_info) value_info_to_proto(vi, *gp.add_value_info());
}

void model_to_proto(SaveCtx& ctx, const ir::Model& m, onnx::ModelProto& mp) {
  if (!m.residual.empty()) mp.ParseFromString(m.residual);
  if (mp.ir_version() != m.ir_version || (!mp.has_ir_version() && m.ir_version)) mp.set_ir_version(m.ir_version);
  sync_string([&] { return mp.has_producer_name(); }, [&] { return mp.producer_name(); },
              [&](auto& v) { mp.set_producer_name(v); }, m.producer_name);
  sync_string([&] { return mp.has_producer_version(); }, [&] { return mp.producer_version(); },
              [&](auto& v) { mp.set_producer_version(v); }, m.producer_version);
  sync_string([&] { return mp.has_domain(); }, [&] { return mp.domain(); }, [&](auto& v) { mp.set_domain(v); },
              m.domain);
  sync_string([&] { return mp.has_doc_string(); }, [&] { return mp.doc_string(); },
              [&](auto& v) { mp.set_doc_string(v); }, m.doc_string);
  if (mp.model_version() != m.model_version || (!mp.has_model_version() && m.model_version))
    mp.set_model_version(m.model_version);
  std::vector<ir::OpsetImport> have;
  for (auto& o : mp.opset_import()) have.push_back({o.domain(), o.version()});
  if (have != m.opsets) {
    mp.clear_opset_import();
    for (auto& o : m.opsets) {
      auto* op = mp.add_opset_import();
      op->set_domain(o.domain);
      op->set_version(o.version);
    }
  }
  std::vector<std::pair<std::string, std::string>> meta;
  for (auto& kv : mp.metadata_props()) meta.emplace_back(kv.key(), kv.value());
  if (meta != m.metadata) {
    mp.clear_metadata_props();
    for (auto& [k, v] : m.metadata) {
      auto* e = mp.add_metadata_props();
      e->set_key(k);
      e->set_value(v);
    }
  }
  if (m.graph) graph_to_proto(ctx, *m.graph, *mp.mutable_graph(), true);
}

void write_buffer(AtomicFile& f, const ir::Buffer& b) {
  if (b.source()) f.copy_from(b.source()->fd(), b.file_offset(), b.size());
  else f.write(b.data(), b.size());
}

// Writes `mp` as protobuf would serialize it, with the raw_data of spliced initializers
// taken from their buffers. Protobuf writes known fields in ascending number order, so a
// message is (fields < n) + field n + (fields > n): ModelProto.graph is 7,
// GraphProto.initializer 5, TensorProto.raw_data 9. Returns the bytes written.
uint64_t write_model(onnx::ModelProto& mp, const std::vector<const Tensor*>& spliced, AtomicFile& out) {
  bool any = false;
  for (auto* t : spliced) any = any || t;
  if (!any) {
    pb::io::FileOutputStream s(out.fd(), 1 << 20);
    if (!mp.SerializeToZeroCopyStream(&s) || !s.Flush())
      failure("{}: write failed: {}", out.target().string(), std::strerror(s.GetErrno()));
    return mp.ByteSizeLong();
  }
  onnx::GraphProto graph;
  graph.Swap(mp.mutable_graph());
  mp.clear_graph();
  pb::RepeatedPtrField<onnx::TensorProto> inits;
  inits.Swap(graph.mutable_initializer());

  struct Piece {
    std::string head, tail;  // the tensor's fields before and after raw_data
    const Tensor* data;
  };
  std::vector<Piece> pieces;
  uint64_t graph_len = 0;
  for (int k = 0; k < inits.size(); ++k) {
    std::string bytes = inits[k].SerializeAsString();
    const Tensor* t = spliced[k];
    Piece pc{std::move(bytes), {}, t};
    if (t) {
      std::string_view h, tl;
      wire::split_before(pc.head, 10, h, tl);
      pc.tail = std::string(tl);
      pc.head.resize(h.size());
      pc.head += wire::len_prefix(9, t->data.size());
    }
    uint64_t len = pc.head.size() + (t ? t->data.size() : 0) + pc.tail.size();
    pc.head.insert(0, wire::len_prefix(5, len));
    graph_len += pc.head.size() + (t ? t->data.size() : 0) + pc.tail.size();
    pieces.push_back(std::move(pc));
  }
  std::string gbytes = graph.SerializeAsString(), mbytes = mp.SerializeAsString();
  std::string_view g_head, g_tail, m_head, m_tail;
  wire::split_before(gbytes, 5, g_head, g_tail);
  wire::split_before(mbytes, 7, m_head, m_tail);
  graph_len += gbytes.size();
  const uint64_t total = m_head.size() + wire::len_prefix(7, graph_len).size() + graph_len + m_tail.size();
  if (total > kProtobufLimit)
    bad_input("{}: the model needs {} bytes, over protobuf's 2 GiB limit; save it with external data "
              "(--external-data always)",
              out.target().string(), total);
  out.write(m_head);
  out.write(wire::len_prefix(7, graph_len));
  out.write(g_head);
  for (auto& pc : pieces) {
    out.write(pc.head);
    if (pc.data) write_buffer(out, pc.data->data);
    out.write(pc.tail);
  }
  out.write(g_tail);
  out.write(m_tail);
  return total;
}

void visit_tensors(const ir::Graph& g, const std::function<void(const Tensor&, bool)>& fn) {
  for (ir::Value* v : g.initializers) fn(*v->initializer, true);
  for (auto& n : g.nodes())
    for (auto& a : n->attributes) {
      if (a.t) fn(*a.t, false);
      for (auto& t : a.tensors) fn(t, false);
      if (a.g) visit_tensors(*a.g, fn);
      for (auto& sg : a.graphs) visit_tensors(*sg, fn);
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

// The model's fields and graph from `mp` (whose graph is consumed); the rest of `mp` becomes
// the model's residual.
void model_from_proto(LoadCtx& ctx, onnx::ModelProto& mp, ir::Model& m) {
  m.ir_version = mp.ir_version();
  m.producer_name = mp.producer_name();
  m.producer_version = mp.producer_version();
  m.domain = mp.domain();
  m.doc_string = mp.doc_string();
  m.model_version = mp.model_version();
  for (auto& o : mp.opset_import()) m.opsets.push_back({o.domain(), o.version()});
  for (auto& kv : mp.metadata_props()) m.metadata.emplace_back(kv.key(), kv.value());
  m.graph = std::make_unique<ir::Graph>();
  build_graph(ctx, *mp.mutable_graph(), *m.graph);
  mp.clear_graph();
  mp.SerializeToString(&m.residual);
}

ir::Model load_model(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) bad_input("{}: no such file", path.string());
  if (fs::is_directory(path, ec)) bad_input("{}: is a folder, expected an .onnx file", path.string());
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    bad_input("{}: not a regular file (a FIFO or device?); give an .onnx file", path.string());  // open() would block on a FIFO
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad_input("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct FdGuard {
    int fd;
    ~FdGuard() { ::close(fd); }
  } guard{fd};
  off_t size = ::lseek(fd, 0, SEEK_END);
  ::lseek(fd, 0, SEEK_SET);
  if (size == 0) bad_input("{}: file is empty, not an ONNX model", path.string());
  if (static_cast<uint64_t>(size) > kProtobufLimit)
    bad_input("{}: file is {} bytes, over protobuf's 2 GiB limit for one message; large models keep their weights "
              "as external data",
              path.string(), size);
  uint8_t head[64] = {};
  ssize_t got = ::pread(fd, head, sizeof head, 0);
  sniff_not_onnx(path, head, got > 0 ? static_cast<uint64_t>(got) : 0);

  LoadCtx ctx;
  onnx::ModelProto mp;
  {
    // Weights stay in the mapped file: parse the model without their raw_data payloads.
    auto mf = MappedFile::open(path);
    std::string stripped;
    bool ok = strip_raw_data(*mf, stripped, ctx.raw_views)
                  ? mp.ParseFromString(stripped)
                  : mp.ParseFromArray(mf->data(), static_cast<int>(mf->size()));
    if (!ok) bad_input("{}: not a valid ONNX model (the protobuf data is truncated or corrupt)", path.string());
  }
  if (!mp.has_graph() || !mp.has_ir_version())
    bad_input("{}: not an ONNX model (protobuf parses, but it has no {})", path.string(),
              mp.has_graph() ? "ir_version" : "graph");
  if (mp.ir_version() < 1 || mp.ir_version() > 100)
    bad_input("{}: not an ONNX model (ir_version {} is out of range)", path.string(), mp.ir_version());

  ctx.model_path = path;
  ctx.model_dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  ctx.model_dir_real = fs::canonical(ctx.model_dir, ec);
  ctx.sources.push_back(fs::absolute(path).lexically_normal().string());

  ir::Model m;
  m.path = path.string();
  model_from_proto(ctx, mp, m);
  m.source_files = std::move(ctx.sources);
  return m;
}

ir::Model convert_opset(const ir::Model& m, int64_t target) {
  // The model as a ModelProto without the payloads of its large initializers (placeholders
  // with their name, type and dims: no adapter reads weights), shapes inferred (the
  // broadcasting and Softmax adapters need them), converted, and rebuilt with the original
  // weight buffers: nothing is copied.
  SaveOptions opts;
  opts.external = ExternalData::Never;
  SaveCtx ctx;
  ctx.opts = &opts;
  onnx::ModelProto mp;
  model_to_proto(ctx, m, mp);
  std::unordered_map<std::string, const Tensor*> kept;
  for (size_t k = 0; k < ctx.spliced.size(); ++k)
    if (ctx.spliced[k]) kept[mp.graph().initializer(static_cast<int>(k)).name()] = ctx.spliced[k];
  std::unordered_set<std::string> declared;
  for (auto& vi : mp.graph().value_info()) declared.insert(vi.name());
  try {
    onnx::shape_inference::InferShapes(mp);
  } catch (const std::exception&) {
    // Inference only helps the adapters; those that need a shape say so below.
  }
  onnx::ModelProto out;
  try {
    out = convert_version(mp, target);
  } catch (const std::exception& e) {
    // libonnx's messages carry its source location and assertion text first:
    // "./onnx/.../BaseConverter.h:66: adapter_lookup: Assertion `false` failed: No Adapter ...".
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    if (auto at = msg.find("failed: "); at != std::string::npos) msg = msg.substr(at + 8);
    bad_input("--opset {}: {} cannot be converted: {}", target, m.path.empty() ? "the model" : m.path, msg);
  }
  // Drop the value_info that inference added (the file declares what it declared).
  auto* vis = out.mutable_graph()->mutable_value_info();
  for (int k = vis->size() - 1; k >= 0; --k)
    if (!declared.count(vis->Get(k).name())) vis->DeleteSubrange(k, 1);

  LoadCtx lctx;
  lctx.model_path = m.path;
  lctx.raw_views.resize(static_cast<size_t>(out.graph().initializer_size()));
  for (int k = 0; k < out.graph().initializer_size(); ++k)
    if (auto it = kept.find(out.graph().initializer(k).name()); it != kept.end())
      lctx.raw_views[static_cast<size_t>(k)] = it->second->data;
  ir::Model r;
  r.path = m.path;
  model_from_proto(lctx, out, r);
  r.source_files = m.source_files;
  return r;
}

// Points every external-data location `from` of the top-level initializers at `to`.
static void set_data_location(onnx::ModelProto& mp, const std::string& from, const std::string& to) {
  if (from == to) return;
  for (auto& init : *mp.mutable_graph()->mutable_initializer())
    for (auto& kv : *init.mutable_external_data())
      if (kv.key() == "location" && kv.value() == from) kv.set_value(to);
}

// Removes interim data files (`<X>.data.<16 hex>`) of earlier, killed writes to `model_path`,
// except `keep` (the file the model just written names).
static void remove_stale_interims(const fs::path& model_path, const std::string& keep) {
  fs::path dir = model_path.parent_path().empty() ? fs::path(".") : model_path.parent_path();
  const std::string prefix = model_path.filename().string() + ".data.";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < prefix.size() + 16 || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string interim = name.substr(0, prefix.size() + 16);
    if (interim.find_first_not_of("0123456789abcdef", prefix.size()) != std::string::npos) continue;
    if (name.size() == interim.size()) {
      if (fs::path(keep).filename() != name) ::unlink(it->path().c_str());
    } else {
      remove_stale_temporaries(dir / interim);  // the interim's own temporary, of a killed run
    }
  }
}

void check_save_targets(const ir::Model& model, const fs::path& path) {
  std::vector<fs::path> inputs(model.source_files.begin(), model.source_files.end());
  check_output_path(path, inputs);
  fs::path data_path = path;
  data_path += ".data";
  for (auto& in : inputs)
    if (same_file(data_path, in))
      bad_input("{}: its data file '{}' would overwrite the input's file '{}'; choose another output path",
                path.string(), data_path.string(), in.string());
}

SaveReport save_model(const ir::Model& model, const fs::path& path, const SaveOptions& opts) {
  std::vector<fs::path> inputs(model.source_files.begin(), model.source_files.end());
  fs::path data_path = path;
  data_path += ".data";
  check_save_targets(model, path);

  SaveCtx ctx;
  ctx.opts = &opts;
  uint64_t total = 0;
  bool had_external = false;
  if (model.graph)
    visit_tensors(*model.graph, [&](const Tensor& t, bool) {
      total += t.data.size();
      had_external = had_external || t.storage == Tensor::Storage::External;
    });
  switch (opts.external) {
    case ExternalData::Always: ctx.external = true; break;
    case ExternalData::Never: ctx.external = false; break;
    case ExternalData::Auto: ctx.external = had_external || total > kAutoExternalAbove; break;
  }
  ctx.data_location = data_path.filename().string();

  onnx::ModelProto mp;
  model_to_proto(ctx, model, mp);
  uint64_t bytes = mp.ByteSizeLong();
  for (const Tensor* t : ctx.spliced)
    if (t) bytes += t->data.size() + 16;  // + tag and length prefixes
  if (bytes > kProtobufLimit)
    bad_input("{}: the model needs {} bytes, over protobuf's 2 GiB limit; save it with external data "
              "(--external-data always)",
              path.string(), bytes);

  SaveReport report;
  if (ctx.plan.empty()) {
    AtomicFile model_file(path);
    report.model_bytes = write_model(mp, ctx.spliced, model_file);
    model_file.commit();
    return report;
  }
  if (is_write_through_target(path))
    bad_input("{}: is a FIFO or a device, and this model's weights go to a second file beside it; write to a "
              "regular file, or use --external-data never",
              path.string());
  check_output_path(data_path, inputs);
  remove_stale_temporaries(data_path);  // also the hard links of step 3 below, of killed runs
  report.external_tensors = ctx.plan.size();
  report.data_file = data_path.string();

  // The pair (model file, data file) must be consistent at every instant, even when the run
  // is killed: the old model must never point at a new data file. When an old pair may be
  // in place, the new data first goes to an interim name that only the new model knows:
  //   1. write X.data.<r>; 2. X := model naming X.data.<r>        (new pair complete)
  //   3. X.data := hard link of X.data.<r>; 4. X := model naming X.data; 5. remove X.data.<r>
  // so the result is the same bytes as a fresh write. A killed run leaves a complete pair
  // (old or new) plus unreferenced files that the next write to X removes.
  std::error_code ec;
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  const bool old_pair = fs::exists(path, ec) && fs::exists(data_path, ec);
  const std::string final_name = data_path.filename().string();
  const std::string interim_name = final_name + "." + random_suffix();
  auto write_data = [&](const fs::path& target) {
    AtomicFile data_file(target);
    // The digest, on a thread of its own, of the bytes the file will hold: every piece is
    // queued before the first write, so the hash never waits for the writing (one large tensor
    // copied into the page cache would otherwise hold it back for as long as the copy takes).
    std::unique_ptr<Sha256Stream> hash = opts.sha256 ? std::make_unique<Sha256Stream>() : nullptr;
    if (hash) {
      uint64_t end = 0;
      for (auto& pl : ctx.plan) {
        hash->add_zeros(static_cast<size_t>(pl.offset - end));
        hash->add(pl.tensor->data.data(), pl.tensor->data.size());
        end = pl.offset + pl.tensor->data.size();
      }
    }
    for (auto& pl : ctx.plan) {
      data_file.pad_to(pl.offset);
      write_buffer(data_file, pl.tensor->data);
    }
    report.data_bytes = data_file.position();
    if (hash) report.data_sha256 = hash->hex();
    data_file.commit();
  };
  auto write_model_naming = [&](const std::string& location) {
    onnx::ModelProto copy = mp;  // small: the weights are external or spliced from their buffers
    set_data_location(copy, ctx.data_location, location);
    AtomicFile model_file(path);
    report.model_bytes = write_model(copy, ctx.spliced, model_file);
    model_file.commit();
  };
  if (!old_pair) {
    write_data(data_path);
    write_model_naming(final_name);
  } else {
    const fs::path interim = dir / interim_name;
    write_data(interim);
    write_model_naming(interim_name);  // from here on X and X.data.<r> are the new pair
    fs::path link_tmp = data_path;
    link_tmp += ".tmp-" + random_suffix();
    if (::link(interim.c_str(), link_tmp.c_str()) != 0) {
      report.data_file = interim.string();  // no hard links here: the new pair keeps the interim name
    } else if (::rename(link_tmp.c_str(), data_path.c_str()) != 0) {
      int err = errno;
      ::unlink(link_tmp.c_str());
      failure("{}: cannot rename into place: {}", data_path.string(), std::strerror(err));
    } else {
      write_model_naming(final_name);
      ::unlink(interim.c_str());  // only now: until the model above was in place, it named this file
    }
  }
  remove_stale_interims(path, report.data_file);
  return report;
}

namespace detail {

ir::Tensor tensor_from_proto(onnx::TensorProto& p, const std::string& what) {
  if (p.data_location() == onnx::TensorProto::EXTERNAL) bad_input("{}: external data is not allowed here", what);
  LoadCtx ctx;
  ctx.model_path = what;
  return formats::tensor_from_proto(ctx, p, what);
}

void tensor_to_proto(const ir::Tensor& t, onnx::TensorProto& p) {
  p.set_name(t.name);
  p.set_data_type(t.dtype_code);
  for (auto d : t.dims) p.add_dims(d);
  if (t.dtype == DType::String) {
    for (auto& s : t.strings) p.add_string_data(s);
  } else {
    p.set_raw_data(t.data.data(), t.data.size());
  }
}

}  // namespace detail

std::string canonical_model_bytes(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad_input("{}: cannot open: {}", path.string(), std::strerror(errno));
  onnx::ModelProto mp;
  bool ok;
  {
    pb::io::FileInputStream in(fd, 1 << 20);
    ok = mp.ParseFromZeroCopyStream(&in);
  }
  ::close(fd);
  if (!ok) bad_input("{}: not a valid ONNX model", path.string());
  return mp.SerializeAsString();
}

std::string_view external_data_name(ExternalData e) {
  switch (e) {
    case ExternalData::Auto: return "auto";
    case ExternalData::Always: return "always";
    case ExternalData::Never: return "never";
  }
  return "auto";
}

bool parse_external_data(std::string_view s, ExternalData& out) {
  for (auto e : {ExternalData::Auto, ExternalData::Always, ExternalData::Never})
    if (external_data_name(e) == s) {
      out = e;
      return true;
    }
  return false;
}

}  // namespace slmops::formats
