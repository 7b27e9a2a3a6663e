#include "runtime/kernels/cpu_features.h"

#include <cpuid.h>

#include <cstdlib>

namespace slmops::runtime::kernels {
namespace {

// Read from cpuid where clang 14's __builtin_cpu_supports has no name for the feature (the
// fuzz build uses clang). AVX-VNNI: cpuid leaf 7, subleaf 1, EAX bit 4.
bool has_avxvnni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 1, a, b, c, d);
  return (a >> 4) & 1;
}

// F16C: cpuid leaf 1, ECX bit 29 (clang 14 does not name "f16c" either).
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c >> 29) & 1;
}

CpuFeatures detect() {
  CpuFeatures f;
  const char* cap = std::getenv("SLMOPS_ISA");
  if (!cap || !*cap) cap = std::getenv("SLMOPS_GEMM_ISA");
  f.cap = cap ? cap : "";
  if (f.cap == "portable") return f;
  // libgcc's "avx" also checks that the OS saves the ymm registers (XGETBV).
  f.fma = __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma") && has_f16c();
  if (!f.fma || f.cap == "fma") return f;
  f.avx2 = __builtin_cpu_supports("avx2");
  if (!f.avx2) return f;
  f.avxvnni = has_avxvnni();
  if (f.cap == "avx2") return f;
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw_dq_vl = f.avx512f && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                     __builtin_cpu_supports("avx512vl");
  f.avx512vnni = f.avx512f && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512vnni");
  return f;
}

}  // namespace

const CpuFeatures& cpu() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace slmops::runtime::kernels
