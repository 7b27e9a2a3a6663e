// --shard I/N: the I-th of N slices of a data set, cut at whole batches so that every shard run
// sees the batches one unsharded run does (evaluate's metrics and distill-data's rows then merge
// into the unsharded result). Shared by eval/ and distill/; header-only.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "ir/error.h"

namespace slmops::passes {

// "I/N" -> {I, N}; {-1, 0} when it does not parse. `strict`: nothing may follow either number.
inline std::pair<int64_t, int64_t> parse_shard(const std::string& shard, bool strict) {
  const size_t slash = shard.find('/');
  int64_t i = -1, k = 0;
  try {
    size_t u1 = 0, u2 = 0;
    i = std::stoll(shard.substr(0, slash), &u1);
    k = std::stoll(shard.substr(slash + 1), &u2);
    if (strict && (u1 != slash || u2 != shard.size() - slash - 1)) k = 0;
  } catch (const std::exception&) {
  }
  if (slash == std::string::npos) k = 0;
  return {i, k};
}

// [begin, end) of the shard among `samples` items in batches of `batch` ({0, samples} when
// `shard` is empty); throws Error(BadInput) naming --shard when it is not I/N with 0 <= I < N.
inline std::pair<int64_t, int64_t> shard_range(const std::string& shard, int64_t samples, int64_t batch,
                                               bool strict = false) {
  if (shard.empty()) return {0, samples};
  const auto [i, k] = parse_shard(shard, strict);
  if (k < 1 || i < 0 || i >= k)
    bad_input("--shard '{}': expected I/N with 0 <= I < N (0-based, like a Kubernetes job index)", shard);
  const int64_t nb = (samples + batch - 1) / batch;
  return {std::min(samples, (i * nb / k) * batch), std::min(samples, ((i + 1) * nb / k) * batch)};
}

}  // namespace slmops::passes
