// Files on disk: read-only memory maps, atomic writes (temporary file + rename), and the
// path rules for external data.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "ir/tensor.h"

namespace slmops::formats {

namespace fs = std::filesystem;

// A whole file mapped read-only. Also an ir::FileSource, so buffers that view it can be
// copied file-to-file when saving.
class MappedFile : public ir::FileSource {
 public:
  // Throws Error(BadInput) naming `path` when it cannot be opened.
  static std::shared_ptr<MappedFile> open(const fs::path& path);
  ~MappedFile() override;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  int fd() const override { return fd_; }
  const std::string& path() const override { return path_; }
  // A buffer viewing [offset, offset+length); caller has checked the range.
  ir::Buffer view(uint64_t offset, uint64_t length) const;

 private:
  MappedFile() = default;
  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  int region_ = -1;  // slot in the SIGBUS handler's table of mapped regions
  std::weak_ptr<const MappedFile> self_;
};

// Writes to a temporary file beside `target`; commit() renames it into place. Destroying an
// uncommitted writer removes the temporary file, so a failed run leaves no partial output.
// The temporary file is locked (flock) while its writer lives, so that a later run can tell
// the temporaries of killed runs (unlocked) from those of a run still going, and remove them.
// A target that is a FIFO or a character device (-o /dev/null) is written through instead:
// renaming over it would replace the special file with a regular one.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const { return fd_; }
  uint64_t position() const { return pos_; }
  void write(const void* data, size_t size);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void pad_to(uint64_t offset);  // zero bytes up to `offset`
  // Copies [offset, offset+length) of `src` to the end of this file (copy_file_range when the
  // kernel allows it, else read/write).
  void copy_from(int src_fd, uint64_t offset, uint64_t length);
  void commit();  // close, rename over target
  const fs::path& target() const { return target_; }
  bool writes_through() const { return through_; }

 private:
  fs::path target_, temp_;
  int fd_ = -1;
  uint64_t pos_ = 0;
  bool committed_ = false;
  bool through_ = false;
};

// A folder output written whole or not at all: steps write into a staging folder beside
// `target` (`<target>.tmp-<hex>/`); commit() puts it in place. An existing target folder is
// swapped with the staging folder in one step (renameat2 RENAME_EXCHANGE), then removed, so
// the target path holds the complete old folder or the complete new one at every instant.
// Destroying an uncommitted stage removes it. A target that exists and is not a folder is
// refused (one line naming it) before any work.
class StagingFolder {
 public:
  explicit StagingFolder(fs::path target);
  ~StagingFolder();
  StagingFolder(const StagingFolder&) = delete;
  StagingFolder& operator=(const StagingFolder&) = delete;

  const fs::path& path() const { return stage_; }  // where to write
  const fs::path& target() const { return target_; }
  // Puts `folder` (the stage itself, or a folder inside it) in place of the target.
  void commit(const fs::path& folder);
  void commit() { commit(stage_); }

 private:
  fs::path target_, stage_;
  bool committed_ = false;
};

// Whether `p` exists; a path the file system cannot look up (a name too long, a loop) does
// not, instead of throwing std::filesystem_error.
bool path_exists(const std::filesystem::path& p);
// True when `path` exists and is a FIFO or a character device: written through, never replaced.
bool is_write_through_target(const fs::path& path);

// Removes `<target>.tmp-<hex>` files beside `target` that no live writer holds (left by runs
// that were killed). Returns how many were removed.
int remove_stale_temporaries(const fs::path& target);

// A random 16-hex-digit suffix for temporary and interim file names.
std::string random_suffix();

// Checks that `out` can be written: its folder exists and is writable, and it is not one of
// the files the model was read from. Throws Error(BadInput) naming the path.
void check_output_path(const fs::path& out, const std::vector<fs::path>& inputs);

// True when both paths name the same existing file (same device and inode).
bool same_file(const fs::path& a, const fs::path& b);

std::string read_text_file(const fs::path& path);  // throws Error(BadInput) naming the path

}  // namespace slmops::formats
