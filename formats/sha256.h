// SHA-256 of files, for the manifests of deployment folders. OpenSSL's libcrypto computes it
// (SHA-NI / AVX2 code paths: about 4x a portable implementation on a multi-GB model file);
// the file is read in 1 MiB chunks, so hashing does not grow the resident set.
#pragma once
#include <filesystem>
#include <string>

namespace slmops::formats {

// The lowercase hex digest of a file's contents; Error(BadInput/Failure) naming the file.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace slmops::formats
