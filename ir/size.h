// Overflow-checked sizes, and the one memory limit every allocation sized by a file checks.
// Dims, element counts and byte counts come from files a user (or an attacker) wrote: a
// product of declared dims may wrap, and a plausible-looking shape may need terabytes.
// Everything that turns declared dims into a count or an allocation goes through here:
// the loader, the npz reader, the executor's planner and new_tensor, and `--random`.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <span>
#include <string_view>

#include "ir/dtype.h"

namespace slmops::ir {

// a * b, or nullopt when it does not fit in 64 bits.
std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b);
// a + b, or nullopt when it does not fit in 64 bits.
std::optional<uint64_t> checked_add(uint64_t a, uint64_t b);
// Product of dims (1 for a scalar); nullopt when a dim is negative or the product overflows
// int64 (sizes must also be representable as a signed dimension).
std::optional<uint64_t> checked_element_count(std::span<const int64_t> dims);
// Bytes that `count` elements of `dtype` take (sub-byte types packed); nullopt on overflow.
std::optional<uint64_t> checked_storage_bytes(DType dtype, uint64_t count);

// The most bytes one tensor or buffer sized from input may take. Default: the memory available
// when the process started (a larger block can only fail or swap); set_allocation_limit
// overrides it (the CLI's --max-memory, or SLMOPS_MAX_MEMORY in the environment).
uint64_t allocation_limit();
void set_allocation_limit(uint64_t bytes);

// Element count of `dims`, or Error(BadInput) naming `what` when it overflows.
uint64_t element_count_or_throw(std::span<const int64_t> dims, std::string_view what);
// Bytes of a tensor of `dtype` and `dims`, or Error(BadInput) naming `what` when the size
// overflows or exceeds allocation_limit().
uint64_t tensor_bytes_or_throw(DType dtype, std::span<const int64_t> dims, std::string_view what);
// Error(BadInput) naming `what` when `bytes` exceeds allocation_limit().
void check_allocation(uint64_t bytes, std::string_view what);

// "12 B", "1.5 KiB", "3.0 GiB": sizes in messages and reports.
std::string human_bytes(uint64_t bytes);

// Parses a byte size with an optional K/M/G/T suffix (powers of 1024): "512M", "24G", "1000".
std::optional<uint64_t> parse_byte_size(std::string_view text);

}  // namespace slmops::ir
