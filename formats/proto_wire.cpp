#include "formats/proto_wire.h"

namespace slmops::formats::wire {

static bool read_varint(const uint8_t* data, size_t size, size_t& pos, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= size) return false;
    uint8_t b = data[pos++];
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

bool next_field(const uint8_t* data, size_t size, size_t& pos, Field& f) {
  if (pos >= size) return false;
  f.begin = pos;
  uint64_t tag;
  if (!read_varint(data, size, pos, tag)) return false;
  f.number = static_cast<uint32_t>(tag >> 3);
  f.type = static_cast<int>(tag & 7);
  if (f.number == 0) return false;
  f.length = 0;
  switch (f.type) {
    case kVarint: {
      uint64_t ignored;
      f.payload = pos;
      if (!read_varint(data, size, pos, ignored)) return false;
      break;
    }
    case kFixed64:
      f.payload = pos;
      pos += 8;
      break;
    case kFixed32:
      f.payload = pos;
      pos += 4;
      break;
    case kLen:
      if (!read_varint(data, size, pos, f.length)) return false;
      f.payload = pos;
      if (f.length > size - pos) return false;
      pos += f.length;
      break;
    default: return false;  // groups (3, 4) do not occur in ONNX
  }
  if (pos > size) return false;
  f.end = pos;
  return true;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

std::string len_prefix(uint32_t number, uint64_t length) {
  std::string s;
  put_varint(s, (static_cast<uint64_t>(number) << 3) | kLen);
  put_varint(s, length);
  return s;
}

void split_before(std::string_view msg, uint32_t number, std::string_view& head, std::string_view& tail) {
  auto data = reinterpret_cast<const uint8_t*>(msg.data());
  size_t pos = 0, cut = msg.size();
  Field f;
  while (next_field(data, msg.size(), pos, f))
    if (f.number >= number) {
      cut = f.begin;
      break;
    }
  head = msg.substr(0, cut);
  tail = msg.substr(cut);
}

}  // namespace slmops::formats::wire
