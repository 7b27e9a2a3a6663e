// test_conv_kernels: filled in by the work on #12 (optimize).
#include <doctest/doctest.h>
