// SHA-256 (FIPS 180-4) of bytes and of files, for the manifests of deployment folders.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace slmops::formats {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  std::string hex();  // finishes; the object is spent after

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t fill_ = 0;
  uint64_t bytes_ = 0;
};

// The lowercase hex digest of a file's contents (read through a memory map).
std::string sha256_file(const std::filesystem::path& path);

}  // namespace slmops::formats
