// NumPy .npz archives (np.savez / np.savez_compressed) and .npy arrays: the data sources of
// `evaluate`, calibration and distillation. Stored (uncompressed) members are mapped, not
// copied; deflated members are inflated with zlib.
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace slmops::formats {

// Arrays by name (the member name without ".npy"), in archive order in `names`.
struct NpzArchive {
  std::vector<std::string> names;
  std::map<std::string, ir::Tensor> arrays;
  const ir::Tensor& at(const std::string& name) const;  // throws Error naming the archive
  std::string path;
};

// Throws Error(BadInput) naming the file and member on anything it cannot read
// (not a zip, truncated, unsupported dtype, Fortran order, ...).
NpzArchive load_npz(const std::filesystem::path& path);
// Parses one .npy array held in `bytes` (kept alive by `owner`).
ir::Tensor parse_npy(const ir::Buffer& bytes, const std::string& what);

// Writes arrays as an uncompressed .npz (what np.savez writes), atomically.
void save_npz(const std::filesystem::path& path, const std::vector<std::pair<std::string, ir::Tensor>>& arrays);

}  // namespace slmops::formats
