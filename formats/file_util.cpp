#include "formats/file_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "ir/error.h"

namespace slmops::formats {

std::shared_ptr<MappedFile> MappedFile::open(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad_input("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    bad_input("{}: not a regular file", path.string());
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path.string();
  f->fd_ = fd;
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) failure("{}: cannot map: {}", path.string(), std::strerror(errno));
    f->data_ = static_cast<const uint8_t*>(p);
  }
  f->self_ = f;
  return f;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

ir::Buffer MappedFile::view(uint64_t offset, uint64_t length) const {
  auto self = self_.lock();
  return ir::Buffer::view(self, data_ + offset, length, self, offset);
}

static std::string random_suffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  temp_ = target_;
  temp_ += ".tmp-" + random_suffix();
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) bad_input("{}: cannot write: {}", target_.string(), std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  auto p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      failure("{}: write failed: {}", target_.string(), std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
    pos_ += static_cast<uint64_t>(n);
  }
}

void AtomicFile::pad_to(uint64_t offset) {
  static const char zeros[4096] = {};
  while (pos_ < offset) write(zeros, static_cast<size_t>(std::min<uint64_t>(sizeof zeros, offset - pos_)));
}

void AtomicFile::copy_from(int src_fd, uint64_t offset, uint64_t length) {
  loff_t in_off = static_cast<loff_t>(offset);
  while (length > 0) {
    ssize_t n = ::copy_file_range(src_fd, &in_off, fd_, nullptr, length, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // not supported here (or EOF): fall back below
    length -= static_cast<uint64_t>(n);
    pos_ += static_cast<uint64_t>(n);
  }
  std::vector<char> buf;
  while (length > 0) {
    buf.resize(static_cast<size_t>(std::min<uint64_t>(length, 1 << 20)));
    ssize_t n = ::pread(src_fd, buf.data(), buf.size(), in_off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) failure("{}: read failed while copying tensor data", target_.string());
    write(buf.data(), static_cast<size_t>(n));
    in_off += n;
    length -= static_cast<uint64_t>(n);
  }
}

void AtomicFile::commit() {
  if (::close(fd_) != 0) {
    fd_ = -1;
    failure("{}: write failed: {}", target_.string(), std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    failure("{}: cannot rename into place: {}", target_.string(), std::strerror(errno));
  committed_ = true;
}

bool same_file(const fs::path& a, const fs::path& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void check_output_path(const fs::path& out, const std::vector<fs::path>& inputs) {
  if (out.empty()) bad_input("no output path given (use -o FILE)");
  for (auto& in : inputs)
    if (same_file(out, in) || fs::weakly_canonical(out) == fs::weakly_canonical(in))
      bad_input("{}: output path is the input file '{}'; choose another output path", out.string(), in.string());
  fs::path dir = out.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) bad_input("{}: output folder '{}' does not exist", out.string(), dir.string());
  if (fs::is_directory(out, ec)) bad_input("{}: output path is a folder, expected a file name", out.string());
  // Probe by creating a file: permission bits do not tell for root, read-only mounts or /proc.
  fs::path probe = out;
  probe += ".tmp-probe-" + random_suffix();
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) bad_input("{}: output folder '{}' is not writable: {}", out.string(), dir.string(), std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_input("{}: cannot open: {}", path.string(), std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace slmops::formats
