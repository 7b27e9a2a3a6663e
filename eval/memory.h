// The process's resident memory, read from /proc/self (Linux): what the memory metrics of an
// evaluation report. 0 where /proc is not readable.
#pragma once
#include <cstdint>

namespace slmops::eval {

// Resets the peak RSS (VmHWM) to the current RSS: writing 5 to clear_refs (Linux >= 4.0).
void reset_peak_rss();
// Peak RSS since the last reset (VmHWM), in bytes.
uint64_t peak_rss_bytes();
// RSS now (VmRSS), in bytes.
uint64_t current_rss_bytes();

}  // namespace slmops::eval
