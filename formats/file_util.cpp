#include "formats/file_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "ir/error.h"

namespace slmops::formats {

bool path_exists(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

// ---- Faults in mapped reads ----------------------------------------------------------------
// A mapped file that shrinks while it is read (another process truncates it, a network file
// system drops it) raises SIGBUS on the next touch of a page past its new end. Instead of a
// crash, the handler names the file in one line and exits 1 (a failure of the environment,
// not of the input as given). Regions are registered in a fixed table the handler can read
// without locks or allocation; temporaries of the killed write are removed by the next run.
namespace {

struct MappedRegion {
  std::atomic<const uint8_t*> begin{nullptr};
  std::atomic<uint64_t> size{0};
  char path[512] = {};
};
constexpr int kMaxRegions = 1024;
MappedRegion g_regions[kMaxRegions];
std::mutex g_regions_mu;

void on_sigbus(int sig, siginfo_t* info, void*) {
  auto addr = static_cast<const uint8_t*>(info->si_addr);
  for (auto& r : g_regions) {
    const uint8_t* b = r.begin.load(std::memory_order_acquire);
    if (b && addr >= b && addr < b + r.size.load(std::memory_order_relaxed)) {
      static const char head[] = "slmops: error: ";
      static const char tail[] = ": the file was truncated or changed while slmops was reading it\n";
      ssize_t ignored = ::write(2, head, sizeof head - 1);
      ignored = ::write(2, r.path, ::strnlen(r.path, sizeof r.path));
      ignored = ::write(2, tail, sizeof tail - 1);
      (void)ignored;
      ::_exit(static_cast<int>(ExitCode::Failure));
    }
  }
  ::signal(sig, SIG_DFL);  // not one of our mappings: the default action (a crash) as before
  ::raise(sig);
}

int register_region(const uint8_t* data, uint64_t size, const std::string& path) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, nullptr);
  });
  std::lock_guard<std::mutex> lock(g_regions_mu);
  for (int i = 0; i < kMaxRegions; ++i)
    if (!g_regions[i].begin.load(std::memory_order_relaxed)) {
      std::snprintf(g_regions[i].path, sizeof g_regions[i].path, "%s", path.c_str());
      g_regions[i].size.store(size, std::memory_order_relaxed);
      g_regions[i].begin.store(data, std::memory_order_release);
      return i;
    }
  return -1;  // table full: that file keeps the default action
}

void unregister_region(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(g_regions_mu);
  g_regions[slot].begin.store(nullptr, std::memory_order_release);
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block: refused below
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
    f->region_ = register_region(f->data_, f->size_, f->path_);
  }
  f->self_ = f;
  return f;
}

MappedFile::~MappedFile() {
  unregister_region(region_);
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

ir::Buffer MappedFile::view(uint64_t offset, uint64_t length) const {
  auto self = self_.lock();
  return ir::Buffer::view(self, data_ + offset, length, self, offset);
}

std::string random_suffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

namespace {

// One line for a path the file system refused, with the reason a user can act on.
[[noreturn]] void refuse_output(const fs::path& target, int err) {
  if (err == ENAMETOOLONG) bad_input("{}: file name too long for the file system", target.string());
  if (err == EISDIR) bad_input("{}: output path is a folder, expected a file name", target.string());
  bad_input("{}: cannot write: {}", target.string(), std::strerror(err));
}

bool is_temp_name(const std::string& name, const std::string& prefix) {
  if (name.size() != prefix.size() + 16 || name.compare(0, prefix.size(), prefix) != 0) return false;
  for (size_t i = prefix.size(); i < name.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(name[i]))) return false;
  return true;
}

}  // namespace

StagingFolder::StagingFolder(fs::path target) : target_(std::move(target)) {
  struct stat st {};
  if (::stat(target_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) bad_input("{}: output is a file, but this recipe writes a folder", target_.string());
  } else if (errno == ENAMETOOLONG) {
    refuse_output(target_, errno);
  }
  // Stages of killed runs: folders nobody will commit (no live lock to check; they are
  // removed when older than a day, or by the next run that stages the same target).
  fs::path dir = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
  const std::string prefix = target_.filename().string() + ".tmp-";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (is_temp_name(it->path().filename().string(), prefix) && it->is_directory(ec)) {
      std::error_code rec;
      fs::remove_all(it->path(), rec);
    }
  stage_ = target_;
  stage_ += ".tmp-" + random_suffix();
  if (::mkdir(stage_.c_str(), 0755) != 0) refuse_output(target_, errno);
}

StagingFolder::~StagingFolder() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(stage_, ec);
}

void StagingFolder::commit(const fs::path& folder) {
  struct stat st {};
  if (::stat(target_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) bad_input("{}: output is a file, but this recipe writes a folder", target_.string());
    // Swap: target now holds the new folder, `folder` the old one, which is then removed.
    if (::renameat2(AT_FDCWD, folder.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) != 0)
      failure("{}: cannot put the new folder in place: {}", target_.string(), std::strerror(errno));
    std::error_code ec;
    fs::remove_all(folder, ec);
  } else if (::rename(folder.c_str(), target_.c_str()) != 0) {
    failure("{}: cannot put the new folder in place: {}", target_.string(), std::strerror(errno));
  }
  if (folder != stage_) {
    std::error_code ec;
    fs::remove_all(stage_, ec);
  }
  committed_ = true;
}

bool is_write_through_target(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  return S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode);
}

int remove_stale_temporaries(const fs::path& target) {
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string prefix = target.filename().string() + ".tmp-";
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!is_temp_name(name, prefix)) continue;
    int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    // A live writer holds its lock; only an unlocked temporary belongs to a dead run.
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::unlink(it->path().c_str()) == 0) ++removed;
    ::close(fd);
  }
  return removed;
}

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  struct stat st {};
  if (::stat(target_.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) refuse_output(target_, EISDIR);
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
      through_ = true;
      // Non-blocking first: a FIFO that nobody reads would block open() forever (ENXIO).
      fd_ = ::open(target_.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd_ < 0 && errno == ENXIO) bad_input("{}: is a FIFO that no process is reading", target_.string());
      if (fd_ < 0) refuse_output(target_, errno);
      ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
      return;
    }
    if (!S_ISREG(st.st_mode))
      bad_input("{}: is a socket or block device; slmops writes regular files, FIFOs and character devices",
                target_.string());
  } else if (errno == ENAMETOOLONG) {
    refuse_output(target_, errno);
  }
  remove_stale_temporaries(target_);
  temp_ = target_;
  temp_ += ".tmp-" + random_suffix();
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) refuse_output(target_, errno);
  ::flock(fd_, LOCK_EX);  // released when the descriptor closes (commit or destruction)
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !through_) ::unlink(temp_.c_str());
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
  committed_ = true;
  if (through_) return;
  if (::rename(temp_.c_str(), target_.c_str()) != 0) {
    int err = errno;
    ::unlink(temp_.c_str());
    if (err == EISDIR || err == ENOTDIR || err == ENAMETOOLONG || err == EACCES || err == EPERM || err == EROFS)
      refuse_output(target_, err);
    failure("{}: cannot rename into place: {}", target_.string(), std::strerror(err));
  }
}

bool same_file(const fs::path& a, const fs::path& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void check_output_path(const fs::path& out, const std::vector<fs::path>& inputs) {
  if (out.empty()) bad_input("no output path given (use -o FILE)");
  for (const auto& part : out)
    if (part.string().size() > NAME_MAX)
      bad_input("{}: file name '{}...' is {} characters, over the file system's limit of {}", out.string(),
                part.string().substr(0, 16), part.string().size(), NAME_MAX);
  std::error_code ec;
  for (auto& in : inputs) {
    if (same_file(out, in)) bad_input("{}: output path is the input file '{}'; choose another output path", out.string(), in.string());
    auto a = fs::weakly_canonical(out, ec);
    auto b = ec ? fs::path() : fs::weakly_canonical(in, ec);
    if (!ec && a == b)
      bad_input("{}: output path is the input file '{}'; choose another output path", out.string(), in.string());
  }
  fs::path dir = out.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) bad_input("{}: output folder '{}' does not exist", out.string(), dir.string());
  if (fs::is_directory(out, ec)) bad_input("{}: output path is a folder, expected a file name", out.string());
  struct stat st {};
  if (::stat(out.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
      bad_input("{}: is a socket or block device; slmops writes regular files, FIFOs and character devices",
                out.string());
    if (::access(out.c_str(), W_OK) != 0) refuse_output(out, errno);
    return;  // written through: nothing is created beside it
  }
  // Probe by creating a file: permission bits do not tell for root, read-only mounts or /proc.
  fs::path probe = out;
  probe += ".tmp-" + random_suffix();
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == ENAMETOOLONG) refuse_output(out, errno);
    bad_input("{}: output folder '{}' is not writable: {}", out.string(), dir.string(), std::strerror(errno));
  }
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
