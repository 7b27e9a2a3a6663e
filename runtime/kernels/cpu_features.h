// CPU features that the compilers' __builtin_cpu_supports does not name on every toolchain we
// build with: clang 14 (the fuzz build) rejects "avxvnni", GCC 12 accepts it. Read from
// cpuid directly; the AVX register state is already checked by the avx2 test that callers
// make first.
#pragma once
#include <cpuid.h>

namespace slmops::runtime::kernels {

// AVX-VNNI (VEX-encoded vpdpbusd on 256-bit registers): cpuid leaf 7, subleaf 1, EAX bit 4.
inline bool cpu_has_avxvnni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 1, a, b, c, d);
  return (a >> 4) & 1;
}

}  // namespace slmops::runtime::kernels
