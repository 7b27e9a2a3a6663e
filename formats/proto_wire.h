// Just enough of protobuf's wire format to find and splice the large `raw_data` payloads of
// initializers, so that weights stay memory-mapped on load and are copied file-to-file on
// save instead of passing through protobuf's string copies. Internal to formats/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace slmops::formats::wire {

enum WireType : int { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  int type = 0;
  size_t begin = 0;          // first byte of the tag
  size_t payload = 0;        // first byte after the tag (after the length for kLen)
  size_t end = 0;            // one past the last byte of the field
  uint64_t length = 0;       // payload length for kLen
};

// Reads the field at `pos` of [data, data+size); false at the end or on malformed input.
bool next_field(const uint8_t* data, size_t size, size_t& pos, Field& f);

void put_varint(std::string& out, uint64_t v);
size_t varint_size(uint64_t v);
// Tag + length prefix of a length-delimited field.
std::string len_prefix(uint32_t number, uint64_t length);

// Splits a serialized message (fields in ascending number order, as protobuf writes them)
// into the fields numbered below `number` and the rest.
void split_before(std::string_view msg, uint32_t number, std::string_view& head, std::string_view& tail);

}  // namespace slmops::formats::wire
