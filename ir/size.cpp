#include "ir/size.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "ir/error.h"

#include <fmt/ranges.h>

namespace slmops::ir {

std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

std::optional<uint64_t> checked_element_count(std::span<const int64_t> dims) {
  uint64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return std::nullopt;
    auto m = checked_mul(n, static_cast<uint64_t>(d));
    if (!m || *m > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    n = *m;
  }
  return n;
}

std::optional<uint64_t> checked_storage_bytes(DType dtype, uint64_t count) {
  const uint64_t width = static_cast<uint64_t>(traits(dtype).bits);
  if (width % 8 == 0) return checked_mul(count, width / 8);
  auto bits = checked_mul(count, width);  // packed sub-byte types
  if (!bits) return std::nullopt;
  auto rounded = checked_add(*bits, 7);
  if (!rounded) return std::nullopt;
  return *rounded / 8;
}

namespace {

uint64_t physical_memory() {
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return uint64_t{1} << 40;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

// MemAvailable (free memory plus what the kernel can reclaim) at start-up: a block larger
// than that can only fail, swap, or wake the OOM killer. Physical memory where /proc is absent.
uint64_t available_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return physical_memory();
  char line[256];
  unsigned long long kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f)) found = std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
  std::fclose(f);
  return found && kib > 0 ? static_cast<uint64_t>(kib) * 1024 : physical_memory();
}

uint64_t default_limit() {
  if (const char* env = std::getenv("SLMOPS_MAX_MEMORY"))
    if (auto v = parse_byte_size(env); v && *v > 0) return *v;
  return available_memory();
}

std::atomic<uint64_t>& limit_slot() {
  static std::atomic<uint64_t> limit{default_limit()};
  return limit;
}

}  // namespace

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

uint64_t allocation_limit() { return limit_slot().load(std::memory_order_relaxed); }
void set_allocation_limit(uint64_t bytes) { limit_slot().store(bytes, std::memory_order_relaxed); }

uint64_t element_count_or_throw(std::span<const int64_t> dims, std::string_view what) {
  auto n = checked_element_count(dims);
  if (!n) {
    for (int64_t d : dims)
      if (d < 0) bad_input("{}: shape [{}] has a negative dimension", what, fmt::join(dims, ", "));
    bad_input("{}: shape [{}] has more elements than fit in 64 bits", what, fmt::join(dims, ", "));
  }
  return *n;
}

void check_allocation(uint64_t bytes, std::string_view what) {
  uint64_t limit = allocation_limit();
  if (bytes > limit)
    bad_input("{}: needs {} ({} bytes), over the memory limit of {} (raise it with --max-memory)", what,
              human_bytes(bytes), bytes, human_bytes(limit));
}

uint64_t tensor_bytes_or_throw(DType dtype, std::span<const int64_t> dims, std::string_view what) {
  uint64_t n = element_count_or_throw(dims, what);
  auto bytes = checked_storage_bytes(dtype, n);
  if (!bytes) bad_input("{}: shape [{}] needs more bytes than fit in 64 bits", what, fmt::join(dims, ", "));
  check_allocation(*bytes, what);
  return *bytes;
}

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    auto m = checked_mul(v, 10);
    if (!m) return std::nullopt;
    auto a = checked_add(*m, static_cast<uint64_t>(text[i] - '0'));
    if (!a) return std::nullopt;
    v = *a;
  }
  if (i == 0) return std::nullopt;
  std::string_view rest = text.substr(i);
  // "B", "KB", "KiB", "K" (and M/G/T) all mean powers of 1024.
  if (rest.ends_with("iB")) rest.remove_suffix(2);
  else if (rest.ends_with("B")) rest.remove_suffix(1);
  int shift = 0;
  if (rest.empty()) shift = 0;
  else if (rest == "K" || rest == "k") shift = 10;
  else if (rest == "M" || rest == "m") shift = 20;
  else if (rest == "G" || rest == "g") shift = 30;
  else if (rest == "T" || rest == "t") shift = 40;
  else return std::nullopt;
  return checked_mul(v, uint64_t{1} << shift);
}

}  // namespace slmops::ir
