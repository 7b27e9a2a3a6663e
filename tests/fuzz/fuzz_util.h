// Shared by the fuzz targets in tests/fuzz/: a scratch folder per process, writing fuzz bytes
// to files, and the one rule for what a target may do with bad input.
//
// The rule (docs/reliability.md): bad bytes may only end in slmops::Error (the CLI prints one
// `slmops: error:` line and exits 2, or 1 for a runtime failure). Anything else a target sees
// is a finding and aborts, so libFuzzer (or the replay main) reports it with the input:
//   - a sanitizer report (heap overflow, UB, leak, ...) - the sanitizers abort by themselves;
//   - std::bad_alloc: an allocation sized from the file that no check bounded (the targets
//     set ir::set_allocation_limit to kFuzzMemoryLimit, so a well-checked path throws Error);
//   - any other exception (std::out_of_range, nlohmann::json::exception, filesystem_error):
//     the CLI would exit 1 with a message that names no file;
//   - a broken invariant that the target checks (e.g. a saved model that cannot be loaded).
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <string>
#include <string_view>

#include "ir/error.h"
#if __has_include("ir/size.h")
#include "ir/size.h"  // the allocation limit (issue #18); older trees run the targets without it
#define SLMOPS_FUZZ_HAS_ALLOCATION_LIMIT 1
#endif

namespace slmops::fuzz {

namespace fs = std::filesystem;

// Largest tensor or buffer an input may make a target allocate (ir::set_allocation_limit).
// Small, so that a missing size check shows up as bad_alloc or an over-limit malloc at once.
constexpr uint64_t kFuzzMemoryLimit = uint64_t{64} << 20;

[[noreturn]] inline void finding(std::string_view kind, std::string_view detail) {
  std::fprintf(stderr, "==slmops-fuzz== FINDING: %.*s: %.*s\n", static_cast<int>(kind.size()), kind.data(),
               static_cast<int>(detail.size()), detail.data());
  std::fflush(stderr);
  std::abort();
}

// Runs `fn`; slmops::Error is the expected outcome of bad input, everything else is a finding.
template <typename Fn>
void guarded(Fn&& fn) {
  try {
    fn();
  } catch (const slmops::Error&) {
    // Bad input reported the way the CLI reports it.
  } catch (const std::bad_alloc& e) {
    finding("std::bad_alloc (an allocation sized from the input was not checked)", e.what());
  } catch (const std::exception& e) {
    finding("exception other than slmops::Error", e.what());
  }
}

// A folder for this process's files (under $TMPDIR, or /dev/shm when it exists: the targets
// write a file per input). Removed at exit.
class Scratch {
 public:
  explicit Scratch(std::string_view target) {
    const char* tmp = std::getenv("TMPDIR");
    fs::path base = tmp && *tmp ? fs::path(tmp) : fs::path("/tmp");
    if (!tmp && ::access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    std::string templ = (base / ("slmops-fuzz-" + std::string(target) + "-XXXXXX")).string();
    if (!::mkdtemp(templ.data())) finding("setup", "cannot create a scratch folder under " + base.string());
    root_ = templ;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  const fs::path& root() const { return root_; }
  fs::path path(std::string_view name) const { return root_ / name; }

  // Writes bytes to root/name (creating its folder), replacing what was there.
  fs::path write(std::string_view name, const void* data, size_t size) const {
    fs::path p = root_ / name;
    std::error_code ec;
    fs::create_directories(p.parent_path(), ec);
    write_file(p, data, size);
    return p;
  }
  static void write_file(const fs::path& p, const void* data, size_t size) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) finding("setup", "cannot write " + p.string());
    const char* c = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t n = ::write(fd, c, size);
      if (n <= 0) finding("setup", "short write to " + p.string());
      c += n;
      size -= static_cast<size_t>(n);
    }
    ::close(fd);
  }
  // Empties the folder (between inputs, so no file of one input is seen by the next).
  void clear() const {
    std::error_code ec;
    for (auto& e : fs::directory_iterator(root_, ec)) fs::remove_all(e.path(), ec);
  }

 private:
  fs::path root_;
};

// Reads the fuzz input front to back: small integers and length-prefixed pieces, then the rest.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return u16() | (static_cast<uint32_t>(u16()) << 16); }
  std::string_view bytes(size_t want) {
    size_t k = want < n_ ? want : n_;
    std::string_view s(reinterpret_cast<const char*>(p_), k);
    p_ += k;
    n_ -= k;
    return s;
  }
  std::string_view rest() { return bytes(n_); }
  size_t left() const { return n_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

// Once per process: the memory limit, and stdout to /dev/null (targets that run CLI
// commands would print a report per input).
inline void init_process() {
#ifdef SLMOPS_FUZZ_HAS_ALLOCATION_LIMIT
  ir::set_allocation_limit(kFuzzMemoryLimit);
#endif
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::dup2(fd, 1);
    ::close(fd);
  }
}

}  // namespace slmops::fuzz
