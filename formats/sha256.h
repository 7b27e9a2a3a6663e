// SHA-256 of files, for the manifests of deployment folders. OpenSSL's libcrypto computes it
// (SHA-NI / AVX2 code paths: about 4x a portable implementation on a multi-GB model file);
// the file is read in 1 MiB chunks, so hashing does not grow the resident set.
#pragma once
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace slmops::formats {

// The lowercase hex digest of a file's contents; Error(BadInput/Failure) naming the file.
std::string sha256_file(const std::filesystem::path& path);
// The lowercase hex digest of bytes in memory.
std::string sha256_hex(std::string_view bytes);

// SHA-256 of a byte stream given in pieces, computed on a thread of its own: save_model feeds
// it the tensors it writes, so hashing a multi-GB data file runs beside the writing instead of
// re-reading the file after it. Pieces are not copied: their bytes must stay valid until hex().
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void add(const void* data, size_t size);
  void add_zeros(size_t size);
  // The digest of everything added; waits for the thread. Call once.
  std::string hex();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace slmops::formats
