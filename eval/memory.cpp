#include "eval/memory.h"

#include <cstring>
#include <fstream>
#include <string>

namespace slmops::eval {

namespace {

// A "Key:   1234 kB" line of /proc/self/status, in bytes.
uint64_t status_bytes(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(std::strlen(key))) * 1024;
  return 0;
}

}  // namespace

void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

uint64_t peak_rss_bytes() { return status_bytes("VmHWM:"); }
uint64_t current_rss_bytes() { return status_bytes("VmRSS:"); }

}  // namespace slmops::eval
