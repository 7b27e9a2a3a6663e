// Forced into runtime/kernels/nbits_vnni_avx2.cpp and qgemm_avx2.cpp in the clang < 16 fuzz
// build only (top-level CMakeLists.txt): those clang versions reject
// __builtin_cpu_supports("avxvnni"). The fuzz targets run no kernels; there the files see no
// CPU feature and take their portable paths.
#pragma once
#define __builtin_cpu_supports(feature) 0
