// The one table of CPU features, read once at start-up (as ONNX Runtime's MLAS does): every
// kernel family (GEMM, int8 GEMM, n-bit MatMul, convolution, unary math, softmax) chooses its
// code from it, so a machine runs one consistent set and a cap applies to all of them.
//
// Three tiers below AVX-512: portable (any x86-64), fma (AVX + FMA + F16C: the 256-bit float
// kernels; some CPUs and many VMs expose FMA without AVX2, as MLAS's AVX path serves them) and
// avx2 (adds the 256-bit integer kernels: int8 GEMM, n-bit unpacking).
// SLMOPS_ISA=avx2 | fma | portable caps the choice (compare kernel sets on one machine; the old
// SLMOPS_GEMM_ISA is read too). `avx512` below means the AVX-512 subset our kernels use.
#pragma once
#include <string>

namespace slmops::runtime::kernels {

struct CpuFeatures {
  bool fma = false;         // AVX + FMA + F16C (OS-enabled ymm state): the float kernels
  bool avx2 = false;        // AVX2 (+ the above): the integer vector kernels
  bool avx512f = false;     // AVX-512 F
  bool avx512bw_dq_vl = false;  // AVX-512 BW + DQ + VL (with F)
  bool avx512vnni = false;  // AVX-512 VNNI + VL (with F + BW)
  bool avxvnni = false;     // AVX-VNNI (VEX-encoded vpdpbusd, 256-bit)
  std::string cap;          // the SLMOPS_ISA cap in effect ("" none)
};

// The features of this CPU after the cap; computed on first use and fixed for the process.
const CpuFeatures& cpu();

}  // namespace slmops::runtime::kernels
