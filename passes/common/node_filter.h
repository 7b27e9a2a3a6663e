// Which nodes a pass may touch: every pass that selects nodes (quantize, prune, convert's
// mixed precision) takes the same three options and means the same by them.
//
//   op-types           the op types the pass works on (empty: the pass's own default set)
//   exclude-nodes      node names or globs (* and ?) left alone; a name that matches no node
//                      is a typo, reported by unmatched()
//   exclude-op-types   op types left alone
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"

namespace slmops::passes {

struct NodeSelection {
  std::vector<std::string> op_types;  // empty: the pass's default set
  std::vector<std::string> exclude_nodes;
  std::vector<std::string> exclude_op_types;
};

// The help lines of the three options, so that every pass words them alike.
inline constexpr const char* kOpTypesHelp = "op types to work on (default: the mode's set)";
inline constexpr const char* kExcludeNodesHelp = "node names or globs (* ?) to leave unchanged";
inline constexpr const char* kExcludeOpTypesHelp = "op types to leave unchanged";

class NodeFilter {
 public:
  NodeFilter(const NodeSelection& s, std::vector<std::string> default_op_types);
  bool allows(const ir::Node& n) const;
  // Names from exclude-nodes that matched no node of the graph or its subgraphs (a typo).
  std::vector<std::string> unmatched(const ir::Graph& g) const;

 private:
  std::vector<std::string> op_types_, exclude_nodes_, exclude_op_types_;
};

bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace slmops::passes
