// cleanup: removes what an inference graph does not need.
//
//   Before: X -> Identity -> Y -> Relu            After: X -> Relu
//           X -> Dropout(ratio) -> Y -> Relu             X -> Relu
//           W1 (unused initializer), W2 == W3             W2 (W3's users read W2)
//           N (node whose outputs nobody reads)           (removed)
// Conditions: graph outputs keep their names (an Identity that feeds a graph output is
// folded only when its input can take the output's name); Dropout only in inference form
// (no training_mode input that may be true) and when its mask output is unused;
// initializers that are also graph inputs are kept (callers may override them).
#pragma once
#include <cstdint>
#include <string>

#include "ir/graph.h"
#include "passes/options.h"

namespace slmops::passes {

struct CleanupOptions {
  bool remove_identity = true;
  bool remove_dropout = true;
  bool remove_dead_nodes = true;
  bool remove_unused_initializers = true;
  bool dedupe_initializers = true;
  bool subgraphs = true;
  static const OptionTable<CleanupOptions>& table();
};

struct CleanupStats {
  int64_t identities = 0, dropouts = 0, dead_nodes = 0, unused_initializers = 0, duplicate_initializers = 0;
};

CleanupStats cleanup(ir::Graph& g, const CleanupOptions& opts);

}  // namespace slmops::passes
