#include "formats/npz.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "formats/file_util.h"
#include "ir/error.h"
#include "ir/size.h"

namespace slmops::formats {

namespace {

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) { return le16(p) | (static_cast<uint32_t>(le16(p + 2)) << 16); }
uint64_t le64(const uint8_t* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

// numpy dtype descriptors ('<f4', '|u1', ...) to our types. Big-endian data is refused.
bool dtype_from_descr(const std::string& d, ir::DType& out) {
  if (d.size() < 3 || (d[0] != '<' && d[0] != '|' && d[0] != '=')) return false;
  static const std::map<std::string, ir::DType> table = {
      {"f4", ir::DType::Float},  {"f8", ir::DType::Double}, {"f2", ir::DType::Float16}, {"i1", ir::DType::Int8},
      {"i2", ir::DType::Int16},  {"i4", ir::DType::Int32},  {"i8", ir::DType::Int64},   {"u1", ir::DType::UInt8},
      {"u2", ir::DType::UInt16}, {"u4", ir::DType::UInt32}, {"u8", ir::DType::UInt64},  {"b1", ir::DType::Bool},
  };
  auto it = table.find(d.substr(1));
  if (it == table.end()) return false;
  out = it->second;
  return true;
}

std::string descr_of(ir::DType t) {
  switch (t) {
    case ir::DType::Float: return "<f4";
    case ir::DType::Double: return "<f8";
    case ir::DType::Float16: return "<f2";
    case ir::DType::Int8: return "|i1";
    case ir::DType::Int16: return "<i2";
    case ir::DType::Int32: return "<i4";
    case ir::DType::Int64: return "<i8";
    case ir::DType::UInt8: return "|u1";
    case ir::DType::UInt16: return "<u2";
    case ir::DType::UInt32: return "<u4";
    case ir::DType::UInt64: return "<u8";
    case ir::DType::Bool: return "|b1";
    default: bad_input("arrays of type {} cannot be written to .npz", ir::dtype_name(t));
  }
}

// Value of `key` in the header dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }".
std::string header_value(const std::string& h, const std::string& key, const std::string& what) {
  auto k = h.find("'" + key + "'");
  if (k == std::string::npos) bad_input("{}: .npy header has no '{}'", what, key);
  auto colon = h.find(':', k);
  size_t b = colon == std::string::npos ? std::string::npos : h.find_first_not_of(' ', colon + 1);
  if (b == std::string::npos) bad_input("{}: .npy header has no value for '{}'", what, key);
  const char open = h[b];
  if (open == '\'' || open == '(') {
    size_t e = h.find(open == '(' ? ')' : '\'', b + 1);
    if (e == std::string::npos) bad_input("{}: .npy header value of '{}' is not closed", what, key);
    return h.substr(b + 1, e - b - 1);
  }
  size_t e = h.find_first_of(",}", b);
  return h.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

// The shape tuple's text ("3, 4" or "5," or "") as dims; every entry a whole number >= 0.
std::vector<int64_t> parse_shape(const std::string& shape, const std::string& what) {
  std::vector<int64_t> dims;
  size_t pos = 0;
  while (pos < shape.size()) {
    size_t comma = shape.find(',', pos);
    std::string part = shape.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    part.erase(0, part.find_first_not_of(' '));
    part.erase(part.find_last_not_of(" L") + 1);  // Python 2 headers write longs as 3L
    if (!part.empty()) {
      int64_t v = 0;
      bool ok = true;
      for (char c : part)
        ok = ok && c >= '0' && c <= '9' && !__builtin_mul_overflow(v, 10, &v) && !__builtin_add_overflow(v, c - '0', &v);
      if (!ok) bad_input("{}: .npy shape entry '{}' is not a whole number from 0 to 2^63-1", what, part);
      dims.push_back(v);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return dims;
}

// True when [off, off + len) lies inside a file of `size` bytes (no overflow).
bool fits(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

std::string inflate_member(const uint8_t* p, uint64_t csize, uint64_t usize, const std::string& what) {
  // Deflate cannot expand more than ~1032:1; a larger declared size is a corrupt (or hostile)
  // header, refused before allocating it.
  if (usize / 1032 > csize + 1) bad_input("{}: declares {} bytes from {} compressed, more than deflate can hold", what, usize, csize);
  ir::check_allocation(usize, what);
  if (csize > 0xffffffffu || usize > 0xffffffffu) bad_input("{}: compressed members over 4 GiB are not supported; save with np.savez", what);
  std::string out(usize, '\0');
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) failure("{}: zlib init failed", what);
  zs.next_in = const_cast<Bytef*>(p);
  zs.avail_in = static_cast<uInt>(csize);
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(usize);
  int rc = inflate(&zs, Z_FINISH);
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || zs.total_out != usize) bad_input("{}: compressed data is corrupt", what);
  return out;
}

}  // namespace

ir::Tensor parse_npy(const ir::Buffer& bytes, const std::string& what) {
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  if (n < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) bad_input("{}: not a .npy array", what);
  const int major = p[6];
  size_t hlen, off;
  if (major == 1) {
    hlen = le16(p + 8);
    off = 10;
  } else if (n >= 12) {
    hlen = le32(p + 8);
    off = 12;
  } else {
    bad_input("{}: truncated .npy header", what);
  }
  if (off + hlen > n) bad_input("{}: truncated .npy header", what);
  std::string h(reinterpret_cast<const char*>(p + off), hlen);
  std::string descr = header_value(h, "descr", what);
  ir::DType dt;
  if (!dtype_from_descr(descr, dt))
    bad_input("{}: numpy dtype '{}' is not supported (little-endian bool/int/uint/float only)", what, descr);
  if (header_value(h, "fortran_order", what) != "False")
    bad_input("{}: Fortran-order arrays are not supported; save with np.ascontiguousarray", what);
  std::vector<int64_t> dims = parse_shape(header_value(h, "shape", what), what);
  ir::Tensor t;
  t.dtype = dt;
  t.dtype_code = static_cast<int32_t>(dt);
  t.dims = dims;
  const size_t data_off = off + hlen;
  const uint64_t need = ir::tensor_bytes_or_throw(dt, dims, what);
  if (n - data_off < need) bad_input("{}: array data is truncated ({} of {} bytes)", what, n - data_off, need);
  const uint8_t* data = p + data_off;
  const size_t align = std::max<size_t>(1, ir::traits(dt).bits / 8);
  if (reinterpret_cast<uintptr_t>(data) % align != 0) {
    t.data = ir::Buffer::copy_of(data, need);  // numpy does not align members inside a zip
  } else {
    // A view: keeps the archive mapping (or the inflated string) alive.
    t.data = ir::Buffer::view(std::shared_ptr<const void>(std::make_shared<ir::Buffer>(bytes)), data, need);
  }
  return t;
}

const ir::Tensor& NpzArchive::at(const std::string& name) const {
  auto it = arrays.find(name);
  if (it == arrays.end()) {
    std::string have;
    for (auto& n : names) have += (have.empty() ? "" : ", ") + n;
    bad_input("{}: no array named '{}' (it has: {})", path, name, have);
  }
  return it->second;
}

NpzArchive load_npz(const std::filesystem::path& path) {
  const std::string where = path.string();
  auto mf = MappedFile::open(path);
  const uint8_t* d = mf->data();
  const uint64_t n = mf->size();
  // A zip starts with a local header, or (no members: what np.savez writes for no arrays) with
  // the end-of-central-directory record itself.
  if (n < 22 || (le32(d) != 0x04034b50 && le32(d) != 0x06054b50)) bad_input("{}: not an .npz (zip) archive", where);
  // End of central directory: the last 22+ bytes (comment up to 64 KiB).
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(n) - 22; i >= 0 && i >= static_cast<int64_t>(n) - 22 - 65535; --i)
    if (le32(d + i) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd < 0) bad_input("{}: truncated zip archive (no central directory)", where);
  uint64_t count = le16(d + eocd + 10);
  uint64_t cd_off = le32(d + eocd + 16);
  // zip64: counts and offsets live in the zip64 end record when they overflow.
  if (eocd >= 20 && le32(d + eocd - 20) == 0x07064b50) {
    uint64_t z64 = le64(d + eocd - 20 + 8);
    if (fits(z64, 56, n) && le32(d + z64) == 0x06064b50) {
      count = le64(d + z64 + 32);
      cd_off = le64(d + z64 + 48);
    }
  }
  NpzArchive out;
  out.path = where;
  uint64_t p = cd_off;
  for (uint64_t k = 0; k < count; ++k) {
    if (!fits(p, 46, n) || le32(d + p) != 0x02014b50) bad_input("{}: corrupt zip central directory", where);
    const uint16_t method = le16(d + p + 10);
    uint64_t csize = le32(d + p + 20), usize = le32(d + p + 24);
    const uint16_t name_len = le16(d + p + 28), extra_len = le16(d + p + 30), comment_len = le16(d + p + 32);
    uint64_t local = le32(d + p + 42);
    if (!fits(p + 46, uint64_t{name_len} + extra_len + comment_len, n))
      bad_input("{}: corrupt zip central directory (an entry runs past the end of the file)", where);
    std::string name(reinterpret_cast<const char*>(d + p + 46), name_len);
    // zip64 extra field (id 1) holds the sizes/offset that are 0xffffffff above.
    const uint8_t* ex = d + p + 46 + name_len;
    for (uint32_t e = 0; e + 4 <= extra_len;) {
      uint16_t id = le16(ex + e), len = le16(ex + e + 2);
      if (id == 1) {
        const uint8_t* q = ex + e + 4;
        const uint8_t* q_end = ex + std::min<uint32_t>(extra_len, e + 4u + len);
        auto next64 = [&](uint64_t& field) {
          if (field != 0xffffffff) return;
          if (q + 8 > q_end) bad_input("{}: corrupt zip64 extra field of '{}'", where, name);
          field = le64(q);
          q += 8;
        };
        next64(usize);
        next64(csize);
        next64(local);
      }
      e += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;
    const std::string what = where + ":" + name;
    if (!fits(local, 30, n) || le32(d + local) != 0x04034b50) bad_input("{}: corrupt zip entry", what);
    const uint64_t data_off = local + 30 + le16(d + local + 26) + le16(d + local + 28);
    if (!fits(data_off, csize, n))
      bad_input("{}: member data runs past the end of the archive ({} bytes at offset {}, file is {} bytes)", what,
                csize, data_off, n);
    ir::Buffer bytes;
    if (method == 0 && usize != csize)
      bad_input("{}: stored member declares {} bytes but holds {}", what, usize, csize);
    if (method == 0) bytes = mf->view(data_off, usize);
    else if (method == 8) bytes = ir::Buffer::from_string(inflate_member(d + data_off, csize, usize, what));
    else bad_input("{}: zip compression method {} is not supported", what, method);
    std::string key = name.size() > 4 && name.substr(name.size() - 4) == ".npy" ? name.substr(0, name.size() - 4) : name;
    if (key.empty() || key == ".npy") bad_input("{}: a member has no array name ('{}')", where, name);
    if (out.arrays.count(key)) bad_input("{}: array '{}' appears twice", where, key);
    out.arrays.emplace(key, parse_npy(bytes, what));
    out.names.push_back(key);
  }
  return out;
}

void save_npz(const std::filesystem::path& path, const std::vector<std::pair<std::string, ir::Tensor>>& arrays) {
  AtomicFile f(path);
  struct Entry {
    std::string name;
    uint32_t crc, size;
    uint64_t offset;
  };
  std::vector<Entry> entries;
  auto put16 = [](std::string& s, uint16_t v) { s.append({static_cast<char>(v & 0xff), static_cast<char>(v >> 8)}); };
  auto put32 = [&](std::string& s, uint32_t v) {
    put16(s, static_cast<uint16_t>(v & 0xffff));
    put16(s, static_cast<uint16_t>(v >> 16));
  };
  for (auto& [name, t] : arrays) {
    std::string shape;
    for (auto d : t.dims) shape += std::to_string(d) + ", ";
    if (t.dims.size() > 1) shape.resize(shape.size() - 2);
    std::string header = "{'descr': '" + descr_of(t.dtype) + "', 'fortran_order': False, 'shape': (" + shape + "), }";
    // Pad so that the array data starts at a multiple of 64 bytes (numpy's own rule).
    size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header += '\n';
    std::string npy = "\x93NUMPY\x01";
    npy.push_back('\0');
    put16(npy, static_cast<uint16_t>(header.size()));
    npy += header;
    npy.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
    if (npy.size() > 0xffffffffu) bad_input("{}: array '{}' is too large for this writer (4 GiB)", path.string(), name);
    uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(npy.data()), static_cast<uInt>(npy.size())));
    std::string member = name + ".npy";
    // An extra field of padding puts the array data at a 64-byte file offset, so that a
    // mapped archive gives aligned arrays (the .npy header is already a multiple of 64).
    size_t pad = (64 - (f.position() + 30 + member.size()) % 64) % 64;
    if (pad > 0 && pad < 4) pad += 64;
    std::string extra;
    if (pad) {
      put16(extra, 0xd935);
      put16(extra, static_cast<uint16_t>(pad - 4));
      extra.append(pad - 4, '\0');
    }
    std::string local;
    put32(local, 0x04034b50);
    put16(local, 20);  // version needed
    put16(local, 0);   // flags
    put16(local, 0);   // stored
    put16(local, 0);   // time
    put16(local, 0x21);  // date: 1980-01-01, fixed so output is deterministic
    put32(local, crc);
    put32(local, static_cast<uint32_t>(npy.size()));
    put32(local, static_cast<uint32_t>(npy.size()));
    put16(local, static_cast<uint16_t>(member.size()));
    put16(local, static_cast<uint16_t>(extra.size()));
    local += member;
    local += extra;
    entries.push_back({member, crc, static_cast<uint32_t>(npy.size()), f.position()});
    f.write(local);
    f.write(npy);
  }
  std::string cd;
  for (auto& e : entries) {
    put32(cd, 0x02014b50);
    put16(cd, 20);
    put16(cd, 20);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0x21);
    put32(cd, e.crc);
    put32(cd, e.size);
    put32(cd, e.size);
    put16(cd, static_cast<uint16_t>(e.name.size()));
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put32(cd, 0);
    put32(cd, static_cast<uint32_t>(e.offset));
    cd += e.name;
  }
  uint64_t cd_off = f.position();
  f.write(cd);
  std::string end;
  put32(end, 0x06054b50);
  put16(end, 0);
  put16(end, 0);
  put16(end, static_cast<uint16_t>(entries.size()));
  put16(end, static_cast<uint16_t>(entries.size()));
  put32(end, static_cast<uint32_t>(cd.size()));
  put32(end, static_cast<uint32_t>(cd_off));
  put16(end, 0);
  f.write(end);
  f.commit();
}

}  // namespace slmops::formats
