#include "formats/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "formats/file_util.h"
#include "ir/error.h"

namespace slmops::formats {

namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit

std::optional<ir::DType> dtype_of(const std::string& s) {
  static const std::map<std::string, ir::DType> table = {
      {"F64", ir::DType::Double},         {"F32", ir::DType::Float},
      {"F16", ir::DType::Float16},        {"BF16", ir::DType::BFloat16},
      {"I64", ir::DType::Int64},          {"I32", ir::DType::Int32},
      {"I16", ir::DType::Int16},          {"I8", ir::DType::Int8},
      {"U64", ir::DType::UInt64},         {"U32", ir::DType::UInt32},
      {"U16", ir::DType::UInt16},         {"U8", ir::DType::UInt8},
      {"BOOL", ir::DType::Bool},          {"F8_E4M3", ir::DType::Float8E4M3FN},
      {"F8_E5M2", ir::DType::Float8E5M2},
  };
  auto it = table.find(s);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

uint64_t unsigned_of(const nlohmann::json& v, const std::string& where, const char* what) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    bad_input("{}: {} must be non-negative integers, found {}", where, what, v.dump());
  return v.get<uint64_t>();
}

struct Entry {
  std::string name;
  ir::DType dtype;
  std::vector<int64_t> dims;
  uint64_t begin, end;
};

}  // namespace

const ir::Tensor& Checkpoint::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) bad_input("{}: no tensor '{}'", path, name);
  return it->second;
}

uint64_t Checkpoint::data_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.data.size();
  return n;
}

Checkpoint load_safetensors_file(const std::filesystem::path& file) {
  const std::string f = file.string();
  std::shared_ptr<MappedFile> m = MappedFile::open(file);
  if (m->size() < 8)
    bad_input("{}: not a safetensors file ({} bytes; it starts with an 8-byte header length)", f, m->size());
  const uint64_t n = le64(m->data());
  if (n > kMaxHeader) bad_input("{}: header length {} is larger than the {} bytes allowed", f, n, kMaxHeader);
  if (n > m->size() - 8)
    bad_input("{}: truncated: the header says it is {} bytes, the file has {} after the length", f, n, m->size() - 8);
  if (n == 0 || m->data()[8] != '{') bad_input("{}: the header is not a JSON object (it must start with '{{')", f);
  nlohmann::json h = nlohmann::json::parse(m->data() + 8, m->data() + 8 + n, nullptr, false);
  if (h.is_discarded() || !h.is_object()) bad_input("{}: the header is not valid JSON", f);
  const uint64_t data_start = 8 + n, data_len = m->size() - data_start;

  Checkpoint c;
  c.path = f;
  std::vector<Entry> entries;
  for (const auto& [name, info] : h.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) bad_input("{}: __metadata__ must be an object of strings", f);
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) bad_input("{}: __metadata__ '{}' must be a string", f, k);
        c.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = f + ": tensor '" + name + "'";
    if (name.empty()) bad_input("{}: a tensor has an empty name", f);
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      bad_input("{}: expected {{\"dtype\", \"shape\", \"data_offsets\"}}", where);
    if (!info["dtype"].is_string()) bad_input("{}: dtype must be a string", where);
    const std::string dt = info["dtype"].get<std::string>();
    const auto dtype = dtype_of(dt);
    if (!dtype)
      bad_input("{}: dtype {} is not supported (F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I8-I64, U8-U64, BOOL)", where,
                dt);
    const auto& shape = info["shape"];
    const auto& off = info["data_offsets"];
    if (!shape.is_array()) bad_input("{}: shape must be a list", where);
    if (!off.is_array() || off.size() != 2) bad_input("{}: data_offsets must be [begin, end]", where);
    Entry e{name, *dtype, {}, unsigned_of(off[0], where, "data_offsets"), unsigned_of(off[1], where, "data_offsets")};
    uint64_t numel = 1;
    for (const auto& d : shape) {
      const uint64_t v = unsigned_of(d, where, "shape dims");
      if (v > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel))
        bad_input("{}: shape {} is too large", where, shape.dump());
      e.dims.push_back(static_cast<int64_t>(v));
    }
    if (e.begin > e.end || e.end > data_len)
      bad_input("{}: data_offsets [{}, {}] leave the data ({} bytes)", where, e.begin, e.end, data_len);
    const uint64_t bits = static_cast<uint64_t>(ir::traits(e.dtype).bits);
    uint64_t want = 0;
    if (__builtin_mul_overflow(numel, bits / 8, &want) || want != e.end - e.begin)
      bad_input("{}: shape {} of {} needs {} bytes, data_offsets hold {}", where, shape.dump(), dt, numel * (bits / 8),
                e.end - e.begin);
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t expected = 0;
  for (const Entry& e : entries) {
    if (e.begin != expected)
      bad_input(
          "{}: tensor '{}' starts at data byte {}, expected {} (the data must be covered without holes or "
          "overlaps)",
          f, e.name, e.begin, expected);
    expected = e.end;
  }
  if (expected != data_len)
    bad_input("{}: the tensors cover {} bytes of data, the file holds {} (truncated, or bytes no tensor owns)", f,
              expected, data_len);
  for (Entry& e : entries) {
    ir::Tensor t;
    t.name = e.name;
    t.dtype = e.dtype;
    t.dtype_code = static_cast<int32_t>(e.dtype);
    t.dims = std::move(e.dims);
    t.data = m->view(data_start + e.begin, e.end - e.begin);
    c.names.push_back(e.name);
    c.file_of[e.name] = f;
    c.tensors.emplace(e.name, std::move(t));
  }
  return c;
}

Checkpoint load_checkpoint(const std::filesystem::path& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(p, ec)) return load_safetensors_file(p);
  const fs::path index = p / "model.safetensors.index.json";
  if (!path_exists(index)) {
    if (path_exists(p / "model.safetensors")) return load_safetensors_file(p / "model.safetensors");
    std::vector<fs::path> found;
    for (const auto& de : fs::directory_iterator(p, ec))
      if (de.path().extension() == ".safetensors") found.push_back(de.path());
    if (found.size() == 1) return load_safetensors_file(found[0]);
    if (found.empty())
      bad_input("{}: no model.safetensors, model.safetensors.index.json or *.safetensors file", p.string());
    bad_input("{}: {} .safetensors files and no model.safetensors.index.json saying which tensor is where", p.string(),
              found.size());
  }
  const std::string where = index.string();
  nlohmann::json j = nlohmann::json::parse(read_text_file(index), nullptr, false);
  if (j.is_discarded() || !j.is_object()) bad_input("{}: not valid JSON", where);
  if (!j.contains("weight_map") || !j["weight_map"].is_object() || j["weight_map"].empty())
    bad_input("{}: expected a non-empty \"weight_map\" {{tensor: file}}", where);
  const fs::path real_dir = fs::canonical(p, ec);
  std::map<std::string, std::vector<std::string>> by_shard;  // shard -> tensors the index puts there
  for (const auto& [name, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) bad_input("{}: weight_map['{}'] must be a file name", where, name);
    const std::string s = shard.get<std::string>();
    // A shard is a file of this folder: never a path that leaves it.
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos || s.find('\\') != std::string::npos)
      bad_input("{}: weight_map['{}'] names '{}'; shards must be file names inside the checkpoint folder", where, name,
                s);
    by_shard[s].push_back(name);
  }
  Checkpoint c;
  c.path = p.string();
  bool first = true;
  // Shards in file-name order (model-00001-of-00003, ...), so the order is the same every run.
  for (const auto& [shard, names] : by_shard) {
    const fs::path file = p / shard;
    if (!path_exists(file)) bad_input("{}: shard '{}' (holding '{}') does not exist", where, shard, names.front());
    const fs::path real = fs::canonical(file, ec);
    const fs::path rel = real.lexically_relative(real_dir);
    if (ec || rel.empty() || *rel.begin() == "..")
      bad_input("{}: shard '{}' leaves the checkpoint folder (through a link)", where, shard);
    Checkpoint part = load_safetensors_file(file);
    if (first) c.metadata = part.metadata;
    first = false;
    const std::set<std::string> listed(names.begin(), names.end());
    for (const std::string& name : names)
      if (!part.contains(name)) bad_input("{}: tensor '{}' is not in its shard '{}'", where, name, shard);
    for (const std::string& name : part.names) {
      if (!listed.count(name)) continue;  // transformers reads what the index lists, nothing else
      c.names.push_back(name);
      c.file_of[name] = part.file_of[name];
      c.tensors.emplace(name, std::move(part.tensors.at(name)));
    }
  }
  return c;
}

}  // namespace slmops::formats
